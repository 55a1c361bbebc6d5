"""The job plan (runtune/jobs/plan.py): computed once from the job and its ready dataset, with the
`auto` rules, the learning rate and the GPU; every rule the trainer used to check again refused here
with the field named; stored on the job but not shown; read verbatim by the trainer's config."""

from __future__ import annotations

import subprocess
import sys

import pytest

from runtune.errors import InvalidRequest
from runtune.estimate import GPU_NAMES
from runtune.jobs import plan
from runtune.jobs.hyperparameters import SequenceLengths, resolve
from runtune.models.registry import get
from runtune.schemas import Dataset, DatasetStatus, Job, TaskKind
from runtune.schemas.jobs import Hyperparameters, RuntuneOptions, TrainConfig
from runtune.training.config import ConfigError, read

GEMMA4_E4B = "google/gemma-4-E4B-it"


def _dataset(**fields: object) -> Dataset:
    values = {"id": "ds-1", "owner": "u", "name": "set", "status": DatasetStatus.ready, "splits": {"train": 500}}
    return Dataset.model_validate(values | fields)


def _job(model: str = GEMMA4_E4B, **options: object) -> Job:
    return Job(id="ftjob-1", owner="u", model=model, training_file="ds-1", options=RuntuneOptions(**options))


def test_the_plan_holds_the_auto_rules_numbers_the_learning_rate_and_the_gpu() -> None:
    dataset = _dataset(task_kind=TaskKind.classification, labels=["a", "b"])
    planned = plan.plan_job(_job(method="lora"), dataset, offered=GPU_NAMES)
    spec = get(GEMMA4_E4B)
    expected = resolve(
        Hyperparameters(),
        model=spec,
        examples=500,
        options=RuntuneOptions(method="lora"),
        lengths=SequenceLengths.of_stats(None, spec),
        offered=GPU_NAMES,
    )
    config = planned.plan
    assert config.hyperparameters() == expected.hyperparameters and planned.auto == expected.auto
    # Gemma 4's family multiplier (0.5), not the 1.0 the trainer used to fall back to for `auto`.
    assert config.learning_rate_multiplier == 0.5
    assert config.learning_rate == pytest.approx(plan.BASE_LEARNING_RATE["lora"] * 0.5)
    assert config.gpu == planned.estimate.gpu == "nvidia-l4"
    assert config.task_kind is TaskKind.classification and config.labels == ["a", "b"] and config.method == "lora"


def test_the_tiny_models_scale_applies_on_top_of_a_given_multiplier() -> None:
    job = _job("tiny-gemma-3-text").model_copy(
        update={"hyperparameters": Hyperparameters(n_epochs=2, batch_size=4, learning_rate_multiplier=0.5)}
    )
    planned = plan.plan_job(job, _dataset(modality="text"), offered=GPU_NAMES)
    assert (planned.plan.epochs, planned.plan.batch_size, set(planned.auto) - {"method"}) == (2, 4, set())
    assert planned.plan.learning_rate == pytest.approx(2e-4 * 10.0 * 0.5)


@pytest.mark.parametrize(
    ("model", "options", "dataset", "param"),
    [
        ("tiny-gemma-3-text", {}, {"modality": "vision"}, "model"),
        ("tiny-gemma-3-text", {"lora": {"vision_tower": True}}, {}, "method.supervised.runtune.lora.vision_tower"),
        ("google/gemma-3-27b-it", {"method": "full"}, {}, "method.supervised.runtune.method"),
        (GEMMA4_E4B, {}, {"splits": {"validation": 10, "test": 10}}, "training_file"),
        (GEMMA4_E4B, {}, {"task_kind": TaskKind.classification, "labels": ["only"]}, "training_file"),
        (GEMMA4_E4B, {"max_length": 32_768}, {"splits": {"train": 2_000}}, "method.supervised.runtune"),
    ],
)
def test_a_job_that_cannot_run_is_refused_naming_the_field(
    model: str, options: dict[str, object], dataset: dict[str, object], param: str
) -> None:
    job = _job(model, **options)
    if "max_length" in options:  # a batch of 16 at 32k tokens: no offered GPU holds it
        job = job.model_copy(update={"hyperparameters": Hyperparameters(batch_size=16)})
    with pytest.raises(InvalidRequest) as refused:
        plan.plan_job(job, _dataset(**dataset), offered=["nvidia-l4"])
    assert refused.value.param == param


def test_the_job_stores_its_plan_shows_its_parts_and_hides_the_plan_itself() -> None:
    job = _job()
    planned = plan.plan_job(job, _dataset(), offered=GPU_NAMES)
    done = plan.with_plan(job, planned)
    shown = planned.plan.hyperparameters().model_dump(mode="json")
    assert done.hyperparameters.model_dump(mode="json") == shown
    # OpenAI's shape, only the type's key beside `type` (no null `dpo`), and the estimate's summary.
    assert done.model_dump(mode="json")["method"] == {"type": "supervised", "supervised": {"hyperparameters": shown}}
    summary = done.model_dump(mode="json")["estimate"]
    assert summary["warnings"] == planned.warnings and summary["seconds"] == planned.estimate.seconds
    assert set(summary) == {
        *("seconds", "seconds_low", "seconds_high", "usd", "usd_low", "usd_high", "basis", "calibrated_runs"),
        *("machine", "compute", "gpu_count", "spot", "warnings"),
    }
    assert done.auto_hyperparameters == planned.auto and done.gpu == planned.plan.gpu
    assert "plan" not in done.model_dump(mode="json")  # the API shape is unchanged
    document = done.to_document()
    assert Job.model_validate(document).plan == planned.plan


def test_the_trainer_reads_the_stored_plan_verbatim_and_refuses_a_job_without_one() -> None:
    stored = TrainConfig(job_id="ftjob-1", owner="u", model="tiny-gemma-3-text", dataset_id="ds-1", epochs=7)
    job = _job("tiny-gemma-3-text").model_copy(update={"plan": stored})
    assert read(job) is stored
    with pytest.raises(ConfigError, match="no training plan"):
        read(_job("tiny-gemma-3-text"))


def test_the_plan_module_imports_no_torch() -> None:
    # The training service imports both, and must not need torch to start.
    code = "import sys, runtune.jobs.plan, runtune.training.config; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
