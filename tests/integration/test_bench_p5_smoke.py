"""Smoke test of the P5 queue-latency bench: ``--quick`` runs end to end and prints its lines
(figures are not checked: a loaded test machine says nothing about the target)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_p5_quick_prints_the_p5_lines(redis_url: str) -> None:
    env = {**os.environ, "COMMERCE_REDIS_URL": redis_url}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "p5_queue_latency.py"), "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    figures = r"p50=[\d.]+ p95=[\d.]+ p99=[\d.]+ max=[\d.]+ ms"
    for rate in ("5", "500"):
        for path in ("send", "enqueue_many"):
            assert re.search(
                rf"^P5 rate={rate}/s path={path} {figures} \(target p99 <= 50 ms\) (OK|MISSED)", out, re.M
            ), out
            assert re.search(rf"^baseline worker_timeout=1000 ms rate={rate}/s path={path} {figures}", out, re.M), out
    assert re.search(r"^P5: (OK|MISSED) ", out, re.M), out
    assert "LOST" not in out, out
    assert elapsed < 30, f"--quick took {elapsed:.1f} s"
