"""A thin, strict client for the few Kafka Connect REST endpoints the sidecar reads.

Every request is a GET — or, only with AUTO_RESTART on, a restart POST — with a whole-request
deadline (connect + headers + body, so a body trickled one byte at a time cannot stretch it) and a
response-size cap. Failures are raised as one tree::

    ConnectError                  (code, message; never carries credentials)
    ├── ConnectUnreachable        refused, reset, DNS, TLS handshake
    ├── ConnectTimeout            no complete answer within TIMEOUT
    ├── ConnectHTTPError          unexpected status
    │   ├── ConnectAuthError      401/403: fix the credentials, restarting Connect won't help
    │   ├── ConnectStarting       Jetty's HTML 404 while Connect registers its resources
    │   └── ConnectConflict       409 on a write: a rebalance is in progress, try again later
    └── ConnectBadResponse        not JSON, wrong shape, too large, a redirect
"""

import asyncio
import contextlib
import hashlib
import itertools
import os
import re
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from app.connect.decoding import (
    Known,
    TraceKeeper,
    decode_entries,
    decode_listing,
    decode_status,
    describe_error,
)
from app.connect.healthstage import kafka_stage
from app.connect.models import (
    ConnectorStatus,
    HealthBody,
    MalformedStatus,
    ServerInfo,
    Statuses,
    WorkerHealth,
)
from app.memory import container_memory_limit, response_cap
from app.settings import Settings
from app.wire import ReasonCode

__all__ = [
    "ConnectAuthError",
    "ConnectBadResponse",
    "ConnectClient",
    "ConnectConflict",
    "ConnectError",
    "ConnectHTTPError",
    "ConnectStarting",
    "ConnectTimeout",
    "ConnectUnreachable",
    "build_http_client",
    "path_segment",
    "supports_restart_plan",
]

EXPAND_STATUS: Final = (("expand", "status"),)
RESTART_FAILED_WITH_TASKS: Final = (("includeTasks", "true"), ("onlyFailed", "true"))
T = TypeVar("T")
PREPARED_REQUESTS: Final = 16
# Entries decoded between two chances for probes to run; bodies hashed in a thread above this.
DECODE_BATCH: Final = 100
THREAD_DIGEST_BYTES: Final = 1024 * 1024
# Largest body read from GET / and GET /health (each a few hundred bytes in practice).
SMALL_RESPONSE_BYTES: Final = 1024 * 1024


class ConnectError(Exception):
    """A poll could not get a usable answer from Connect."""

    code = ReasonCode.CONNECT_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConnectUnreachable(ConnectError):
    code = ReasonCode.CONNECT_UNREACHABLE


class ConnectTimeout(ConnectError):
    code = ReasonCode.CONNECT_TIMEOUT


class ConnectHTTPError(ConnectError):
    code = ReasonCode.CONNECT_HTTP_ERROR

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class ConnectAuthError(ConnectHTTPError):
    code = ReasonCode.CONNECT_AUTH


class ConnectStarting(ConnectHTTPError):
    code = ReasonCode.CONNECT_STARTING


class ConnectConflict(ConnectHTTPError):
    """409 to a write (restart): the worker is rebalancing or has no known leader right now."""

    code = ReasonCode.CONNECT_CONFLICT


class ConnectBadResponse(ConnectError):
    code = ReasonCode.CONNECT_BAD_RESPONSE


@dataclass(frozen=True, slots=True)
class RawResponse:
    status_code: int
    content_type: str
    body: bytes | bytearray
    location: str | None


_health_decoder = msgspec.json.Decoder(HealthBody)
_server_info_decoder = msgspec.json.Decoder(ServerInfo)


