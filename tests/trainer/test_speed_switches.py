"""The trainer's speed switches (`runtune.speed` job options, resolved into the plan): batches by
token budget cover every example once an epoch within the budget; `method: auto` is bf16 LoRA where
it fits the GPU QLoRA would get and QLoRA otherwise, a named method kept; the GPU-only switches say
on this CPU that they fall back, and leave the model as it was."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from runtune.errors import InvalidRequest
from runtune.jobs import plan
from runtune.jobs.hyperparameters import SequenceLengths
from runtune.models import registry
from runtune.models.loading import resolve_weights
from runtune.schemas.jobs import Hyperparameters, RuntuneOptions, TrainConfig
from runtune.training import model as setup
from runtune.training.data import token_batches

GPUS = ["nvidia-l4", "nvidia-rtx-pro-6000"]


@pytest.mark.parametrize("budget", [64, 256, 1000])
def test_token_budget_batches_cover_every_example_once_and_stay_within_the_budget(budget: int) -> None:
    lengths = [(i * 37) % 181 + 5 for i in range(301)] + [300]  # one example over the smallest budget
    for epoch in range(3):
        batches = token_batches(lengths, budget, 16, seed=4, epoch=epoch)
        assert batches == token_batches(lengths, budget, 16, seed=4, epoch=epoch)  # a resume redraws them
        assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
        for batch in batches:
            padded = math.ceil(max(lengths[i] for i in batch) / 8) * 8 * len(batch)
            assert len(batch) <= 16
            assert padded <= budget or len(batch) == 1  # only an example over the budget alone exceeds it
        if budget == 1000:  # short examples share a batch up to the row cap, long ones fewer a batch
            sizes = {len(b) for b in batches}
            assert 16 in sizes and min(sizes) < 16
    assert token_batches(lengths, 256, 16, seed=4, epoch=0) != token_batches(lengths, 256, 16, seed=4, epoch=1)


def test_auto_method_is_bf16_lora_where_it_fits_the_gpu_and_a_named_method_is_kept() -> None:
    def method(model_id: str, gpu: str, given: str = "auto") -> str:
        spec = registry.get(model_id)
        options = RuntuneOptions(gpu=gpu, method=given)
        hyper = Hyperparameters(batch_size="auto")
        resolved, why = plan.resolve_method(spec, hyper, options, 1000, SequenceLengths.typical(spec), GPUS)
        assert (why is None) == (given != "auto")
        return resolved.method

    assert method("google/gemma-3-4b-it", "nvidia-l4") == "lora"  # bf16 LoRA fits the L4
    assert method("google/gemma-3-12b-it", "nvidia-l4") == "qlora"  # it does not: QLoRA
    assert method("google/gemma-3-12b-it", "nvidia-rtx-pro-6000") == "lora"
    assert method("google/gemma-3-4b-it", "nvidia-l4", "qlora") == "qlora"  # chosen: kept


def test_the_plan_carries_the_switches_and_refuses_a_budget_under_one_sequence() -> None:
    from runtune.schemas import Dataset, TaskKind
    from runtune.schemas.jobs import Job

    training = Dataset(id="ds-1", owner="u", name="t.jsonl", task_kind=TaskKind.generation, splits={"train": 40})
    speed = {"liger_kernels": True, "batch_tokens": 2048, "bf16_adapters": True, "torch_compile": True}
    job = Job(
        id="ftjob-1",
        owner="u",
        model="google/gemma-3-4b-it",
        training_file="ds-1",
        options=RuntuneOptions.model_validate({"speed": speed, "max_length": 1024}),
    )
    planned = plan.plan_job(job, training, offered=GPUS)
    assert planned.plan.method == "lora" and "bf16 LoRA" in planned.auto["method"]
    assert (planned.plan.liger_kernels, planned.plan.batch_tokens) == (True, 2048)
    assert planned.plan.bf16_adapters and planned.plan.torch_compile
    small = job.model_copy(update={"options": RuntuneOptions.model_validate({"speed": {"batch_tokens": 512}})})
    with pytest.raises(InvalidRequest) as refused:
        plan.plan_job(small, training, offered=GPUS)
    assert refused.value.param == "method.supervised.runtune.speed.batch_tokens"


def test_gpu_only_switches_fall_back_on_the_cpu_with_an_event_each(local_dir: Path) -> None:
    spec = registry.get("tiny-gemma-3-text")
    config = TrainConfig(
        job_id="j",
        owner="u",
        model=spec.id,
        dataset_id="d",
        method="lora",
        liger_kernels=True,
        bf16_adapters=True,
        torch_compile=True,
    )
    model = setup.prepare(setup.load_base(spec, resolve_weights(spec, local_dir), "lora"), config)
    norm = type(model.get_base_model().model.norm)
    events = setup.speed_switches(model, config)
    assert [level for level, _ in events] == ["warn", "warn", "warn"]
    liger, bf16, compiled = (text for _, text in events)
    assert liger.startswith("Liger kernels off: this machine has no GPU")
    assert bf16.startswith("bf16 adapters off") and compiled.startswith("torch.compile off")
    assert type(model.get_base_model().model.norm) is norm  # not patched
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    assert setup.decoder_layers(model.get_base_model())  # what compile wraps on a GPU
