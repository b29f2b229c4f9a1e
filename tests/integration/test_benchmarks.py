"""The benchmarks still run: `python -m benchmarks.bench all --smoke` (tiny sizes, one run). Not a timed test:
it checks that every benchmark prints its figures and its baselines, not how fast they are."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import need
from tests.servers import have

ROOT = Path(__file__).resolve().parents[2]


def test_benchmarks_smoke() -> None:
    """Every benchmark runs end to end at smoke size and reports wgbot's figure beside both baselines."""
    need(have("smtp-sink") and have("smtp-source"), "smtp-sink and smtp-source (apt-get install postfix)")
    run = subprocess.run([sys.executable, "-m", "benchmarks.bench", "all", "--smoke"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    for name in ("fanout-personalized-100", "fanout-batched-100", "commands-50", "import-100", "digest-20x10",
                 "intake-lmtp-50-20-sessions", "intake-postfix-50", "startup-help", "web-directory", "web-month",
                 "web-search-500", "web-rss", "countries-"):
        assert name in out, f"{name} missing from:\n{out}"
    assert out.count("smtp-source→smtp-sink") >= 4 and out.count("smtplib→smtp-sink") >= 4
    assert out.count("static file of the same size") == 5 and "errors 0+0" in out
    after = re.search(r"countries-\d+: .* (\d+) MB after resolving", out)
    assert after is not None and int(after.group(1)) < 100, out
