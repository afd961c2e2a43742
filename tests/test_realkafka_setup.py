"""Without Java or Maven the real-Kafka tools fail with one line saying what to install."""

from pathlib import Path

import pytest

from tools.realconnect.artifacts import SetupError, require_java, require_maven


@pytest.mark.parametrize(
    ("check", "install"),
    [
        (require_java, "openjdk-17-jdk-headless"),
        (require_maven, "apt-get install maven"),
    ],
)
def test_a_missing_tool_is_one_line_saying_what_to_install(
    check: object, install: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    for home in ("JAVA_HOME", "MAVEN_HOME"):
        monkeypatch.delenv(home, raising=False)
    assert callable(check)
    with pytest.raises(SetupError) as raised:
        check()
    message = str(raised.value)
    assert install in message
    assert "\n" not in message
