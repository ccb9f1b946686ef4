"""`benchmarks/one_class.py --models default`: the image default, one class at a time, on any
labelled image set `fit` reads (here a tiny synthetic .npz)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "one_class.py"


def test_default_model_runs_on_an_npz_image_set_and_prints_one_table(image_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    argv = ["--models", "default", "--dataset", str(image_npz), "--device", "cpu", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "| model | 0 | 1 | 2 | mean | min | FPR@thr | train s/class | time |"
    (row,) = [line for line in lines if line.startswith("| default |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    aurocs = [float(c) for c in cells[1:4]]
    assert all(50.0 < a <= 100.0 for a in aurocs)  # three easy classes: better than chance
    assert abs(float(cells[4].strip("*")) - sum(aurocs) / 3) < 0.06  # the mean of the rounded cells
    assert float(cells[5]) == min(aurocs)
    assert 0.0 <= float(cells[6]) <= 1.0 and float(cells[7]) > 0.0
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["classes"] == [0, 1, 2]
    result = saved["results"]["default"]
    assert result["config"]["preset"] == "one-class-images" and len(result["train_seconds"]) == 3


def test_unlabelled_set_is_refused_with_one_usage_line(tmp_path: Path) -> None:
    import numpy as np

    path = tmp_path / "plain.npz"
    np.savez(path, x_train=np.zeros((10, 4, 4), dtype=np.uint8))
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--models", "default", "--dataset", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 2
    assert "plain.npz: no labels" in done.stderr
