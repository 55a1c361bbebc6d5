"""`bench/gpu.sh --smoke`: the GPU check's every path (the trainer bench's TRL rows, Runtune's row and
each speed switch's, label scoring against generation on the local engine, both label sets, every
scoring method) end to end on this CPU with the tiny model, so the script is known to work before
a GPU is lent. The smallest counts: the figures are not the point, their presence and shape are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.trainer import SWITCH_ROWS

ROOT = Path(__file__).resolve().parents[2]


def test_the_gpu_check_runs_end_to_end_in_its_cpu_smoke_mode(local_dir: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OUT": str(tmp_path),
        "PYTHON": sys.executable,
        "RUNTUNE_BENCH_MODELS": str(local_dir),  # the session's tiny models, not built again
    }
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu.sh"), "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "training samples/s: runtune / TRL recipe" in done.stdout
    assert f"bench/gpu.sh: figures in {tmp_path}" in done.stdout

    trainer = json.loads((tmp_path / "trainer.json").read_text())
    rows = trainer["results"]
    assert set(rows) == {
        "TRL SFTTrainer, published recipe",
        "TRL SFTTrainer, Runtune's batch and loss",
        "runtune",
        "TRL recipe, answer-length generation",
        *SWITCH_ROWS,
    }
    for name in ("TRL SFTTrainer, published recipe", "TRL SFTTrainer, Runtune's batch and loss", "runtune"):
        assert rows[name]["train_samples"] == 4 and rows[name]["eval_samples"] == 2
        assert rows[name]["train_samples_per_s"] > 0 and rows[name]["peak_memory_gib"] > 0
        assert rows[name]["eval_samples_per_s"] > 0
    for name in SWITCH_ROWS:  # each switch trained (no error), the GPU-only ones saying they fell back
        assert rows[name]["train_samples"] == 4 and rows[name]["train_samples_per_s"] > 0, rows[name]["notes"]
    assert rows["runtune + Liger kernels"]["notes"].startswith("warn: Liger kernels off: this machine has no GPU")
    assert rows["runtune + torch.compile"]["notes"].startswith("warn: torch.compile off")
    assert rows["runtune, bf16 LoRA + bf16 adapters"]["notes"].startswith("warn: bf16 adapters off")
    assert "padded tokens" in rows["runtune + token-budget batches"]["notes"]
    assert all(value > 0 for value in trainer["ratios"].values())

    evaluation = json.loads((tmp_path / "eval.json").read_text())
    assert [entry["model"] for entry in evaluation] == [
        "tiny-gemma-3-vision, demo set (4 labels)",
        "tiny-gemma-3-vision, 37 set (37 labels)",
    ]
    for entry in evaluation:
        assert {"label scoring (batched)", "label scoring (best_first)", "label scoring (prefix_search)",
                "per-sample generation", "batched generation", "label scoring"} <= set(entry)  # fmt: skip
        assert entry["label scoring"]["method"] in ("batched", "best_first", "prefix_search")
        assert entry["ratio"] > 0 and entry["vs_batched"] > 0
