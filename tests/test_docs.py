"""The README stays true to the code."""

import re
from pathlib import Path

from app.cli import env_name
from app.settings import Settings
from app.wire import ReasonCode

README = Path(__file__).parent.parent / "README.md"


def test_readme_lists_every_setting() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [
        env_name(field) for field in Settings.model_fields if f"`{env_name(field)}`" not in text
    ]
    assert missing == []


def test_readme_quick_start_names_the_make_targets() -> None:
    text = README.read_text(encoding="utf-8")
    makefile = (README.parent / "Makefile").read_text(encoding="utf-8")
    for target in ("run", "test"):
        assert f"make {target}" in text
        assert f"\n{target}:" in makefile


def test_readme_reason_code_table_is_the_reason_code_enum() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("**Reason codes.**", 1)[1].split("\n\n", 2)[1]
    documented = re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE)
    assert documented == [code.value for code in ReasonCode]
