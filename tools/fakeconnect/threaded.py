"""``FakeConnect`` on a real socket (127.0.0.1, a free port), for tests that run real processes."""

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from tools.fakeconnect.model import FakeConnect


class _Handler(BaseHTTPRequestHandler):
    fake: FakeConnect

    def do_GET(self) -> None:
        request = httpx.Request(
            self.command, f"http://127.0.0.1{self.path}", headers=dict(self.headers)
        )
        response = self.fake.answer(request)
        body = response.content
        self.send_response(response.status_code)
        self.send_header("Content-Type", response.headers.get("content-type", "application/json"))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET  # restart requests (auto-restart); the fake routes on request.method

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_fake(fake: FakeConnect, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """Serve ``fake`` on 127.0.0.1 (over TLS with ``tls``); yields its base URL; stops the server
    on exit. Every knob but ``down`` and ``hang`` applies, as through the MockTransport."""
    with serve_handler(type("Handler", (_Handler,), {"fake": fake}), tls) as url:
        yield url


@contextmanager
def serve_handler(
    handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None
) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 in a thread (over TLS with ``tls``); yields the base URL;
    stops it on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        scheme = "https" if tls is not None else "http"
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
