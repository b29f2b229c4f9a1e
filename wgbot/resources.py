"""Where the bundled templates, rules, migrations and example configuration live.

From a wheel they are package data under wgbot/_data; from a source checkout they are the top-level folders.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The folder (or file) `name` among the bundled data: templates, rules, migrations, config.example.toml."""
    packaged = _PACKAGE / "_data" / name
    if packaged.exists():
        return packaged
    return _PACKAGE.parent / name
