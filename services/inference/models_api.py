"""`GET /v1/models/{id}` and `DELETE /v1/models/{id}`: one base model, one of the caller's tuned
models or one of their model checkpoints, as OpenAI's Model object. Here rather than next to the
list (the training service's) because deleting a tuned model unloads it from the engine this service
talks to. Ids contain `/` (the base
`google/gemma-3-4b-it`) and `:` (`ft:...`): the route takes the rest of the path."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from runtune.api.deps import CurrentUser
from runtune.inference.resolver import base_model_object, tuned_model_object
from runtune.models import registry
from runtune.schemas.common import Deleted
from runtune.schemas.jobs import parse_tuned_model_id
from runtune.schemas.models import ModelObject
from services.inference.deps import Inference

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("/{model_id:path}", response_model=ModelObject, response_model_exclude_unset=True)
async def retrieve_model(model_id: str, request: Request, user: CurrentUser, inference: Inference) -> dict[str, Any]:
    spec = registry.lookup(model_id)
    if spec is not None:
        return base_model_object(spec, request.app.state.settings.profile)
    parsed = parse_tuned_model_id(model_id)
    if parsed is not None and parsed[2] is not None:  # a model checkpoint (`ft:...:ckpt-step-N`)
        job, checkpoint, _ = await run_in_threadpool(inference.resolver.checkpoint, user.uid, model_id)
        return tuned_model_object(job, checkpoint)
    job = await run_in_threadpool(inference.resolver.tuned_job, user.uid, model_id)
    return tuned_model_object(job)


@router.delete("/{model_id:path}", response_model=Deleted)
async def delete_model(model_id: str, user: CurrentUser, inference: Inference) -> Deleted:
    return await inference.delete_model(user.uid, model_id)
