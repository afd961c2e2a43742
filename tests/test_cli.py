"""The command line: flags, one-shot checks, and bad configuration exiting 2 with a clear line."""

import json
import subprocess
from pathlib import Path

import pytest

from app import __version__
from app.cli import main
from tools.fakeconnect.bodies import THIS_WORKER, status
from tools.fakeconnect.model import FakeConnect
from tools.fakeconnect.threaded import serve_fake
from tools.procs import SIDECAR

SECRET = "hunter2:with:colons"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SIDECAR), *args], capture_output=True, text=True, timeout=30, env=env, check=False
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"CONNECT_PROBE_READY_STATES": "RUNNING,SLEEPING"}, "CONNECT_PROBE_READY_STATES"),
        ({"CONNECT_PROBE_CONNECT_URL": "localhost:8083"}, "CONNECT_PROBE_CONNECT_URL"),
        ({"CONNECT_PROBE_CONNECT_URL": "ftp://x"}, "CONNECT_PROBE_CONNECT_URL"),
        ({"CONNECT_PROBE_TIMEOUT": "30", "CONNECT_PROBE_MAX_AGE": "30"}, "MAX_AGE"),
        ({"CONNECT_PROBE_PASSWORD_FILE": "/nonexistent/pw"}, "CONNECT_PROBE_PASSWORD_FILE"),
        ({"CONNECT_PROBE_SCOPE": "pod"}, "CONNECT_PROBE_SCOPE"),
        ({"CONNECT_PROBE_MAX_UNHEALTHY": "lots"}, "CONNECT_PROBE_MAX_UNHEALTHY"),
        ({"CONNECT_PROBE_POLL_INTERVAL": "-1"}, "CONNECT_PROBE_POLL_INTERVAL"),
        ({"CONNECT_PROBE_INCLUDE": "re:("}, "CONNECT_PROBE_INCLUDE"),
        ({"CONNECT_PROBE_WORKER_ID": "no-port"}, "CONNECT_PROBE_WORKER_ID"),
        ({"CONNECT_PROBE_PASSWORD": SECRET}, "USERNAME"),
        ({"CONNECT_PROBE_LOG_FORMAT": "xml"}, "CONNECT_PROBE_LOG_FORMAT"),
        # progress checks (app/progress)
        (
            {"CONNECT_PROBE_KAFKA_BOOTSTRAP_SERVERS": "no-port"},
            "CONNECT_PROBE_KAFKA_BOOTSTRAP_SERVERS",
        ),
        ({"CONNECT_PROBE_KAFKA_SECURITY_PROTOCOL": "TLS"}, "CONNECT_PROBE_KAFKA_SECURITY_PROTOCOL"),
        ({"CONNECT_PROBE_KAFKA_SASL_MECHANISM": "GSSAPI"}, "CONNECT_PROBE_KAFKA_SASL_MECHANISM"),
        ({"CONNECT_PROBE_STALL_WINDOWS": "s3-*"}, "CONNECT_PROBE_STALL_WINDOWS"),
        ({"CONNECT_PROBE_STALL_WINDOWS": "s3-*=0"}, "CONNECT_PROBE_STALL_WINDOWS"),
        ({"CONNECT_PROBE_PROGRESS_EXCLUDE": "re:("}, "CONNECT_PROBE_PROGRESS_EXCLUDE"),
        ({"CONNECT_PROBE_ALLOWED_LAG": "-1"}, "CONNECT_PROBE_ALLOWED_LAG"),
        ({"CONNECT_PROBE_PROGRESS_INTERVAL": "0"}, "CONNECT_PROBE_PROGRESS_INTERVAL"),
        (
            {"CONNECT_PROBE_KAFKA_PASSWORD_FILE": "/nonexistent/pw"},
            "CONNECT_PROBE_KAFKA_PASSWORD_FILE",
        ),
        ({"CONNECT_PROBE_AUTO_RESTART_STALLED": "true"}, "CONNECT_PROBE_KAFKA_BOOTSTRAP_SERVERS"),
        ({"CONNECT_PROBE_LIVE_FAIL_ON_STALL": "true"}, "CONNECT_PROBE_KAFKA_BOOTSTRAP_SERVERS"),
        (
            {"CONNECT_PROBE_KAFKA_BOOTSTRAP_SERVERS": "k:9092", "CONNECT_PROBE_STALL_WINDOW": "20"},
            "CONNECT_PROBE_STALL_WINDOW (20) must be at least CONNECT_PROBE_PROGRESS_INTERVAL (30)",
        ),
        (
            {
                "CONNECT_PROBE_KAFKA_BOOTSTRAP_SERVERS": "k:9092",
                "CONNECT_PROBE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            },
            "CONNECT_PROBE_KAFKA_SASL_MECHANISM",
        ),
        (
            {
                "CONNECT_PROBE_KAFKA_BOOTSTRAP_SERVERS": "k:9092",
                "CONNECT_PROBE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "CONNECT_PROBE_KAFKA_SASL_MECHANISM": "scram-sha-512",
                "CONNECT_PROBE_KAFKA_USERNAME": "probe",
            },
            "CONNECT_PROBE_KAFKA_PASSWORD_FILE",
        ),
        (
            {
                "CONNECT_PROBE_KAFKA_BOOTSTRAP_SERVERS": "k:9092",
                "CONNECT_PROBE_KAFKA_USERNAME": "probe",
            },
            "CONNECT_PROBE_KAFKA_SECURITY_PROTOCOL",
        ),
        (
            {
                "CONNECT_PROBE_KAFKA_BOOTSTRAP_SERVERS": "k:9092",
                "CONNECT_PROBE_KAFKA_CA_FILE": "/etc/hostname",
            },
            "CONNECT_PROBE_KAFKA_SECURITY_PROTOCOL",
        ),
    ],
)
def test_invalid_configuration_exits_2_naming_the_variable(
    env: dict[str, str],
    variable: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("connect-probe: invalid configuration: ")
    assert variable in err
    assert SECRET not in err


def test_flags_override_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONNECT_PROBE_SCOPE", "pod")
    assert main(["--scope", "cluster", "--timeout", "40"]) == 2
    err = capsys.readouterr().err
    assert "CONNECT_PROBE_MAX_AGE (30) must be greater than" in err
    assert "SCOPE" not in err.replace("TIMEOUT", "")


@pytest.mark.process
def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"connect-probe {__version__}"


@pytest.mark.process
def test_help_lists_every_setting_and_no_secret() -> None:
    result = run("--help", env={"CONNECT_PROBE_PASSWORD": SECRET, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0
    assert "--poll-interval" in result.stdout
    assert "CONNECT_PROBE_TRANSIENT_GRACE" in result.stdout
    assert SECRET not in result.stdout


@pytest.mark.process
def test_check_ready_and_live_exit_codes(tmp_path: Path) -> None:
    fake = FakeConnect()
    fake.add(status("orders-sink", tasks=[("RUNNING", THIS_WORKER)]))
    with serve_fake(fake) as url:
        env = {
            "CONNECT_PROBE_CONNECT_URL": url,
            "CONNECT_PROBE_WORKER_ID": THIS_WORKER,
            "PATH": "/usr/bin:/bin",
        }
        ready = run("check", "ready", env=env)
        assert ready.returncode == 0, ready.stderr
        assert json.loads(ready.stdout)["ok"] is True
        fake.set_task("orders-sink", 0, "FAILED")
        not_ready = run("check", "ready", env=env)
        assert not_ready.returncode == 1
        assert json.loads(not_ready.stdout)["reasons"][0]["state"] == "FAILED"
        assert run("check", "live", env=env).returncode == 0
    down = run(
        "check", "live", "--connect-url", "http://127.0.0.1:9", env={"PATH": "/usr/bin:/bin"}
    )
    assert down.returncode == 1
    assert json.loads(down.stdout)["reasons"][0]["code"] == "connect_unreachable"
    assert run("check", "ready", "--scope", "nope").returncode == 2
