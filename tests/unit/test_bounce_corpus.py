"""The bounce corpus (tests/data/bounces, real vendors' formats, see its README): each report is read as what it
is, for the member it is about; none crashes; the figures are printed (`python -m benchmarks.bounces`)."""

from __future__ import annotations

import pytest

from benchmarks.bounces import CORPUS, Sample, figures, samples
from wgbot import dsn

SAMPLES = samples()


def test_every_corpus_file_has_an_expectation() -> None:
    """No file in the corpus goes untested, and the corpus covers every outcome."""
    assert len(SAMPLES) >= 10
    assert all(s.kind in dsn.KINDS for s in SAMPLES), [s.path.name for s in SAMPLES if s.kind not in dsn.KINDS]
    assert {s.kind for s in SAMPLES} >= {dsn.PERMANENT, dsn.TEMPORARY, dsn.OURS, dsn.AUTO_REPLY, dsn.FEEDBACK}


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.path.name for s in SAMPLES])
def test_report_is_read_as_what_it_is(sample: Sample) -> None:
    """The report's outcome is the expected one, and a failure names the member it is about."""
    report = dsn.read(sample.path.read_bytes(), sample.recipient)
    assert report.kind == sample.kind, report.reason
    assert not report.reason.startswith("unreadable")
    if sample.kind in (dsn.PERMANENT, dsn.TEMPORARY, dsn.OURS) and report.recipients:
        assert sample.recipient in report.recipients, report.recipients


def test_corpus_figures(capsys: pytest.CaptureFixture[str]) -> None:
    """At least 95% of the permanent failures score, no auto-reply or feedback report does (the issue's bar)."""
    result = figures(CORPUS)
    with capsys.disabled():
        print(f"\nbounce corpus: {result}")
    assert result["permanent_scored"] >= 0.95 * int(result["permanent"])  # type: ignore[call-overload]
    assert not result["wrong"], result["wrong"]
    assert result["unreadable"] == 0
