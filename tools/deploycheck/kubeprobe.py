"""A kubelet ``httpGet`` probe, emulated with the stdlib (no Go, no cluster needed).

Semantics follow kubernetes/kubernetes ``pkg/probe/http/http.go``, ``pkg/probe/http/request.go``
and ``pkg/kubelet/prober/prober.go`` (see shared notes "k8s-and-image-tooling" §4):

- ``GET`` with ``User-Agent: kube-probe/<major>.<minor>``, ``Accept: */*``, ``Connection: close``
  (keep-alives disabled), no ``Accept-Encoding`` (compression disabled), no proxy;
- one deadline (``timeoutSeconds``, default 1 s) for connect, redirects and reading the body;
- at most 10 KiB of the body is read (``maxRespBodyLength``); hitting the limit is not an error;
- ``200 <= status < 400`` is success; a 3xx that is not followed is a *warning*, which the kubelet
  counts as success; anything else, a refused connection or a timeout is failure;
- redirects are followed only to the same host name (any port), at most 10 hops; HTTPS skips
  certificate verification.

As a script it probes until a status shows up (used by ``make image-test``)::

    python -m tools.deploycheck.kubeprobe --expect 200 --until 30 http://127.0.0.1:18083/ready
"""

import argparse
import http.client
import ssl
import sys
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

MAX_BODY_BYTES = 10 * 1024
USER_AGENT = "kube-probe/1.32"
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What the kubelet would conclude: ``success`` includes warnings (unfollowed 3xx)."""

    success: bool
    status: int | None
    body: bytes
    warning: bool = False
    error: str | None = None


def _connection(url: str, remaining: float) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(
            host, parts.port or 443, timeout=remaining, context=context
        )
    return http.client.HTTPConnection(host, parts.port or 80, timeout=remaining)


def probe(url: str, *, timeout: float = 1.0, user_agent: str = USER_AGENT) -> ProbeResult:
    """One probe of ``url`` with the kubelet's rules; never raises for network errors."""
    deadline = time.monotonic() + timeout
    original_host = urlsplit(url).hostname
    for _hop in range(MAX_REDIRECTS + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return ProbeResult(False, None, b"", error="timeout")
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = _connection(url, remaining)
        try:
            conn.putrequest("GET", target, skip_accept_encoding=True)
            conn.putheader("User-Agent", user_agent)
            conn.putheader("Accept", "*/*")
            conn.putheader("Connection", "close")
            conn.endheaders()
            response = conn.getresponse()
            if conn.sock is not None:
                conn.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            body = response.read(MAX_BODY_BYTES)
            status = response.status
            location = response.getheader("Location")
        except (OSError, http.client.HTTPException) as exc:
            kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            return ProbeResult(False, None, b"", error=f"{kind}: {exc}")
        finally:
            conn.close()
        if time.monotonic() > deadline:
            return ProbeResult(False, status, body, error="timeout")
        if status in REDIRECT_CODES and location:
            next_url = urljoin(url, location)
            if urlsplit(next_url).hostname == original_host:
                url = next_url
                continue
            return ProbeResult(True, status, body, warning=True)
        return ProbeResult(200 <= status < 400, status, body, warning=300 <= status < 400)
    return ProbeResult(False, None, b"", error=f"stopped after {MAX_REDIRECTS} redirects")


def main() -> int:
    parser = argparse.ArgumentParser(description="kubelet-style httpGet probe")
    parser.add_argument("url")
    parser.add_argument("--timeout", type=float, default=1.0, help="timeoutSeconds (default 1)")
    parser.add_argument("--expect", type=int, help="status to wait for (default: one probe)")
    parser.add_argument("--until", type=float, default=0.0, help="seconds to keep probing")
    args = parser.parse_args()
    give_up = time.monotonic() + args.until
    while True:
        result = probe(args.url, timeout=args.timeout)
        done = result.status == args.expect if args.expect is not None else True
        if done or time.monotonic() >= give_up:
            break
        time.sleep(0.2)
    verdict = "success" if result.success else "failure"
    detail = result.error or result.body[:200].decode("utf-8", "replace")
    print(f"[kube-probe] {args.url} -> {result.status} {verdict} {detail}", file=sys.stderr)  # noqa: T201
    if args.expect is not None:
        return 0 if result.status == args.expect else 1
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
