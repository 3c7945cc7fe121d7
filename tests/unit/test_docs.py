from pathlib import Path

from serve_app.settings.reference import markdown_table

ROOT = Path(__file__).resolve().parents[2]


def test_settings_reference_is_current():
    assert markdown_table() in (ROOT / "docs/settings.md").read_text(), \
        "docs/settings.md is stale: regenerate its table with `python -m serve_app.settings --write docs/settings.md`"


def test_readme_gives_exactly_the_two_setup_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci/run").read_text()
