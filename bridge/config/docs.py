"""``.env.example`` and the README's settings table, written from ``config.TABLE``.

Both are generated (``scripts/settings-docs``) and a test checks that the
committed files match, so the documentation cannot drift from the code.
"""

from __future__ import annotations

import textwrap

from .table import SECTIONS, TABLE, Setting

ENV_EXAMPLE_HEAD = """\
# Settings for `gemini-phone-bridge serve` (and `check`, `dev-phone`). Copy this file to
# .env in the working directory, or set them in the environment (the environment wins).
# Every bad setting stops start-up with one line naming it.
# Generated from bridge/config/table.py by scripts/settings-docs: edit the table there.
"""
README_START = (
    "<!-- settings table: generated from bridge/config/table.py by scripts/settings-docs -->"
)
README_END = "<!-- end of the settings table -->"


def _env_value(setting: Setting) -> str:
    if setting.example is not None:
        return setting.example
    if setting.required or setting.shown:
        return ""
    return setting.default_text()


def env_example() -> str:
    parts = [ENV_EXAMPLE_HEAD]
    for section in SECTIONS:
        parts.append(f"\n# --- {section} " + "-" * (84 - len(section)) + "\n")
        for setting in (s for s in TABLE if s.section == section):
            comment = textwrap.wrap(setting.help, 86, break_on_hyphens=False)
            parts.append("\n" + "".join(f"# {line}\n" for line in comment))
            line = f"{setting.name}={_env_value(setting)}"
            parts.append(f"# {line}\n" if setting.commented else f"{line}\n")
    return "".join(parts)


def _default_cell(setting: Setting) -> str:
    if setting.required:
        return "required"
    if setting.shown:
        return setting.shown
    text = setting.default_text()
    return f"`{text}`" if text else "—"


def readme_table() -> str:
    rows = ["| Setting | Default | Meaning |", "| --- | --- | --- |"]
    for setting in TABLE:
        meaning = setting.help.replace("<", "&lt;").replace("|", "\\|")
        rows.append(f"| `{setting.name}` | {_default_cell(setting)} | {meaning} |")
    return "\n".join(rows)


def with_readme_table(readme: str) -> str:
    """``readme`` with the text between the two markers replaced by the current table."""
    head, start, rest = readme.partition(README_START)
    _, end, tail = rest.partition(README_END)
    if not start or not end:
        raise ValueError("README.md has lost the settings table's markers")
    return f"{head}{start}\n{readme_table()}\n{end}{tail}"
