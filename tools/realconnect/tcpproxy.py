"""A small TCP forwarder on 127.0.0.1, run as its own process so a test can cut it by PID.

``python -m tools.realconnect.tcpproxy LISTEN_PORT TARGET_PORT``: every connection to
``127.0.0.1:LISTEN_PORT`` is piped to ``127.0.0.1:TARGET_PORT``. Killing the process drops every
connection and refuses new ones: the clients behind it lose their broker while everyone else still
reaches it (the zombie-worker case of the lost-Kafka tests). :class:`TcpProxy` starts and stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

from tools.realconnect.cluster import port_open
from tools.realconnect.procs import ManagedProcess
from tools.realconnect.wait import wait_until

HOST = "127.0.0.1"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _serve(listen: int, target: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, HOST, listen, reuse_address=True)
    async with server:
        await server.serve_forever()


class TcpProxy:
    """The forwarder as a managed child process (stopped by PID); :meth:`cut` kills it,
    :meth:`start` brings it back on the same port."""

    def __init__(self, name: str, listen: int, target: int, log_path: Path) -> None:
        self.name, self.listen, self.target, self.log_path = name, listen, target, log_path
        self.proc: ManagedProcess | None = None

    def start(self) -> TcpProxy:
        cmd = [
            sys.executable,
            "-m",
            "tools.realconnect.tcpproxy",
            str(self.listen),
            str(self.target),
        ]
        root = Path(__file__).resolve().parents[2]
        self.proc = ManagedProcess(self.name, cmd, self.log_path, cwd=root)
        wait_until(lambda: port_open(self.listen), timeout=15, what=f"{self.name} listening")
        return self

    def cut(self) -> None:
        """SIGKILL: every connection through it drops at once, new ones are refused."""
        if self.proc is not None:
            self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(5)


def main(argv: list[str]) -> int:
    listen, target = int(argv[0]), int(argv[1])
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(listen, target))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
