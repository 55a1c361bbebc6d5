"""DPO jobs in the request and the plan: `method: {"type": "dpo", "dpo": {"hyperparameters": ...}}`
with each value `auto` or a number (beta `auto` = 0.1), a dpo job only on a preference set and a
preference set only for a dpo job (400s naming the file), the Runtune options where supervised jobs
have them, and the estimate sizing two sequences an example and the reference pass."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from runtune.errors import InvalidRequest
from runtune.estimate import GPU_NAMES, memory_gib
from runtune.jobs import plan
from runtune.jobs.hyperparameters import SequenceLengths, run_shape
from runtune.models.registry import get
from runtune.schemas import Dataset, DatasetStatus, Job, TaskKind
from runtune.schemas.jobs import CreateJobRequest, RuntuneOptions

MODEL = "google/gemma-3-4b-it"
PAIR_STATS = {"rows": 400, "pairs": 400, "example_chars": {"mean": 300.0, "max": 900.0, "count": 400}}


def _dataset(task: TaskKind = TaskKind.preference, **fields: object) -> Dataset:
    values = {"id": "ds-1", "owner": "u", "name": "set", "status": DatasetStatus.ready, "splits": {"train": 400}}
    stats = PAIR_STATS if task is TaskKind.preference else {**PAIR_STATS, "pairs": None}
    return Dataset.model_validate(values | {"task_kind": task, "stats": stats} | fields)


def _request(method: dict) -> CreateJobRequest:
    return CreateJobRequest(model=MODEL, training_file="ds-1", method=method)


def _job(request: CreateJobRequest) -> Job:
    return request.new_job("u")


def test_a_dpo_request_as_the_openai_sdk_sends_it_plans_with_beta_and_the_options() -> None:
    request = _request(
        {
            "type": "dpo",
            "dpo": {
                "hyperparameters": {"beta": 0.25, "n_epochs": 2, "batch_size": "auto"},
                "runtune": {"method": "qlora", "max_length": 512},
            },
        }
    )
    planned = plan.plan_job(_job(request), _dataset(), offered=GPU_NAMES)
    config = planned.plan
    assert (config.objective, config.beta, config.epochs, config.method, config.max_length) == (
        "dpo",
        0.25,
        2,
        "qlora",
        512,
    )
    assert "beta" not in planned.auto and "batch_size" in planned.auto
    shown = plan.with_plan(_job(request), planned).model_dump(mode="json")["method"]
    assert shown["type"] == "dpo" and "supervised" not in shown
    assert shown["dpo"]["hyperparameters"] == {
        "n_epochs": 2,
        "batch_size": config.batch_size,
        "learning_rate_multiplier": config.learning_rate_multiplier,
        "beta": 0.25,
    }


def test_auto_beta_is_0_1_and_says_why() -> None:
    planned = plan.plan_job(_job(_request({"type": "dpo"})), _dataset(), offered=GPU_NAMES)
    assert planned.plan.beta == 0.1 and "0.1" in planned.auto["beta"]
    assert set(planned.auto) >= {"beta", "n_epochs", "batch_size", "learning_rate_multiplier"}


@pytest.mark.parametrize("beta", [0, -1, 3, "high"])
def test_a_bad_beta_is_refused_with_its_field(beta: object) -> None:
    with pytest.raises(ValidationError) as caught:
        _request({"type": "dpo", "dpo": {"hyperparameters": {"beta": beta}}})
    assert caught.value.errors()[0]["loc"][:4] == ("method", "dpo", "hyperparameters", "beta")


def test_the_settings_of_the_other_type_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"method\.dpo is given, but method\.type is 'supervised'"):
        _request({"type": "supervised", "dpo": {}})
    with pytest.raises(ValidationError, match=r"method\.supervised is given, but method\.type is 'dpo'"):
        _request({"type": "dpo", "supervised": {}})


def test_a_dpo_job_needs_a_preference_set_and_a_preference_set_a_dpo_job() -> None:
    dpo = _job(_request({"type": "dpo"}))
    with pytest.raises(InvalidRequest) as caught:
        plan.plan_job(dpo, _dataset(TaskKind.generation), offered=GPU_NAMES)
    assert caught.value.param == "training_file" and caught.value.code == "invalid_dataset_kind"
    assert "preference" in caught.value.message
    supervised = _job(_request({"type": "supervised"}))
    with pytest.raises(InvalidRequest) as caught:
        plan.plan_job(supervised, _dataset(), offered=GPU_NAMES)
    assert caught.value.param == "training_file" and "dpo" in caught.value.message
    with pytest.raises(InvalidRequest) as caught:
        plan.plan_job(dpo, _dataset(), offered=GPU_NAMES, validation=_dataset(TaskKind.generation, id="ds-2"))
    assert caught.value.param == "validation_file"


def test_runtune_option_errors_name_the_dpo_method() -> None:
    text_model = _request({"type": "dpo", "dpo": {"runtune": {"lora": {"vision_tower": True}}}})
    job = _job(text_model).model_copy(update={"model": "tiny-gemma-3-text"})
    with pytest.raises(InvalidRequest) as caught:
        plan.plan_job(job, _dataset(modality="text"), offered=GPU_NAMES)
    assert caught.value.param == "method.dpo.runtune.lora.vision_tower"


def test_the_estimate_sizes_two_sequences_an_example_and_the_reference_pass() -> None:
    spec = get(MODEL)
    options = RuntuneOptions(method="qlora")
    single = SequenceLengths.of_stats({**PAIR_STATS, "pairs": 0}, spec)
    pairs = SequenceLengths.of_stats(PAIR_STATS, spec)
    assert pairs.pairs and not single.pairs
    one = run_shape(options, single, 400, epochs=1, batch_size=4)
    two = run_shape(options, pairs, 400, epochs=1, batch_size=4)
    assert (two.sequences_per_example, two.reference_pass) == (2, True)
    assert memory_gib(spec.figures(), two) > memory_gib(spec.figures(), one)
    sft = plan.plan_job(_job(_request({"type": "supervised"})), _dataset(TaskKind.generation), offered=GPU_NAMES)
    dpo = plan.plan_job(_job(_request({"type": "dpo"})), _dataset(), offered=GPU_NAMES)
    assert dpo.estimate.seconds > sft.estimate.seconds


def test_full_fine_tuning_has_no_adapter_to_switch_off_for_the_reference() -> None:
    request = _request({"type": "dpo", "dpo": {"runtune": {"method": "full"}}})
    job = _job(request).model_copy(update={"model": "tiny-gemma-3-text"})
    with pytest.raises(InvalidRequest) as caught:
        plan.plan_job(job, _dataset(modality="text"), offered=GPU_NAMES)
    assert caught.value.param == "method.dpo.runtune.method" and "adapter" in caught.value.message
