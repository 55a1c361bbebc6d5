"""The GPU table (runtune/gpus.json): what the estimate loads from it, and choosing among offered GPUs."""

from __future__ import annotations

import json
import tomllib
from importlib import resources

import pytest

from runtune.estimate import GPU_NAMES, GPU_TABLE, ModelFigures, RunShape, estimate, load_gpu_table
from runtune.schemas.jobs import RuntuneOptions
from runtune.settings import REPO_ROOT

GEMMA3_4B = ModelFigures(4_300_000_000, 2560, 34, 262_208, tokens_per_image=256, intermediate_size=10_240)
GEMMA3_27B = ModelFigures(27_400_000_000, 5376, 62, 262_208, tokens_per_image=256, intermediate_size=21_504)
# QLoRA of a 27B model: about 29 GiB, more than an L4 holds, well within an RTX PRO 6000.
SHAPE = RunShape(
    "qlora", examples=40, mean_tokens=352, epochs=3, batch_size=4, gradient_accumulation_steps=1, max_length=1024
)
# Cloud Run's minimum CPU and memory per instance with one GPU of each type (cloud.google.com/run/docs).
CLOUD_RUN_MINIMUMS = {"nvidia-l4": (4, 16), "nvidia-rtx-pro-6000": (20, 80)}


def _table() -> dict:
    return json.loads(resources.files("runtune").joinpath("gpus.json").read_text())


def test_the_table_is_the_json_file_with_cloud_runs_minimums() -> None:
    assert GPU_NAMES == ("nvidia-l4", "nvidia-rtx-pro-6000")
    for gpu in GPU_TABLE:
        assert (gpu.min_cpu, gpu.min_memory_gib) == CLOUD_RUN_MINIMUMS[gpu.name]
        assert gpu.cloud_run_cpu >= gpu.min_cpu and gpu.cloud_run_memory_gib >= gpu.min_memory_gib
    l4 = GPU_TABLE[0]
    assert (l4.memory_gib, l4.cloud_run_cpu, l4.cloud_run_memory_gib) == (24, 8, 32)


def test_the_price_is_what_the_job_is_billed_gpu_cpu_and_memory() -> None:
    table = _table()
    prices = table["prices"]
    assert prices["source"] and prices["read_on"]
    for row, gpu in zip(table["gpus"], GPU_TABLE, strict=True):
        expected = (
            row["gpu_usd_per_second"]
            + row["cloud_run_cpu"] * prices["usd_per_vcpu_second"]
            + row["cloud_run_memory_gib"] * prices["usd_per_gib_second"]
        )
        assert gpu.usd_per_second == pytest.approx(expected)
    assert GPU_TABLE[0].usd_per_second == pytest.approx(0.0001867 + 8 * 0.000018 + 32 * 0.000002)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cloud_run_cpu": 2}, "below Cloud Run's minimum"),
        ({"cloud_run_memory_gib": 8}, "below Cloud Run's minimum"),
        ({"name": "nvidia-rtx-pro-6000"}, "unique"),
    ],
)
def test_a_table_with_a_job_shape_cloud_run_refuses_does_not_load(change: dict, message: str) -> None:
    table = _table()
    table["gpus"][0] |= change
    with pytest.raises(ValueError, match=message):
        load_gpu_table(json.dumps(table))


def test_the_table_ships_with_the_package() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert "gpus.json" in pyproject["tool"]["setuptools"]["package-data"]["runtune"]


def test_the_request_schema_offers_the_tables_gpus() -> None:
    schema = RuntuneOptions.model_json_schema()["properties"]["gpu"]
    assert schema["enum"] == ["auto", *GPU_NAMES]


def test_auto_picks_the_smallest_fitting_gpu_among_those_offered() -> None:
    assert estimate(GEMMA3_4B, SHAPE).gpu == "nvidia-l4"
    assert estimate(GEMMA3_27B, SHAPE).gpu == "nvidia-rtx-pro-6000"
    # A deployment without L4 jobs runs even small models on what it has.
    assert estimate(GEMMA3_4B, SHAPE, offered=["nvidia-rtx-pro-6000"]).gpu == "nvidia-rtx-pro-6000"


def test_nothing_offered_fits_names_the_largest_offered_gpu() -> None:
    result = estimate(GEMMA3_27B, SHAPE, offered=["nvidia-l4"])
    assert result.gpu is None and result.usd is None
    assert "NVIDIA L4" in result.reason and "RTX" not in result.reason


def test_a_gpu_not_offered_is_a_callers_error() -> None:
    with pytest.raises(ValueError, match="nvidia-rtx-pro-6000"):
        estimate(GEMMA3_27B, SHAPE, gpu="nvidia-rtx-pro-6000", offered=["nvidia-l4"])
