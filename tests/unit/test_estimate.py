import pytest

from runtune.estimate import ModelFigures, RunShape, estimate, gpu_prices, memory_gib

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
