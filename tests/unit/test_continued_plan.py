"""The plan of a continued job (runtune/jobs/plan.py): `model` is one of the owner's `ft:` models, and
everything is sized, checked and priced on the chain's root base, with the parent's adapter to start
from and its LoRA shape; the lineage grows by one model a generation."""

from __future__ import annotations

import pytest

from runtune.errors import InvalidRequest
from runtune.estimate import GPU_NAMES
from runtune.jobs import plan
from runtune.schemas import Dataset, DatasetStatus, Job, JobStatus
from runtune.schemas.jobs import Lineage, RuntuneOptions, TrainConfig, tuned_model_id

ROOT = "tiny-gemma-3-text"
ADAPTER = "users/u/jobs/ftjob-p/export/adapter/"


def _dataset(**fields: object) -> Dataset:
    values = {"id": "ds-1", "owner": "u", "name": "set", "status": DatasetStatus.ready, "splits": {"train": 64}}
    return Dataset.model_validate(values | {"modality": "text"} | fields)


def _parent(job_id: str = "ftjob-p", lineage: Lineage | None = None, rank: int = 8) -> plan.Parent:
    lineage = lineage or Lineage.of_base(ROOT)
    config = TrainConfig(job_id=job_id, owner="u", model=ROOT, dataset_id="ds-0", lora_rank=rank, lora_alpha=2 * rank)
    job = Job(
        id=job_id,
        owner="u",
        model=lineage.parent,
        training_file="ds-0",
        status=JobStatus.succeeded,
        fine_tuned_model=tuned_model_id(ROOT, job_id),
        plan=config,
        lineage=lineage,
    )
    return plan.Parent.of(job, ADAPTER)


def _child(parent: plan.Parent, **options: object) -> Job:
    return Job(
        id="ftjob-c",
        owner="u",
        model=parent.model,
        training_file="ds-1",
        options=RuntuneOptions(**options),
        lineage=plan.lineage_of(parent.model, parent),
    )


def test_a_continued_job_is_planned_on_the_root_base_from_its_parents_adapter() -> None:
    parent = _parent()
    child = _child(parent)
    assert child.lineage == Lineage(root=ROOT, parent=parent.model, chain=[ROOT, parent.model])
    assert child.base_model == ROOT

    config = plan.plan_job(child, _dataset(), offered=GPU_NAMES, parent=parent).plan

    assert config.model == ROOT  # what the trainer loads and names its model after
    assert (config.parent_model, config.parent_adapter) == (parent.model, ADAPTER)
    # The parent adapter's shape, not the child's default rank 16: that adapter trains on as it is.
    assert (config.lora_rank, config.lora_alpha) == (8, 16)
    # The root's figures: the tiny model's learning-rate scale and a GPU of the table.
    assert config.learning_rate == pytest.approx(plan.BASE_LEARNING_RATE["qlora"] * 10.0)
    assert config.gpu in GPU_NAMES


def test_the_lineage_grows_a_model_each_generation_and_keeps_its_root() -> None:
    first = _parent("ftjob-1")
    second = _parent("ftjob-2", plan.lineage_of(first.model, first))
    third = plan.lineage_of(second.model, second)
    assert third == Lineage(root=ROOT, parent=second.model, chain=[ROOT, first.model, second.model])
    assert third.is_continued and not Lineage.of_base(ROOT).is_continued
    assert plan.plan_job(_child(second), _dataset(), offered=GPU_NAMES, parent=second).plan.model == ROOT


def test_a_job_stored_before_lineage_is_its_own_models() -> None:
    old = Job(id="ftjob-o", owner="u", model=ROOT, training_file="ds-1")
    assert old.lineage is None and old.base_model == ROOT and old.lineage_or_base == Lineage.of_base(ROOT)
    planned = plan.plan_job(old, _dataset(), offered=GPU_NAMES).plan
    assert planned.model == ROOT and planned.parent_model is None and planned.parent_adapter is None


def test_the_lineage_is_stored_and_shown() -> None:
    child = _child(_parent())
    assert Job.model_validate(child.to_document()).lineage == child.lineage
    assert child.model_dump(mode="json")["lineage"]["root"] == ROOT


def test_the_roots_rules_apply_to_a_continued_job() -> None:
    # The root reads text only: a set with images is refused naming `model`, as for the base itself.
    parent = _parent()
    with pytest.raises(InvalidRequest) as refused:
        plan.plan_job(_child(parent), _dataset(modality="vision"), offered=GPU_NAMES, parent=parent)
    assert refused.value.param == "model" and ROOT in refused.value.message


def test_a_lora_shape_asked_that_differs_from_the_parents_or_full_tuning_is_refused() -> None:
    parent = _parent()
    asked = RuntuneOptions.model_validate({"lora": {"rank": 32}})
    with pytest.raises(InvalidRequest) as refused:
        plan.continued_options(asked, parent, asked=plan.lora_asked(asked))
    assert refused.value.param == "method.supervised.runtune.lora.rank" and "32" in refused.value.message
    # The same rank asked again, or none asked, is the parent's shape.
    same = RuntuneOptions.model_validate({"lora": {"rank": 8}})
    assert plan.continued_options(same, parent, asked=plan.lora_asked(same)).lora == parent.lora
    assert plan.lora_asked(RuntuneOptions()) == set()
    with pytest.raises(InvalidRequest) as full:
        plan.continued_options(RuntuneOptions(method="full"), parent, param="runtune")
    assert full.value.param == "runtune.method"


def test_a_continued_job_is_planned_only_with_its_own_parent() -> None:
    parent, other = _parent("ftjob-p"), _parent("ftjob-x")
    with pytest.raises(ValueError):
        plan.plan_job(_child(parent), _dataset(), offered=GPU_NAMES)
    with pytest.raises(ValueError):
        plan.plan_job(_child(parent), _dataset(), offered=GPU_NAMES, parent=other)
    with pytest.raises(ValueError):
        plan.plan_job(
            Job(id="j", owner="u", model=ROOT, training_file="d"), _dataset(), offered=GPU_NAMES, parent=parent
        )
