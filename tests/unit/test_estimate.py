from types import SimpleNamespace
from typing import Any

import pytest

from runtune.estimate import (
    GPU_TABLE,
    ModelFigures,
    RunShape,
    estimate,
    gpu_prices,
    host_memory_gib,
    host_memory_phases,
    memory_gib,
)

GEMMA3_4B = ModelFigures(4_300_000_000, 2560, 34, 262_208, tokens_per_image=256, intermediate_size=10_240)
GEMMA3_27B = ModelFigures(27_400_000_000, 5376, 62, 262_208, tokens_per_image=256, intermediate_size=21_504)
PETS = RunShape(
    "qlora", examples=3680, mean_tokens=300, epochs=1, batch_size=1, gradient_accumulation_steps=16, max_length=512
)


def test_qlora_of_a_small_model_fits_the_l4() -> None:
    result = estimate(GEMMA3_4B, PETS)
    assert result.gpu == "nvidia-l4"
    assert result.steps == 230  # ceil(3680 / 16)
    assert result.tokens == 3680 * 300
    assert result.seconds and result.usd and result.usd > 0


def test_quantisation_and_method_change_memory_the_right_way() -> None:
    qlora = memory_gib(GEMMA3_27B, PETS)
    lora = memory_gib(GEMMA3_27B, RunShape(**{**PETS.__dict__, "method": "lora"}))
    full = memory_gib(GEMMA3_27B, RunShape(**{**PETS.__dict__, "method": "full"}))
    assert qlora < lora < full
    longer = memory_gib(GEMMA3_27B, RunShape(**{**PETS.__dict__, "max_length": 4096}))
    assert longer > qlora


def test_a_run_no_gpu_can_hold_is_refused_with_the_knobs_to_turn() -> None:
    result = estimate(GEMMA3_27B, RunShape("full", 1000, 500, 1, 8, 1, 4096))
    assert result.gpu is None and result.usd is None
    assert "Lower batch_size or max_length" in result.reason


def test_a_requested_gpu_is_honoured_or_refused() -> None:
    assert estimate(GEMMA3_4B, PETS, gpu="nvidia-rtx-pro-6000").gpu == "nvidia-rtx-pro-6000"
    big = RunShape("lora", 1000, 500, 1, 4, 1, 2048)
    assert estimate(GEMMA3_27B, big, gpu="nvidia-l4").gpu is None


def test_prices_can_be_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    before = estimate(GEMMA3_4B, PETS).usd
    monkeypatch.setenv("RUNTUNE_GPU_PRICES", '{"nvidia-l4": 0.01}')
    assert gpu_prices()["nvidia-l4"] == 0.01
    assert estimate(GEMMA3_4B, PETS).usd > before


GEMMA3_12B = ModelFigures(12_200_000_000, 3840, 48, 262_208, tokens_per_image=256, intermediate_size=15_360)
GEMMA4_31B = ModelFigures(30_700_000_000, 5376, 60, 262_144, tokens_per_image=280, intermediate_size=21_504)
L4, RTX = (next(g for g in GPU_TABLE if g.name == name) for name in ("nvidia-l4", "nvidia-rtx-pro-6000"))


def _shape(examples: int, **changes: object) -> RunShape:
    return RunShape(**{**PETS.__dict__, "examples": examples, "mean_tokens": 300 + 256, **changes})


def test_the_estimate_names_the_instance_and_its_host_memory() -> None:
    result = estimate(GEMMA3_4B, _shape(500))
    assert result.gpu == "nvidia-l4" and (result.instance_cpu, result.instance_memory_gib) == (8, 32)
    # The bf16 checkpoint on the memory filesystem (8 GiB) + the runtime + the loading shard + 500 images.
    assert 16 < result.host_memory_gib < result.instance_memory_gib and result.warnings == []
    assert set(result.as_dict()) >= {"host_memory_gib", "instance_cpu", "instance_memory_gib", "warnings", "gpu"}


