"""`vidsearch demo` runs end to end: stack up, ingest, four query modalities, HTML page, clean stop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.local.processes import ROOT

# Starts whole process stacks: `make test-fast` leaves it out.
pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end_reuses_the_index_and_rebuilds_it_for_a_new_model(tmp_path: Path) -> None:
    from services.model.checkpoint import build_model, save_checkpoint
    from services.model.config import tiny

    checkpoint = save_checkpoint(build_model(tiny(temporal="seqTransf")), tmp_path / "model")
    demo = [sys.executable, "-m", "services.cli", "demo", "--data-dir", str(tmp_path / "demo"), "--web-port", "0",
            "--checkpoint"]
    cmd = [*demo, str(checkpoint)]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for heading in ("Korean: ", "English: ", "image: a frame of", "video: film_"):
        assert heading in first.stdout
    assert "ingested 12 of 12 videos" in first.stdout
    assert "web app: http://127.0.0.1:" in first.stdout
    page = (tmp_path / "demo" / "results.html").read_text()
    assert page.count("<figure>") == 20 and "data:image/jpeg;base64," in page
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "index already holds the 12 demo videos" in second.stdout
    # A new default model (here: another random one) cannot search the old model's embeddings:
    # the demo rebuilds its index instead of failing to ingest into shards bound to the old model.
    retrained = save_checkpoint(build_model(tiny(temporal="meanP")), tmp_path / "retrained")
    third = subprocess.run([*demo, str(retrained)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert "rebuilding the index" in third.stdout and "ingested 12 of 12 videos" in third.stdout
