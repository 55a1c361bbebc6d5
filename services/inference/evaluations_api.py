"""`/v1/evaluations`: score a dataset split with one or two models, in an execution of its own."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from runtune.api.deps import CurrentUser, Pagination
from runtune.blob_layout import predictions_path
from runtune.errors import InvalidRequest, NotFound
from runtune.owned import OwnedCollection, datasets
from runtune.schemas import Dataset, DatasetStatus, ListPage
from runtune.schemas.common import WholeList, new_id
from runtune.schemas.datasets import TaskKind
from runtune.schemas.inference import CreateEvaluationRequest, Evaluation, Prediction
from services.inference.deps import Inference
from services.inference.executions import Executions

router = APIRouter(prefix="/v1/evaluations", tags=["inference"])


def _executions(request: Request) -> Executions[Evaluation]:
    return request.app.state.evaluations


def _evaluations(request: Request) -> OwnedCollection[Evaluation]:
    return _executions(request).collection


def _dataset(inference: Any, uid: str, dataset_id: str) -> Dataset:
    dataset = datasets(inference.store).get_owned(uid, dataset_id)
    if dataset.status is not DatasetStatus.ready:
        raise InvalidRequest(f"Dataset '{dataset_id}' is {dataset.status.value}, not ready", param="dataset_id")
    return dataset


@router.post("", response_model=Evaluation, status_code=202)
async def create_evaluation(
    body: CreateEvaluationRequest, request: Request, user: CurrentUser, inference: Inference
) -> Evaluation:
    dataset = await run_in_threadpool(_dataset, inference, user.uid, body.dataset_id)
    if dataset.splits and not dataset.splits.get(body.split):
        raise InvalidRequest(f"Dataset '{dataset.id}' has no '{body.split}' examples", param="split")
    task = dataset.task_kind or TaskKind.generation
    if task is TaskKind.classification and len(dataset.labels) < 2:
        raise InvalidRequest("A classification evaluation needs at least two labels", param="dataset_id")
    if task is not TaskKind.classification and body.method == "label_scoring":
        raise InvalidRequest("Label scoring needs a classification dataset; use method 'generation'", param="method")
    if len(set(body.models)) != len(body.models):
        raise InvalidRequest("The models must differ", param="models")
    for i, model in enumerate(body.models):
        target = inference.resolver.resolve(user.uid, model, f"models[{i}]")
        if dataset.modality == "vision" and target.spec.modality != "vision":
            raise InvalidRequest(f"Model '{model}' reads text only; the dataset has images", param=f"models[{i}]")
    evaluation = Evaluation(
        id=new_id("eval"),
        owner=user.uid,
        dataset_id=dataset.id,
        split=body.split,
        models=body.models,
        method=body.method,
        max_samples=body.max_samples,
        labels=list(dataset.labels),
    )
    # Stored, then launched: the execution (jobs/evaluate) does the work and writes the progress.
    return await run_in_threadpool(_executions(request).start, evaluation)


@router.get("", response_model=ListPage[Evaluation])
def list_evaluations(request: Request, user: CurrentUser, page: Pagination) -> ListPage[Evaluation]:
    executions = _executions(request)
    found = executions.collection.list_owned(user.uid, limit=page.limit + 1, after=page.after)
    return ListPage[Evaluation].from_overfetch([executions.reconciled(e) for e in found], page.limit)


@router.get("/{evaluation_id}", response_model=Evaluation)
def get_evaluation(evaluation_id: str, request: Request, user: CurrentUser) -> Evaluation:
    executions = _executions(request)
    return executions.reconciled(executions.collection.get_owned(user.uid, evaluation_id))


@router.get("/{evaluation_id}/predictions", response_model=WholeList[Prediction])
def get_predictions(
    evaluation_id: str, request: Request, user: CurrentUser, inference: Inference
) -> WholeList[Prediction]:
    evaluation = _evaluations(request).get_owned(user.uid, evaluation_id)
    try:
        body = inference.blobs.download_bytes(predictions_path(user.uid, evaluation.id))
    except NotFound:
        raise InvalidRequest(
            f"Evaluation '{evaluation_id}' has no predictions yet ({evaluation.status.value})"
        ) from None
    rows = [Prediction.model_validate_json(line) for line in body.decode().splitlines() if line]
    return WholeList[Prediction](data=rows)
