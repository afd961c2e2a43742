"""Shared fixtures, and the test tiers.

Every test belongs to one tier, by marker:

- ``inprocess``: the sidecar's code in this process, Connect behind an ``httpx.MockTransport``,
  time from a ``FakeClock``. No socket is bound or connected and no process started (enforced
  below). Given to every test that carries no other tier marker. ``make test-unit``.
- ``process``: real processes or real sockets on 127.0.0.1. ``make test-process``.
- ``realkafka``: a real Apache Kafka broker and Connect workers (Java 17, Maven).
"""

import os
import socket
import subprocess
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

OTHER_TIERS = ("process", "realkafka")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in OTHER_TIERS):
            item.add_marker(pytest.mark.inprocess)


def _forbidden(what: str) -> Any:
    def refuse(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError(
            f"an in-process test tried to {what}: mark it @pytest.mark.process (tests/conftest.py)"
        )

    return refuse


@pytest.fixture(autouse=True)
def inprocess_stays_in_process(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The ``inprocess`` tier means it: no network socket, no child process."""
    if request.node.get_closest_marker("inprocess") is None:
        yield
        return
    with monkeypatch.context() as patch:
        patch.setattr(socket.socket, "bind", _forbidden("bind a socket"))
        patch.setattr(socket.socket, "connect", _forbidden("connect a socket"))
        patch.setattr(socket.socket, "connect_ex", _forbidden("connect a socket"))
        # Popen.__init__ calls _execute_child to fork: refusing there leaves no half-made Popen.
        patch.setattr(subprocess.Popen, "_execute_child", _forbidden("start a process"))
        yield


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: start every test from none of ours."""
    for name in list(os.environ):
        if name.startswith("CONNECT_PROBE_") or name == "POD_IP":
            monkeypatch.delenv(name)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