def build_http_client(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The one shared client: base URL, preemptive basic auth, TLS, no redirects, no env proxies."""
    password = settings.resolved_password()
    auth = (
        httpx.BasicAuth(settings.username, password or "")
        if settings.username is not None
        else None
    )
    return httpx.AsyncClient(
        base_url=settings.connect_url,
        auth=auth,  # httpx sends Basic credentials with the first request: Connect never challenges
        # Plain http needs no TLS context: loading the CA bundle costs ~3 MB of RSS for nothing.
        verify=_ssl_context(settings) if settings.connect_url.startswith("https") else False,
        timeout=httpx.Timeout(settings.timeout),
        follow_redirects=False,
        # A sidecar talks to localhost: an HTTP(S)_PROXY meant for other traffic must not apply.
        trust_env=False,
        limits=httpx.Limits(
            max_connections=max(4, settings.status_concurrency + 2),
            # Keep the connections across polls (httpx's default 5 s expiry equals the default
            # poll interval: every poll would open new ones), but below Jetty's 30 s idle timeout.
            keepalive_expiry=min(max(10.0, 3 * settings.poll_interval), 25.0),
        ),
        # identity: a compressed body would escape MAX_RESPONSE_BYTES (a gzip bomb inflates 1000x
        # per layer), so the sidecar never asks for one and refuses one sent anyway (see _send).
        headers={
            "Accept": "application/json",
            "Accept-Encoding": "identity",
            "User-Agent": "kafka-connect-probe",
        },
        transport=transport,
    )


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(
        cafile=str(settings.ca_file) if settings.ca_file is not None else None
    )
    if settings.cert_file is not None:
        context.load_cert_chain(
            str(settings.cert_file),
            str(settings.key_file) if settings.key_file is not None else None,
        )
    if not settings.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class ConnectClient:
    """The reads a poll needs, each returning parsed models or raising a ``ConnectError``."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: Settings,
        *,
        renew: Callable[[], httpx.AsyncClient] | None = None,
    ) -> None:
        self._http = http
        self._given = http
        # A new client (a new connection pool) replaces ``http`` before the first request after
        # one was cut short (see ``_renew_if_interrupted``); without ``renew``, never.
        self._renew = renew
        self._interrupted = False
        self._in_flight = 0
        self.renewals = 0
        self._requests: dict[tuple[str, str, tuple[tuple[str, str], ...]], httpx.Request] = {}
        self._timeout = settings.timeout
        self._max_bytes, _ = response_cap(settings.max_response_bytes, container_memory_limit())
        self._concurrency = settings.status_concurrency
        self._expose_traces = settings.expose_traces

    async def get(self, path: str, params: Sequence[tuple[str, str]] = ()) -> RawResponse:
        """GET ``path`` within the deadline, reading at most ``max_response_bytes``."""
        return await self._request("GET", path, params)

    async def post(self, path: str, params: Sequence[tuple[str, str]] = ()) -> RawResponse:
        """POST ``path`` (no body) with the same deadline and size cap as a GET."""
        return await self._request("POST", path, params)

    async def _request(
        self, method: str, path: str, params: Sequence[tuple[str, str]]
    ) -> RawResponse:
        try:
            async with asyncio.timeout(self._timeout):
                await self._renew_if_interrupted()
                self._in_flight += 1
                try:
                    try:
                        return await self._send(method, path, params)
                    except httpx.RemoteProtocolError as exc:
                        if method != "GET" or not _stale_connection(exc):
                            raise
                        # A kept-alive connection the server had just closed: a GET is safe
                        # to send again, once, on a new connection (within the same deadline).
                        return await self._send(method, path, params)
                except BaseException:  # failed, timed out, or cancelled with a failing sibling
                    self._interrupted = True
                    raise
                finally:
                    self._in_flight -= 1
        except TimeoutError:
            raise ConnectTimeout(
                f"{method} {path} got no complete answer within {self._timeout:g}s"
            ) from None
        except httpx.TimeoutException:
            raise ConnectTimeout(
                f"{method} {path} got no complete answer within {self._timeout:g}s"
            ) from None
        except httpx.TransportError as exc:
            raise ConnectUnreachable(f"{method} {path} failed: {_transport_detail(exc)}") from None

    def _prepared(self, method: str, path: str, params: Sequence[tuple[str, str]]) -> httpx.Request:
        """The request, built once per client: URL merging and parsing is a third of a poll's
        CPU at 100 connectors. Bounded, since the legacy per-connector paths vary."""
        key = (method, path, tuple(params))
        request = self._requests.get(key)
        if request is None:
            request = self._http.build_request(method, path, params=list(params))
            if len(self._requests) < PREPARED_REQUESTS:
                self._requests[key] = request
        return request

    async def _send(self, method: str, path: str, params: Sequence[tuple[str, str]]) -> RawResponse:
        request = self._prepared(method, path, params)
        async with _closing(await self._http.send(request, stream=True)) as response:
            limit = self._cap(path)
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise self._too_large(method, path, limit)
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise ConnectBadResponse(
                    f"{method} {path} answered a compressed body (Content-Encoding: "
                    f"{encoding[:40]}) although the sidecar asked for identity; refusing to "
                    "decompress it"
                )
            body = bytearray()
            handed_over = False
            try:
                async for chunk in response.aiter_bytes():  # identity only: see above
                    body += chunk
                    if len(body) > limit:
                        raise self._too_large(method, path, limit)
                raw = RawResponse(
                    status_code=response.status_code,
                    content_type=response.headers.get("content-type", ""),
                    body=body,  # no bytes() copy: 4 MB at 10,000 connectors
                    location=response.headers.get("location"),
                )
                handed_over = True
                return raw
            finally:
                # Free the buffer now: a failed poll's exceptions keep this frame alive in a
                # reference cycle (asyncio.TaskGroup's ExceptionGroup) until the cyclic GC runs,
                # and with it up to MAX_RESPONSE_BYTES per request, poll after poll.
                if not handed_over:
                    body.clear()

    async def _renew_if_interrupted(self) -> None:
        """A fresh connection pool once no request is in flight after one was cut short.

        httpcore 1.0 can leave the connection of a cancelled request counted as busy for good
        (encode/httpcore#1093, #830); once every slot of the pool is taken, each request waits
        for a connection until its deadline and every poll fails with ``connect_timeout``
        against a healthy Connect, until the process restarts (and /live would fail after
        LIVE_GRACE). Requests are cut short only when something already went wrong, so this
        costs one new connection then.
        """
        if not self._interrupted or self._in_flight or self._renew is None:
            return
        self._interrupted = False
        old, self._http = self._http, self._renew()
        self._requests.clear()  # built for the old client
        self.renewals += 1
        await old.aclose()  # closes whatever the old pool still holds

    async def aclose(self) -> None:
        """Close a client this object made (the one it was given belongs to the caller)."""
        if self._http is not self._given:
            await self._http.aclose()

    def _cap(self, path: str) -> int:
        """Only the connector listing can be large: GET / and /health answer a few hundred bytes,
        and a poll reads them in parallel with it (three capped bodies would add up)."""
        if path.startswith("/connectors"):
            return self._max_bytes
        return min(self._max_bytes, SMALL_RESPONSE_BYTES)

    def _too_large(self, method: str, path: str, limit: int) -> ConnectBadResponse:
        which = "MAX_RESPONSE_BYTES" if limit == self._max_bytes else "the cap for this endpoint"
        return ConnectBadResponse(
            f"{method} {path} answered more than {limit} bytes ({which}); refusing to read it"
        )

    @staticmethod
    def raise_for_status(path: str, raw: RawResponse) -> None:
        """Turn any answer but 200 into the right ``ConnectError``."""
        status = raw.status_code
        if status == 200:
            return
        if 300 <= status < 400:
            target = f" to {raw.location[:200]}" if raw.location else ""
            raise ConnectBadResponse(
                f"GET {path} answered a redirect ({status}{target}); Connect never redirects, "
                "so CONNECT_URL probably points at something else"
            )
        if status in (401, 403):
            raise ConnectAuthError(
                f"GET {path} was refused with {status}: check USERNAME and PASSWORD/PASSWORD_FILE",
                status,
            )
        if status == 404 and not _is_json(raw):
            raise ConnectStarting(
                f"GET {path} answered 404 with a non-JSON page: the REST server is up but "
                "Connect has not registered its resources yet (worker starting)",
                status,
            )
        raise ConnectHTTPError(f"GET {path} answered {status}{_error_detail(raw)}", status)

    async def fetch_statuses(self) -> Statuses:
        """All connectors' statuses, decoded and malformed."""
        _, result = await self.fetch_statuses_if_changed(None)
        assert result is not None
        return result

    async def fetch_statuses_if_changed(
        self, known_digest: bytes | None, known: Known | None = None
    ) -> tuple[bytes | None, Statuses | None]:
        """``(digest, statuses)``, or ``(digest, None)`` when the answer is byte-for-byte the one
        whose digest the caller already holds (nothing parsed, nothing kept here).

        One ``GET /connectors?expand=status`` on Connect ≥ 2.3. Older workers ignore ``expand``
        and answer the plain name list; then each status is fetched with bounded concurrency
        (and no digest: the answer is assembled from many). An entry that does not decode is
        reported in ``Statuses.malformed``; only an answer that is not a listing fails the poll.
        ``known``: the statuses the caller holds, reused where equal (see ``decode_entries``).
        """
        path = "/connectors"
        raw = await self.get(path, EXPAND_STATUS)
        self.raise_for_status(path, raw)
        digest = await _digest(raw.body)
        if digest == known_digest:
            return digest, None
        listing = self._decode(path, raw, decode_listing)
        del raw  # the entries are views into the body: it goes once they are decoded
        if isinstance(listing, dict):
            keeper = TraceKeeper(self._expose_traces)
            statuses = await _decode_in_batches(listing, keeper, known)
            del listing
            return digest, statuses
        return None, await self._fetch_each(listing)

    async def _fetch_each(self, names: list[str]) -> Statuses:
        limiter = asyncio.Semaphore(self._concurrency)
        keeper = TraceKeeper(self._expose_traces)

        async def one(name: str) -> ConnectorStatus | MalformedStatus | None:
            path = f"/connectors/{path_segment(name)}/status"
            async with limiter:
                raw = await self.get(path)
            if raw.status_code == 404 and _is_json(raw):
                return None  # listed, but its worker has not written a status yet
            self.raise_for_status(path, raw)
            return decode_status(raw.body, keeper)

        results = await asyncio.gather(*(one(name) for name in names))
        connectors: dict[str, ConnectorStatus] = {}
        malformed: dict[str, MalformedStatus] = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, ConnectorStatus):
                connectors[name] = result
            elif isinstance(result, MalformedStatus):
                malformed[name] = result
        return Statuses(connectors, malformed, legacy_api=True)

    async def fetch_health(self) -> WorkerHealth:
        """``GET /health``; a JSON 404 means the worker predates 3.9."""
        path = "/health"
        try:
            raw = await self.get(path)
        except ConnectTimeout:
            return WorkerHealth(
                "timeout",
                f"GET /health got no answer within {self._timeout:g}s: the worker's herder "
                "thread is busy or stuck",
            )
        if raw.status_code == 404 and _is_json(raw):
            return WorkerHealth("unsupported", "GET /health is not supported (Connect < 3.9)")
        if raw.status_code not in (200, 500, 503):
            self.raise_for_status(path, raw)
        try:
            body = _health_decoder.decode(raw.body)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            if raw.status_code == 200:
                raise ConnectBadResponse(
                    "GET /health answered 200 with an unexpected body: " + describe_error(exc)
                ) from None
            raise ConnectHTTPError(
                f"GET /health answered {raw.status_code}{_error_detail(raw)}", raw.status_code
            ) from None
        message = body.message[:500]
        if raw.status_code == 200 and body.status == "healthy":
            return WorkerHealth("healthy", message)
        if raw.status_code == 503 or body.status == "starting":
            return WorkerHealth("starting", message)
        if kafka_stage(message) is not None:
            return WorkerHealth("kafka_unreachable", message)
        return WorkerHealth("unhealthy", message)

    async def fetch_server_info(self) -> ServerInfo | None:
        """``GET /`` for the version; optional, so any failure is just ``None``."""
        try:
            raw = await self.get("/")
            self.raise_for_status("/", raw)
            return _server_info_decoder.decode(raw.body)
        except (ConnectError, msgspec.DecodeError, UnicodeDecodeError):
            return None

    # --- writes: only the auto-restarter (AUTO_RESTART) calls these ------------------------
    async def restart_connector(self, name: str, *, with_failed_tasks: bool) -> int:
        """``POST /connectors/{name}/restart``; returns the 2xx status or raises.

        ``with_failed_tasks`` sends KIP-745's ``?includeTasks=true&onlyFailed=true`` (Connect ≥ 3.0:
        the connector instance if FAILED plus every FAILED task, cluster-wide). Older workers
        ignore unknown query parameters and would restart the connector instance only, so the
        caller must know the version before asking for it.
        """
        path = f"/connectors/{path_segment(name)}/restart"
        params = RESTART_FAILED_WITH_TASKS if with_failed_tasks else ()
        raw = await self.post(path, params)
        shown = path + ("?includeTasks=true&onlyFailed=true" if with_failed_tasks else "")
        self._raise_for_write(shown, raw)
        return raw.status_code

    async def restart_task(self, name: str, task: int) -> int:
        """``POST /connectors/{name}/tasks/{task}/restart`` (all versions); 2xx status or raises."""
        path = f"/connectors/{path_segment(name)}/tasks/{task}/restart"
        raw = await self.post(path)
        self._raise_for_write(path, raw)
        return raw.status_code

    @staticmethod
    def _raise_for_write(path: str, raw: RawResponse) -> None:
        """Any 2xx is success (restarts answer 200, 202 or 204); 409 is a rebalance."""
        status = raw.status_code
        if 200 <= status < 300:
            return
        if status == 409:
            raise ConnectConflict(f"POST {path} answered 409{_error_detail(raw)}", status)
        if 300 <= status < 400:
            raise ConnectBadResponse(f"POST {path} answered a redirect ({status})")
        if status in (401, 403):
            raise ConnectAuthError(
                f"POST {path} was refused with {status}: the REST user may read but not restart",
                status,
            )
        if status == 404 and not _is_json(raw):
            raise ConnectStarting(f"POST {path} answered 404 with a non-JSON page", status)
        raise ConnectHTTPError(f"POST {path} answered {status}{_error_detail(raw)}", status)

    @staticmethod
    def _decode(path: str, raw: RawResponse, decode: Callable[[bytes | bytearray], T]) -> T:
        try:
            return decode(raw.body)
        except msgspec.ValidationError as exc:
            raise ConnectBadResponse(
                f"GET {path} answered JSON of an unexpected shape: {describe_error(exc)}"
            ) from None
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            content_type = raw.content_type or "no content type"
            raise ConnectBadResponse(
                f"GET {path} answered something that is not JSON ({content_type}): "
                + describe_error(exc)
            ) from None


