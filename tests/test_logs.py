"""Logs tell *when* things changed: one line per verdict change and per connector/task state
change, never one per probe or per unchanged poll, and untrusted names cannot forge lines."""

import json
import logging

import pytest

from app.logs import JsonFormatter, RepeatThrottle, logging_config
from tools.fakeclock import FakeClock
from tools.fakeconnect.bodies import THIS_WORKER, status
from tools.fakeconnect.model import Canned, FakeConnect
from tools.sidecar import Sidecar

pytestmark = pytest.mark.anyio

CHANGES = "app.changes"
VERDICT = "app.verdict"
TEXT_FORMAT: str = logging_config("INFO", "text")["formatters"]["main"]["format"]
EVIL = "evil\nFAKE 2026-01-01 00:00:00,000 WARNING app.verdict: all good\x1b[31m\r\u2028"


@pytest.fixture
def caplog(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The sidecar's records (httpx logs each request at INFO; production sets it to WARNING)."""
    return [record for record in caplog.records if record.name.startswith("app")]


def messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [record.getMessage() for record in ours(caplog) if record.name == logger]


def fail_task(
    fake: FakeConnect, name: str, trace: str = "org.example.Boom: bad\n\tat x(Y.java:1)"
) -> None:
    fake.set_task(name, 0, "FAILED")
    fake.connectors[name]["tasks"][0]["trace"] = trace


def orders_sink() -> FakeConnect:
    fake = FakeConnect()
    fake.add(status("orders-sink", tasks=[("RUNNING", THIS_WORKER)]))
    return fake


async def test_a_task_state_change_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    fake, clock = orders_sink(), FakeClock()
    async with Sidecar(fake, clock) as sidecar:
        await sidecar.poll()
        assert messages(caplog, CHANGES) == []  # a healthy new connector is not news
        fail_task(fake, "orders-sink")
        clock.advance(5)
        await sidecar.poll()
        (line,) = messages(caplog, CHANGES)
        assert line.startswith(f"orders-sink task 0 RUNNING→FAILED on {THIS_WORKER}")
        assert line.endswith(": org.example.Boom: bad")  # the trace's first line only
        clock.advance(5)
        await sidecar.poll()
        assert len(messages(caplog, CHANGES)) == 1  # unchanged: nothing new
        fake.set_task("orders-sink", 0, "RUNNING")
        del fake.connectors["orders-sink"]["tasks"][0]["trace"]
        clock.advance(5)
        await sidecar.poll()
        assert messages(caplog, CHANGES)[1:] == [
            f"orders-sink task 0 FAILED→RUNNING on {THIS_WORKER}"
        ]


async def test_a_verdict_change_is_logged_once_and_probes_log_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, clock = orders_sink(), FakeClock()
    async with Sidecar(fake, clock) as sidecar:
        await sidecar.poll()
        first = messages(caplog, VERDICT)  # the starting point, once per probe
        assert [line.split(" ")[0] for line in first] == ["ready:", "live"]
        caplog.clear()
        fail_task(fake, "orders-sink")
        clock.advance(5)
        await sidecar.poll()
        (record,) = [r for r in ours(caplog) if r.name == VERDICT]
        assert record.levelno == logging.WARNING
        assert record.getMessage().startswith("not ready: 1 of 2 connector instances and tasks")
        caplog.clear()
        for _ in range(100):
            assert sidecar.ready()[0] == 503
            assert sidecar.live()[0] == 200
        clock.advance(5)
        await sidecar.poll()
        clock.advance(400)  # past STARTUP_GRACE: /live is re-judged, but its verdict is the same
        assert sidecar.live()[0] == 200
        assert ours(caplog) == []  # neither probes nor unchanged polls log anything
        fake.set_task("orders-sink", 0, "RUNNING")
        clock.advance(5)
        await sidecar.poll()
        (record,) = [r for r in ours(caplog) if r.name == VERDICT]
        assert (record.levelno, record.getMessage()) == (
            logging.INFO,
            "ready: 2 connector instances and tasks in scope",
        )


async def test_a_poll_failure_is_logged_once_until_it_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, clock = orders_sink(), FakeClock()
    async with Sidecar(fake, clock) as sidecar:
        await sidecar.poll()
        caplog.clear()
        fake.down = True
        for _ in range(3):
            clock.advance(5)
            await sidecar.poll()
        failures = [r.getMessage() for r in ours(caplog) if "poll failed" in r.getMessage()]
        (failure,) = failures
        assert failure.startswith("poll failed: GET /connectors failed:")
        assert len(messages(caplog, VERDICT)) == 1  # ready → not ready; live keeps its grace
        fake.down = False
        clock.advance(5)
        await sidecar.poll()
        assert any("poll succeeded again" in r.getMessage() for r in ours(caplog))


async def test_untrusted_text_cannot_forge_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    fake, clock = FakeConnect(), FakeClock()
    fake.add(status(EVIL, tasks=[("RUNNING", THIS_WORKER)]))
    async with Sidecar(fake, clock) as sidecar:
        await sidecar.poll()
        fail_task(fake, EVIL, "Boom: \x1b[2J\r\nFORGED line\n\tat x.y(Z.java:1)")
        fake.set_connector(EVIL, "FUTURE\nFORGED")  # a state is Connect's text too
        clock.advance(5)
        await sidecar.poll()
        # Connect's own error text is untrusted too.
        fake.canned["/connectors"] = Canned(
            500, json.dumps({"error_code": 500, "message": "boom\nFORGED\x1b[0m"}).encode()
        )
        clock.advance(5)
        await sidecar.poll()
    records = ours(caplog)
    assert any(r.name == CHANGES and "RUNNING→FAILED" in r.getMessage() for r in records)
    assert any("poll failed" in r.getMessage() for r in records)
    text = logging.Formatter(TEXT_FORMAT)
    for record in records:
        line = text.format(record)
        assert line.splitlines() == [line], f"{record.name} wrote several lines: {line!r}"
        assert "\x1b" not in line
        assert "\u2028" not in line


async def test_json_format_is_one_valid_object_per_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, clock = FakeConnect(), FakeClock()
    fake.add(status(EVIL, tasks=[("RUNNING", THIS_WORKER)]))
    fake.add(status("orders-sink", tasks=[("RUNNING", THIS_WORKER)]))
    async with Sidecar(fake, clock) as sidecar:
        await sidecar.poll()
        fail_task(fake, EVIL)
        fail_task(fake, "orders-sink")
        clock.advance(5)
        await sidecar.poll()
        fake.down = True
        clock.advance(5)
        await sidecar.poll()
    try:
        raise RuntimeError("with a\ntraceback")
    except RuntimeError:
        logging.getLogger("app.test").exception("an error with an exception attached")
    records = ours(caplog)
    assert logging_config("INFO", "json")["formatters"]["main"]["()"] is JsonFormatter
    formatter = JsonFormatter()
    stream = "".join(formatter.format(record) + "\n" for record in records)  # as a handler writes
    lines = stream.splitlines()
    assert len(lines) == len(records)
    entries = [json.loads(line) for line in lines]
    for entry in entries:
        assert set(entry) >= {"ts", "level", "logger", "message"}
        assert entry["ts"].endswith("Z")
    assert all(line.isascii() for line in lines)
    changes = [e["message"] for e in entries if e["logger"] == CHANGES]
    assert f"orders-sink task 0 RUNNING→FAILED on {THIS_WORKER}: org.example.Boom: bad" in changes
    assert entries[-1]["level"] == "ERROR"
    assert "RuntimeError: with a\ntraceback" in entries[-1]["exception"]


def test_malformed_request_warnings_are_throttled() -> None:
    throttle = RepeatThrottle(interval=60)

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", logging.WARNING, "x", 1, message, None, None)

    first = record(RepeatThrottle.MESSAGE)
    assert throttle.filter(first)
    assert not any(throttle.filter(record(RepeatThrottle.MESSAGE)) for _ in range(100))
    assert throttle.filter(record("Started server process"))
