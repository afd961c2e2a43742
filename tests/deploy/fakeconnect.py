"""A tiny stand-in for a Kafka Connect worker's REST API (stdlib only, for deploy checks).

It answers what the sidecar polls (``GET /``, ``GET /health``, ``GET /connectors?expand=status``
and ``GET /connectors/<name>/status``) with ``connectors`` connectors of ``tasks`` tasks each,
all in ``state`` (RUNNING by default; FAILED ones carry a long stack trace) on ``worker_id``;
``task_state``, if given, is the tasks' state instead.
Used in-process by tests/deploy and as a script by ``make image-test`` and
``deploy/measure_sidecar.py``::

    python tests/deploy/fakeconnect.py --port 18399 --connectors 1 --tasks 1

It binds 127.0.0.1 only and prints ``listening on 127.0.0.1:<port>`` once it accepts connections.
"""

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

CONNECTOR = "deploy-check-connector"


TRACE = "org.apache.kafka.connect.errors.ConnectException: fake failure\n" + "".join(
    f"\tat org.example.FakeTask.method{i}(FakeTask.java:{i})\n" for i in range(60)
)


def connector_status(
    name: str, worker_id: str, tasks: int, state: str, task_state: str | None = None
) -> dict[str, Any]:
    def one(entry_state: str, extra: dict[str, Any]) -> dict[str, Any]:
        entry = {"state": entry_state, "worker_id": worker_id, **extra}
        return entry | ({"trace": TRACE} if entry_state == "FAILED" else {})

    return {
        "name": name,
        "connector": one(state, {}),
        "tasks": [one(task_state or state, {"id": i}) for i in range(tasks)],
        "type": "source",
    }


class FakeConnectServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        port: int = 0,
        worker_id: str | None = None,
        connectors: int = 1,
        tasks: int = 1,
        state: str = "RUNNING",
        churn: bool = False,
        task_state: str | None = None,
    ) -> None:
        super().__init__(("127.0.0.1", port), FakeConnectHandler)
        self.worker_id = worker_id or f"127.0.0.1:{self.server_address[1]}"
        names = [CONNECTOR] if connectors == 1 else [f"{CONNECTOR}-{i}" for i in range(connectors)]
        self.statuses = {
            name: connector_status(name, self.worker_id, tasks, state, task_state) for name in names
        }
        self.expanded = json.dumps({name: {"status": s} for name, s in self.statuses.items()})
        # churn: every answer differs by a byte (same content), so no poll can skip the parse.
        self.churn = churn
        self.served = 0

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="fake-connect", daemon=True)
        thread.start()
        return thread


class FakeConnectHandler(BaseHTTPRequestHandler):
    server: FakeConnectServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        name = path.removeprefix("/connectors/").removesuffix("/status")
        if path == "/":
            self._json(200, {"version": "3.9.0", "commit": "fake", "kafka_cluster_id": "fake"})
        elif path == "/health":
            self._json(200, {"status": "healthy", "message": "Worker has completed startup."})
        elif path == "/connectors":
            self.server.served += 1
            padding = " " * (self.server.served % 2) if self.server.churn else ""
            self._send(200, (self.server.expanded + padding).encode())
        elif path.endswith("/status") and name in self.server.statuses:
            self._json(200, self.server.statuses[name])
        else:
            self._json(404, {"error_code": 404, "message": f"Unknown path {path}"})

    def _json(self, code: int, body: object) -> None:
        self._send(code, json.dumps(body).encode())

    def _send(self, code: int, data: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the probe tests and the image test read only their own output."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--worker-id", default=None, help="default 127.0.0.1:<port>")
    parser.add_argument("--connectors", type=int, default=1)
    parser.add_argument("--tasks", type=int, default=1, help="tasks per connector")
    parser.add_argument("--state", default="RUNNING", help="state of every connector and task")
    parser.add_argument("--churn", action="store_true", help="a different body on every poll")
    args = parser.parse_args()
    server = FakeConnectServer(
        args.port, args.worker_id, args.connectors, args.tasks, args.state, args.churn
    )
    print(f"listening on 127.0.0.1:{server.port}", flush=True)  # noqa: T201 - script output
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
