"""The bounce corpus figures: every report in a directory read as wgbot reads it (wgbot.dsn), with how many
permanent failures score and why the others are ignored. Run `python -m benchmarks.bounces [DIR]`; DIR defaults
to tests/data/bounces, whose expected.csv says what each file is (a directory without one is only counted)."""

from __future__ import annotations

import csv
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from wgbot import dsn

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "bounces"


@dataclass(frozen=True)
class Sample:
    path: Path
    kind: str          # expected: one of dsn.KINDS ("" when unknown)
    recipient: str     # the member the report is about (its VERP address names it)


def samples(directory: Path = CORPUS) -> list[Sample]:
    """The corpus files, with their expectations when expected.csv has them."""
    expected: dict[str, tuple[str, str]] = {}
    index = directory / "expected.csv"
    if index.exists():
        with index.open(newline="") as f:
            expected = {row["file"]: (row["kind"], row["recipient"]) for row in csv.DictReader(f)}
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in (".eml", ".msg", ".txt", ""))
    return [Sample(p, *expected.get(p.name, ("", ""))) for p in files if p.name != "expected.csv"]


def figures(directory: Path = CORPUS) -> dict[str, object]:
    """Counts by outcome; `wrong` lists (file, expected, got, reason) where an expectation was not met."""
    got: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    wrong: list[tuple[str, str, str, str]] = []
    permanent = scored = unreadable = 0
    started = time.monotonic()
    items = samples(directory)
    for sample in items:
        report = dsn.read(sample.path.read_bytes(), sample.recipient)
        got[report.kind] += 1
        unreadable += report.reason.startswith("unreadable")      # dsn.read caught an exception
        if report.kind != dsn.PERMANENT:
            reasons[f"{report.kind}: {report.reason.split(' (')[0]}"] += 1
        if sample.kind == dsn.PERMANENT:
            permanent += 1
            scored += report.kind == dsn.PERMANENT
        if sample.kind and sample.kind != report.kind:
            wrong.append((sample.path.name, sample.kind, report.kind, report.reason))
    return {"files": len(items), "by_kind": dict(got), "ignored_because": dict(reasons), "permanent": permanent,
            "permanent_scored": scored, "unreadable": unreadable, "wrong": wrong, "seconds": time.monotonic() - started}


def main(argv: list[str]) -> int:
    directory = Path(argv[0]) if argv else CORPUS
    result = figures(directory)
    print(f"{result['files']} reports in {directory} read in {result['seconds']:.2f} s; "
          f"{result['unreadable']} could not be read (a parser exception, caught)")
    print(f"permanent failures that score: {result['permanent_scored']} of {result['permanent']} expected")
    for kind, count in sorted(result["by_kind"].items()):  # type: ignore[attr-defined]
        print(f"  {kind:12} {count}")
    print("ignored, and why:")
    for reason, count in sorted(result["ignored_because"].items(), key=lambda kv: -kv[1]):  # type: ignore[attr-defined]
        print(f"  {count:4}  {reason}")
    for name, expected, got, reason in result["wrong"]:  # type: ignore[attr-defined]
        print(f"  MISREAD {name}: expected {expected}, read {got} ({reason})")
    return 1 if result["wrong"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
