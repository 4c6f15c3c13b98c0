"""Smoke test of the P6 receipt-render bench: a short run ends and prints its lines
(figures are not checked: a loaded test machine says nothing about the target)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_p6_prints_its_lines() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "p6_receipt_render.py"), "--rounds", "2", "--seconds", "0.2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(re.findall(r"^   round \d: ours [\d,]+ msg/s, bare [\d,]+ msg/s per CPU second", done.stdout, re.M)) == 2
    assert re.search(r"^P6: ratio=\d\.\d{3} \(target ≥ 0\.13\); ours=[\d,]+ messages/s per core", done.stdout, re.M)
