"""Shared fixtures: a clean environment for settings, asyncio for anyio tests."""

import os

import pytest


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: start every test from none of ours."""
    for name in list(os.environ):
        if name.startswith("CONNECT_PROBE_") or name == "POD_IP":
            monkeypatch.delenv(name)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
