"""`GET /v1/models` and `POST /v1/fine_tuning/estimate`: what can be trained, and what it will take.
One model (`GET` / `DELETE /v1/models/{id}`) is the inference service's: it serves and unloads them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from runtune.api.deps import CurrentUser
from runtune.errors import InvalidRequest
from runtune.estimate import GPU_TABLE, gpu_prices
from runtune.inference.resolver import base_model_object, tuned_model_object
from runtune.jobs import plan
from runtune.jobs.hyperparameters import SequenceLengths
from runtune.models import registry
from runtune.schemas.jobs import GpuList, GpuOffer, Hyperparameters, JobStatus, RunEstimate, RuntuneOptions
from runtune.schemas.models import ModelList
from services.training.jobs_service import JobService

router = APIRouter(tags=["models"])


def _jobs(request: Request) -> JobService:
    return request.app.state.jobs


Jobs = Annotated[JobService, Depends(_jobs)]


# A base model and a tuned one carry different fields: the one a model lacks stays out of its JSON.
@router.get("/v1/models", response_model=ModelList, response_model_exclude_unset=True)
def list_models(user: CurrentUser, jobs: Jobs) -> dict[str, Any]:
    # `GET /v1/models/{id}` and `DELETE` are the inference service's (it serves and unloads them).
    base = [base_model_object(spec, jobs.profile) for spec in registry.MODELS.values()]
    tuned = [
        tuned_model_object(job)
        for job in jobs.jobs.where_in("status", [JobStatus.succeeded.value], owner=user.uid)
        if job.fine_tuned_model and not job.model_deleted_at
    ]
    return {"object": "list", "data": base + tuned}


class EstimateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    training_file: str | None = Field(default=None, description="A dataset id; or give `examples`")
    examples: int | None = Field(default=None, ge=1, le=10_000_000)
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    runtune: RuntuneOptions = Field(default_factory=RuntuneOptions)


@router.post("/v1/fine_tuning/estimate", response_model=RunEstimate)
def estimate_run(body: EstimateRequest, user: CurrentUser, jobs: Jobs) -> RunEstimate:
    # The job plan's own checks (runtune/jobs/plan.py), with the estimate's field names.
    # A continued model is estimated on its chain's root base with its parent's LoRA shape, as its job is planned.
    parent = None if registry.lookup(body.model) else jobs.parent_for(user.uid, body.model)
    spec = plan.check_model(plan.lineage_of(body.model, parent).root)
    options = body.runtune
    if parent is not None:
        options = plan.continued_options(options, parent, asked=plan.lora_asked(options), param="runtune")
    plan.check_options(spec, options, jobs.offered_gpus, param="runtune", machines=jobs.estimator.machines)
    if body.training_file is not None:
        dataset = jobs.dataset_for(user.uid, body.training_file, "training_file")
        examples = plan.training_examples(dataset)
        lengths = SequenceLengths.of_stats(dataset.stats, spec)
        held_out = plan.held_out_examples(body.runtune.evaluation, dataset)
    elif body.examples is not None:
        examples, lengths = body.examples, SequenceLengths.typical(spec)
        held_out = plan.typical_held_out(body.runtune.evaluation, examples)
    else:
        raise InvalidRequest("Give a training_file or a number of examples", param="training_file")
    resolved, result = plan.size_run(
        spec,
        body.hyperparameters,
        options,
        examples,
        lengths,
        jobs.offered_gpus,
        held_out=held_out,
        estimator=jobs.estimator,
    )
    hub = plan.hub_warning(spec, has_token=jobs.has_hub_token(user.uid))
    return RunEstimate(
        **result.as_dict()
        | {
            "model": spec.id,
            "hyperparameters": resolved.hyperparameters,
            "auto_hyperparameters": resolved.auto,
            # Real Gemma weights come from the Hub: whether this user's token is missing, said before launch.
            "needs_hub_token": hub is not None,
            "warnings": [*result.warnings, *([hub] if hub else [])],
        }
    )


@router.get("/v1/fine_tuning/gpus", response_model=GpuList)
def list_gpus(user: CurrentUser, jobs: Jobs) -> GpuList:
    """The GPUs this deployment trains on (what `runtune.gpu` may name, besides "auto"), with the shape
    and price of each one's trainer job, and where the trainers run."""
    data = [
        GpuOffer(
            id=gpu.name,
            label=gpu.label,
            memory_gib=gpu.memory_gib,
            cpu=gpu.cloud_run_cpu,
            instance_memory_gib=gpu.cloud_run_memory_gib,
            usd_per_hour=round(gpu_prices()[gpu.name] * 3600, 4),
        )
        for gpu in GPU_TABLE
        if gpu.name in jobs.offered_gpus
    ]
    return GpuList(data=data, where=jobs.where)
