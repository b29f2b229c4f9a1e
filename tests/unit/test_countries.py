"""Country names: the shipped table of endonyms matches Babel's CLDR data, and resolving names in every
language keeps memory flat (issue 15: one `Country: Österreich` used to add 90 MB for good)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from scripts.country_names import build
from wgbot.countries import TABLE, normalise_country


def test_table_matches_babel() -> None:
    """wgbot/country_names.json is what scripts/country_names.py builds from the installed Babel today."""
    assert json.loads(TABLE.read_text(encoding="utf-8")) == build()


@pytest.mark.parametrize(("name", "code"), [
    ("Österreich", "AT"), ("Deutschland", "DE"), ("Italia", "IT"), ("Polska", "PL"), ("Suomi", "FI"),
    ("España", "ES"), ("Magyarország", "HU"), ("Ελλάδα", "GR"), ("България", "BG"), ("ශ්‍රී ලංකාව", "LK"),
    ("ශරී ලංකාව", "LK"), ("Italy", "IT"), ("ITA", "IT"), ("uk", "GB"),
])
def test_names_in_their_own_languages(name: str, code: str) -> None:
    """Names in the country's own language and script resolve, with or without an invisible joiner."""
    assert normalise_country(name) == code


def test_resolving_every_name_keeps_memory_flat() -> None:
    """A fresh process resolving every name of the table grows by less than 10 MB and never loads Babel."""
    script = """
import sys
from wgbot.countries import _endonyms, normalise_country
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024
normalise_country("Italy")
before = rss()
assert all(normalise_country(name) for name in list(_endonyms()))
print(rss() - before, "babel" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    grown, babel = out.stdout.split()
    assert int(grown) < 10 and babel == "False", out.stdout
