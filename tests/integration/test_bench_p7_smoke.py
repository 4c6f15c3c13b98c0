"""Smoke test of the P7 bench: ``--quick`` runs end to end on a database of its own and
prints its lines, its checks passing (figures are not checked: a loaded test machine says
nothing about the target)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_p7_quick_prints_the_p7_line(postgres) -> None:
    env = {**os.environ, "COMMERCE_BOOTSTRAP_DATABASE_URL": postgres.admin_url()}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "p7_crm_upsert.py"), "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for phase in ("insert", "update"):
        assert re.search(rf"^round 1 {phase}: bare [\d.]+ s .* ours import .* ours batch API ", out, re.M), out
    assert re.search(r"^round 1 one row at a time .*: ours [\d.]+ s .* bare [\d.]+ s", out, re.M), out
    line = re.search(r"^P7: ratio_bare=[\d.]+ \(target ≥ 0\.80\) ratio_rows=[\d.]+ \(target ≥ 30\) .*$", out, re.M)
    assert line, out
    assert "CHECKS FAILED" not in line.group(0)
