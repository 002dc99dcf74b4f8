"""Fault suite, kill -9: an ingest killed outright (driver and JVM, SIGKILL to the process group) at
a random stage leaves the previous dataset byte for byte as it was, and a re-run succeeds.

The stage is drawn at random (the draw is in the assertion messages); the kill lands the moment
the job logs ``stage NAME: start``.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
from pathlib import Path

import pytest

from batchml.config import build_config
from batchml.ingest import ingest
from batchml.synth.movielens import write_movielens_dump
from test_user_errors import ROOT, _env, job

pytestmark = [pytest.mark.fault, pytest.mark.slow]

EARLY = ("parse ratings files", "item metadata", "de-duplicate and index ids")
LATE = ("write ratings", "write rejects", "statistics")


def _snapshot(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _kill_at_stage(argv: list[str], stage: str) -> str:
    """Run ``argv`` in its own process group; SIGKILL the group when ``stage`` starts.  Returns the
    log read until then."""
    proc = subprocess.Popen(argv, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if f"stage {stage}: start" in line:
                os.killpg(proc.pid, signal.SIGKILL)
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the job ended before stage {stage!r}:\n{''.join(seen)[-2000:]}"
    return "".join(seen)


@pytest.mark.parametrize("stages", [EARLY, LATE], ids=["early", "late"])
def test_kill_9_keeps_the_previous_output_and_a_rerun_succeeds(spark, tmp_path, stages):
    stage = random.choice(stages)
    cfg = build_config({})
    old = write_movielens_dump(tmp_path / "old", 400, seed=1)
    new = write_movielens_dump(tmp_path / "new", 600, seed=2)
    out = tmp_path / "ds"
    ingest(spark, cfg, "movielens", str(old.path), str(out))
    before = _snapshot(out)

    _kill_at_stage(job("ingest", "--format", "movielens", "--input", str(new.path), "--output", str(out)), stage)
    assert _snapshot(out) == before, f"killed at stage {stage!r}"

    result = ingest(spark, cfg, "movielens", str(new.path), str(out))
    assert result.stats["ratings"] == 600, f"killed at stage {stage!r}"
    assert _snapshot(out) != before
