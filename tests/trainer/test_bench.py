"""`bench/trainer.py` runs both configurations end to end (a small CPU smoke run, so it cannot rot)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import trainer


def test_the_trainer_bench_runs_both_configurations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert trainer.main(["--train", "32", "--eval", "8", "--json", str(tmp_path / "figures.json")]) == 0
    printed = capsys.readouterr().out
    assert "training samples/s: runtune / TRL recipe" in printed
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert set(figures["results"]) == {
        "TRL SFTTrainer, published recipe",
        "TRL SFTTrainer, Runtune's batch and loss",
        "runtune",
        "TRL recipe, answer-length generation",
    }
    for name in ("TRL SFTTrainer, published recipe", "TRL SFTTrainer, Runtune's batch and loss", "runtune"):
        result = figures["results"][name]
        assert result["train_samples"] == 32 and result["eval_samples"] == 8
        assert result["train_samples_per_s"] > 0 and result["peak_memory_gib"] > 0
    assert all(value > 0 for value in figures["ratios"].values())
