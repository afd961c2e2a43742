"""Which ``worker_id`` is this worker's: set explicitly, or detected from the pod's names.

Connect tags every connector instance and task with ``worker_id`` = ``<advertised host>:<advertised
port>`` (``rest.advertised.host.name`` / ``rest.advertised.port``, else the listener's host and
port), and no REST endpoint tells a worker its own id: ``GET /`` answers only version, commit and
cluster id. So we build the ids this worker could be advertising and match them case-insensitively.
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
# Strimzi advertises ``$(hostname -f | cut -d . -f1-4)``: ``<pod>.<service>.<namespace>.svc``.
SERVICE_NAME_LABELS = 4


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def name_forms(host: str) -> list[str]:
    """``host`` and the forms platforms advertise for it.

    A pod FQDN ``connect-0.connect.ns.svc.cluster.local`` is advertised whole by Confluent for
    Kubernetes and cut to its first four labels (``connect-0.connect.ns.svc``) by Strimzi, whatever
    the cluster domain is. Addresses and short names are kept as they are.
    """
    host = host.strip().rstrip(".")
    forms = [host]
    labels = host.split(".")
    if not _is_address(host) and len(labels) > SERVICE_NAME_LABELS:
        forms.append(".".join(labels[:SERVICE_NAME_LABELS]))
    return forms


def detect_identity(port: int, pod_ip: str | None, host_names: Iterable[str]) -> Identity:
    """Candidates, most specific first: POD_IP, host names (whole and as platforms cut them) and
    addresses, loopback names."""
    hosts: list[str] = []
    if pod_ip:
        hosts.append(pod_ip)
    for name in host_names:
        hosts.extend(name_forms(name))
    hosts.extend(LOOPBACK_NAMES)
    ids = _dedupe(format_worker_id(host, port) for host in hosts)
    return Identity(candidates=frozenset(ids), ordered=ids, explicit=False)