def test_host_memory_grows_with_the_images_held_and_the_weights_downloaded() -> None:
    few, many = (host_memory_gib(GEMMA3_4B, _shape(n), L4) for n in (500, 3680))
    # Each example holds a 896x896 bfloat16 image (4.6 MiB) for the whole run.
    assert many - few == pytest.approx(3180 * (896 * 896 * 3 * 2 + 556 * 64) / 1024**3, abs=0.02)
    mounted = host_memory_gib(GEMMA3_4B, _shape(3680), L4, weights_on_mount=True)
    assert many - mounted == pytest.approx(4_300_000_000 * 2 / 1024**3, abs=0.02)
    text = host_memory_gib(
        ModelFigures(4_300_000_000, 2560, 34, 262_208, intermediate_size=10_240), _shape(3680, mean_tokens=300), L4
    )
    assert text < few


def test_a_merge_that_does_not_fit_the_gpu_is_counted_on_the_host() -> None:
    # 12B in bf16 (24 GB, x1.3) does not fit the L4 for the merge: the base is loaded in host memory.
    training, exporting = host_memory_phases(GEMMA3_12B, _shape(100), L4)
    assert exporting - training > 12_200_000_000 * 2 / 1024**3 * 0.8
    _, on_the_rtx = host_memory_phases(GEMMA3_12B, _shape(100), RTX)
    assert on_the_rtx < training
    assert max(host_memory_phases(GEMMA3_12B, _shape(100, export_merged=False), L4)) == training
    # Full fine-tuning writes the trained model from the GPU: no second copy of it.
    _, full = host_memory_phases(GEMMA3_4B, _shape(100, method="full", export_merged=False), L4)
    assert full < host_memory_phases(GEMMA3_4B, _shape(100), L4)[0]


def test_host_memory_beyond_the_instance_is_a_warning_with_the_knobs_to_turn() -> None:
    result = estimate(GEMMA3_12B, _shape(500), gpu="auto")
    assert result.gpu == "nvidia-l4" and result.usd is not None  # the GPU fits; the host may not
    (warning,) = result.warnings
    assert warning.startswith(f"needs about {result.host_memory_gib:.0f} GiB of host memory")
    assert "32 GiB" in warning and "export.merged=false" in warning and "use gpu 'nvidia-rtx-pro-6000'" in warning
    assert "models/" in warning
    big = estimate(GEMMA4_31B, _shape(3680, mean_tokens=300 + 280), gpu="nvidia-rtx-pro-6000")
    assert big.gpu == "nvidia-rtx-pro-6000" and big.host_memory_gib > 80
    (warning,) = big.warnings
    assert "fewer examples" in warning and "use gpu" not in warning and "export.merged" not in warning
    mounted = estimate(
        GEMMA4_31B, _shape(3680, mean_tokens=300 + 280), gpu="nvidia-rtx-pro-6000", weights_on_mount=True
    )
    assert mounted.warnings == [] and mounted.host_memory_gib < 80


def test_a_run_no_gpu_holds_has_no_instance() -> None:
    result = estimate(GEMMA3_27B, RunShape("full", 1000, 500, 1, 8, 1, 4096))
    assert result.host_memory_gib is None and result.instance_memory_gib is None and result.warnings == []


@pytest.mark.emulators
def test_the_estimate_endpoint_returns_the_host_memory_for_the_export_asked(emulators: Any) -> None:
    from runtune.adapters.firestore import FirestoreMetadataStore
    from services.training.jobs_service import JobService, SchedulingPolicy
    from services.training.models_api import EstimateRequest, estimate_run

    # With `examples`, the launcher is not used; the store is read for calibration (none here).
    store = FirestoreMetadataStore.for_project(emulators.project_id)
    jobs = JobService(store, None, SchedulingPolicy(2, 120, 900, 3600), profile="gcp")  # type: ignore[arg-type]

    def ask(**runtune: object) -> dict:
        request = EstimateRequest(model="google/gemma-3-12b-it", examples=500, runtune=runtune)
        answer = estimate_run(request, SimpleNamespace(uid="user-estimate"), jobs)  # type: ignore[arg-type]
        return answer.model_dump(mode="json")  # the JSON the endpoint answers

    merged, adapter_only = ask(), ask(export={"merged": False})
    assert merged["instance_memory_gib"] == adapter_only["instance_memory_gib"] == 32
    assert adapter_only["host_memory_gib"] < merged["host_memory_gib"]
    assert "export.merged=false" in merged["warnings"][0] and "export.merged" not in adapter_only["warnings"][0]


