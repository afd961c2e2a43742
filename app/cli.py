"""``connect-probe``: serve (default), ``check ready|live`` for one-shot use, ``--version``.

Every setting is a flag (``--poll-interval 2``) as well as an environment variable
(``CONNECT_PROBE_POLL_INTERVAL=2``); flags win. Bad configuration exits with status 2 and one line
naming the variable, before anything is served.
"""

import argparse
import asyncio
import ssl
import sys
from collections.abc import Sequence
from typing import Any

import msgspec
from pydantic import ValidationError
from pydantic_settings import SettingsError

from app import __version__
from app.clock import SystemClock
from app.connect.client import ConnectClient, build_http_client
from app.core import build_core
from app.logs import configure_logging
from app.main import create_app, resolve_identity
from app.settings import ENV_PREFIX, Settings

EXIT_OK, EXIT_UNHEALTHY, EXIT_CONFIG = 0, 1, 2
# Secrets have no flag: a command line is visible to every user of the machine (ps).
ENV_ONLY = frozenset({"password"})
PROG = "connect-probe"


class ConfigError(Exception):
    """A one-line, user-facing configuration problem."""


def env_name(field: str) -> str:
    """The environment variable of a settings field."""
    if field == "pod_ip":
        return "POD_IP"
    return ENV_PREFIX + field.upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _settings_flags() -> argparse.ArgumentParser:
    """A parent parser with one flag per settings field; unset flags stay out of the namespace."""
    parent = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    group = parent.add_argument_group("settings (each also an environment variable)")
    for name, field in Settings.model_fields.items():
        if name in ENV_ONLY:
            continue
        default = field.default
        shown = "" if default in (None, (), "") or name == "password" else f", default {default}"
        if isinstance(default, tuple):
            shown = f", default {','.join(default)}" if default else ""
        group.add_argument(
            flag_name(name),
            dest=name,
            metavar="VALUE",
            default=argparse.SUPPRESS,
            help=f"{field.description} (env {env_name(name)}{shown})".replace("%", "%%"),
        )
    return parent


def build_parser() -> argparse.ArgumentParser:
    flags = _settings_flags()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Kubernetes readiness/liveness probes for a Kafka Connect worker.",
        parents=[flags],
        # No prefix matching: "--password X" must not quietly become "--password-file X".
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "serve", parents=[flags], help="serve the probes (the default)", allow_abbrev=False
    )
    check = commands.add_parser(
        "check",
        parents=[flags],
        help="poll once, print the verdict as JSON, exit 0 (ok), 1 (not ok) or 2 (bad config)",
        allow_abbrev=False,
    )
    check.add_argument("probe", choices=("ready", "live"))
    return parser


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        message = item["msg"].removeprefix("Value error, ")
        location = item["loc"]
        if location and isinstance(location[0], str):
            problems.append(f"{env_name(location[0])}: {message}")
        else:
            problems.append(message)
    return "; ".join(problems)


def load_settings(overrides: dict[str, Any]) -> Settings:
    """Environment + flags, validated; raises ``ConfigError`` with a one-line message."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except SettingsError as exc:
        raise ConfigError(str(exc).split("\n", 1)[0]) from None
    if settings.connect_url.startswith("https"):
        try:
            build_http_client(settings)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(
                f"{env_name('ca_file')}/{env_name('cert_file')}/{env_name('key_file')}: "
                f"cannot load TLS material: {exc}"
            ) from None
    return settings


async def check_once(settings: Settings, probe: str) -> tuple[bool, bytes]:
    """One poll and one verdict. With no history, grace periods that need time are not waited."""
    oneshot = settings.model_copy(update={"startup_grace": 0.0, "live_grace": 0.0})
    identity = await resolve_identity(oneshot)
    async with build_http_client(oneshot) as http:
        core = build_core(oneshot, ConnectClient(http, oneshot), identity, SystemClock())
        await core.poller.poll_once()
        answer = core.answers.answer(probe)
    return answer.verdict.ok, answer.body


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if any(arg == "--password" or arg.startswith("--password=") for arg in given):
        # Refused before argparse, whose error would echo the value.
        sys.stderr.write(
            f"{PROG}: --password is not accepted (a command line is visible to anyone running "
            f"ps): set {env_name('password')} or {env_name('password_file')}\n"
        )
        return EXIT_CONFIG
    args = vars(build_parser().parse_args(given))
    command = args.pop("command", None) or "serve"
    probe = args.pop("probe", None)
    try:
        settings = load_settings(args)
    except ConfigError as exc:
        sys.stderr.write(f"{PROG}: invalid configuration: {exc}\n")
        return EXIT_CONFIG
    if command == "check":
        configure_logging("ERROR", settings.log_format, "ext://sys.stderr")
        ok, body = asyncio.run(check_once(settings, str(probe)))
        sys.stdout.write(msgspec.json.format(body.decode(), indent=2) + "\n")
        return EXIT_OK if ok else EXIT_UNHEALTHY
    configure_logging(settings.log_level, settings.log_format)
    from app.serving.server import serve

    serve(create_app(settings), settings)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
