"""`bench/gpu.sh --smoke`: the GPU benchmark's every path (TRL's SFTTrainer as the recipe runs it, TRL at
Runtune's configuration, Runtune; label scoring by every exact method against generation, on the demo
and the 37-label sets) end to end on the CPU with the tiny model, so the script is known to run before
a GPU is lent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_bench_runs_end_to_end_in_smoke_mode(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    done = subprocess.run(
        [str(ROOT / "bench" / "gpu.sh"), "--smoke"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    trainer = json.loads((tmp_path / "trainer.json").read_text())
    rows = trainer["results"]
    assert set(rows) == {
        "TRL SFTTrainer, published recipe",
        "TRL SFTTrainer, Runtune's batch and loss",
        "runtune",
        "TRL recipe, answer-length generation",
    }
    for name in ("TRL SFTTrainer, published recipe", "TRL SFTTrainer, Runtune's batch and loss", "runtune"):
        assert rows[name]["train_samples"] > 0 and rows[name]["train_samples_per_s"] > 0, name
        assert rows[name]["peak_memory_gib"] > 0 and rows[name]["eval_samples"] > 0, name
    assert trainer["ratios"]["train_samples_per_s"] > 0
    evaluation = json.loads((tmp_path / "eval.json").read_text())
    assert [row["model"] for row in evaluation] == [
        "tiny-gemma-3-vision, demo set (4 labels)",
        "tiny-gemma-3-vision, 37 set (37 labels)",
    ]
    for row in evaluation:
        assert {"label scoring (batched)", "label scoring (prefix_search)", "per-sample generation"} <= set(row)
        # Every method is exact: the same accuracy, whatever their speed.
        assert row["label scoring (batched)"]["accuracy"] == row["label scoring (prefix_search)"]["accuracy"]
        assert row["label scoring"]["method"] in ("batched", "prefix_search")