# -- duration and its range (docs/architecture.md "Estimates") ------------------------------------


def test_the_time_scales_with_tokens_and_steps_beyond_a_fixed_start() -> None:
    from dataclasses import replace

    short, long = estimate(GEMMA3_4B, PETS), estimate(GEMMA3_4B, replace(PETS, epochs=4))
    assert long.breakdown["train"] == pytest.approx(4 * short.breakdown["train"], rel=0.01)
    assert {k: v for k, v in long.breakdown.items() if k != "train"} == {
        k: v for k, v in short.breakdown.items() if k != "train"
    }
    images = estimate(GEMMA3_4B, replace(PETS, mean_tokens=300 + 256))  # an image's tokens count too
    assert images.breakdown["train"] > 1.5 * short.breakdown["train"]


def test_recompute_load_evaluation_and_merged_export_are_counted() -> None:
    from dataclasses import replace

    from runtune.estimate import flops_per_token

    assert flops_per_token(GEMMA3_27B, PETS) > flops_per_token(GEMMA3_27B, replace(PETS, gradient_checkpointing=False))
    big = estimate(GEMMA3_27B, PETS, gpu="nvidia-rtx-pro-6000")
    assert big.breakdown["load"] > 300  # 55 GB from the Hub
    assert big.breakdown["export"] > estimate(GEMMA3_27B, replace(PETS, export_merged=False)).breakdown["export"]
    assert estimate(GEMMA3_4B, replace(PETS, eval_examples=200)).breakdown["evaluate"] > 0
    assert estimate(GEMMA3_4B, replace(PETS, weights_from="bucket")).breakdown["load"] < short_load()


def short_load() -> int:
    return estimate(GEMMA3_4B, PETS).breakdown["load"]


def test_the_cost_is_the_job_shapes_price_times_the_time_and_a_range_with_its_basis() -> None:
    result = estimate(GEMMA3_4B, PETS)
    assert result.usd == pytest.approx(result.seconds * (0.0001867 + 8 * 0.000018 + 32 * 0.000002), abs=0.01)
    assert result.seconds_low < result.seconds < result.seconds_high
    assert result.usd_low <= result.usd <= result.usd_high
    assert result.basis == "from published throughput" and result.calibrated_runs == 0


def test_finished_runs_calibrate_the_estimate() -> None:
    from runtune.estimate import RunTiming

    shape = RunShape("qlora", 100, 300, 1, 4, 1, 512, eval_examples=10)
    runs = [RunTiming(30_000, 25, 10, 60.0, 100.0, 5.0, 20.0), RunTiming(30_000, 25, 10, 70.0, 120.0, 5.0, 20.0)]
    result = estimate(GEMMA3_4B, shape, calibration=runs)
    assert result.basis == "calibrated from 2 finished runs"
    pull = 60  # runtune/gpus.json timing.image_pull_s: before the measured setup
    assert result.seconds == round(pull + (60 + 100 + 5 + 20 + 70 + 120 + 5 + 20) / 2)
    assert result.seconds_low < pull + 185 and result.seconds_high > pull + 215
    assert estimate(GEMMA3_4B, shape, calibration=runs[:1]).basis == "from published throughput"


def test_the_local_cpu_costs_nothing_and_warns_about_real_models() -> None:
    result = estimate(GEMMA3_4B, PETS, where="local-cpu", model_name="google/gemma-3-4b-it")
    assert result.machine == "cpu" and result.usd == 0
    assert any("google/gemma-3-4b-it would take about" in w and "gcp profile" in w for w in result.warnings)
    tiny = ModelFigures(300_000, 64, 2, 1024, tokens_per_image=4, intermediate_size=128)
    quick = estimate(tiny, RunShape("qlora", 24, 40, 1, 4, 1, 64, weights_from="local"), where="local-cpu")
    assert quick.warnings == [] and quick.seconds < 60
