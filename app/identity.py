"""Which ``worker_id`` is this worker's: set explicitly, or detected from the pod's names.

Connect tags every connector instance and task with ``worker_id`` = ``<advertised host>:<advertised
port>`` and no endpoint tells a worker its own id (``shared/notes/connect-rest-api.md`` §7). So we
build the ids this worker could be advertising and match them case-insensitively.
"""

import contextlib
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    """This worker's possible ids (lower case); ``explicit`` when WORKER_ID was set."""

    candidates: frozenset[str]
    ordered: tuple[str, ...]
    explicit: bool

    def matches(self, worker_id: str) -> bool:
        return worker_id.lower() in self.candidates


def format_worker_id(host: str, port: int) -> str:
    """``host:port`` with IPv6 literals bracketed, as Java's ``URI.getHost()`` keeps them."""
    host = host.strip().strip("[]")
    try:
        if ipaddress.ip_address(host.split("%", 1)[0]).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for item in items:
        if item:
            seen.setdefault(item.lower(), None)
    return tuple(seen)


def explicit_identity(worker_id: str) -> Identity:
    ids = _dedupe([worker_id])
    return Identity(candidates=frozenset(ids), ordered=ids, explicit=True)


def local_host_names() -> list[str]:
    """Host name, FQDN and the addresses they resolve to (the pod IP in Kubernetes)."""
    names: list[str] = []
    hostname = socket.gethostname()
    names.append(hostname)
    with contextlib.suppress(OSError):
        names.append(socket.getfqdn())
    try:
        for info in socket.getaddrinfo(hostname, None):
            names.append(str(info[4][0]))
    except OSError:
        pass
    return names


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def detect_identity(port: int, pod_ip: str | None, host_names: Iterable[str]) -> Identity:
    """Candidates, most specific first: POD_IP, host names and addresses, loopback names."""
    hosts: list[str] = []
    if pod_ip:
        hosts.append(pod_ip)
    hosts.extend(host_names)
    hosts.extend(LOOPBACK_NAMES)
    ids = _dedupe(format_worker_id(host, port) for host in hosts)
    return Identity(candidates=frozenset(ids), ordered=ids, explicit=False)