async def _digest(body: bytes | bytearray) -> bytes:
    """blake2b of the body; a large one hashed in a thread (hashlib releases the GIL), so
    probes are answered meanwhile."""
    if len(body) < THREAD_DIGEST_BYTES:
        return hashlib.blake2b(body, digest_size=16).digest()
    return await asyncio.to_thread(lambda: hashlib.blake2b(body, digest_size=16).digest())


async def _decode_in_batches(
    listing: dict[str, msgspec.Raw], keeper: TraceKeeper, known: Known | None
) -> Statuses:
    """Decode the entries a batch at a time, letting queued probes through in between: a
    60 MB answer decoded in one go would hold every probe for its whole duration."""
    connectors: dict[str, ConnectorStatus] = {}
    malformed: dict[str, MalformedStatus] = {}
    entries = iter(listing.items())
    while batch := dict(itertools.islice(entries, DECODE_BATCH)):
        decoded, bad = (
            decode_entries(batch, keeper, known) if known else decode_entries(batch, keeper)
        )
        connectors.update(decoded)
        malformed.update(bad)
        del batch
        await asyncio.sleep(0)
    return Statuses(connectors, malformed)


def path_segment(name: str) -> str:
    """A connector name as exactly one URL path segment: everything but unreserved characters
    percent-encoded, and a name that is ``.`` or ``..`` as ``%2E``s, since httpx (like any
    client following RFC 3986) would otherwise collapse it: ``/connectors/../status`` is
    ``/status``."""
    quoted = quote(name, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


@contextlib.asynccontextmanager
async def _closing(response: httpx.Response) -> AsyncIterator[httpx.Response]:
    """Release the connection whatever happens to the streamed response."""
    try:
        yield response
    finally:
        await response.aclose()


def _transport_detail(exc: httpx.TransportError) -> str:
    """The OS-level cause ("Connection refused") rather than httpx's generic wrapper text."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):  # an OSError whose errno means nothing
            return f"TLS certificate not accepted: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed: {cause.reason or cause}"
        if isinstance(cause, OSError) and (cause.errno or cause.strerror):
            return os.strerror(cause.errno) if cause.errno else str(cause.strerror)
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__


def _stale_connection(exc: httpx.RemoteProtocolError) -> bool:
    """httpcore's words for a connection closed before any byte of the answer arrived."""
    return "without sending a response" in str(exc)


def _is_json(raw: RawResponse) -> bool:
    body = raw.body.lstrip()
    return body.startswith((b"{", b"[")) and "html" not in raw.content_type.lower()


def _error_detail(raw: RawResponse) -> str:
    """Connect's ``{"error_code", "message"}`` message, if the body is one."""
    try:
        decoded = msgspec.json.decode(raw.body[:4096])
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return ""
    if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
        return f": {decoded['message'][:300]}"
    return ""


def supports_restart_plan(version: str | None) -> bool:
    """Whether ``GET /``'s version has KIP-745's ``?includeTasks&onlyFailed`` (Apache Kafka 3.0).

    Confluent Platform reports its own numbering with a ``-ccs``/``-ce`` suffix (CP 7.0 = AK 3.0).
    Unknown or unparsable means no: the per-object restarts work on every version.
    """
    if not version:
        return False
    match = re.match(r"(\d+)\.(\d+)", version.strip())
    if match is None:
        return False
    major, minor = int(match.group(1)), int(match.group(2))
    if re.search(r"-(ccs|ce)\b", version):
        return major >= 7
    return (major, minor) >= (3, 0)
