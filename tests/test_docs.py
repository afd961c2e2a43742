"""The README stays true to the code."""

from pathlib import Path

from app.cli import env_name
from app.settings import Settings

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
