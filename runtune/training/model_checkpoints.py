"""Model checkpoints, as OpenAI means them: at the end of each of the last `KEEP_EPOCHS` epochs (so at
least the final one, however short the job), the LoRA adapter as it stands, usable as a model under
its `fine_tuned_model_checkpoint` id `ft:<base>:<job>:ckpt-step-N` wherever a tuned model id is.

They are not the resume states of runtune.training.checkpoints (those hold optimizer and data
position, are taken every N steps and pruned to the newest few): a model checkpoint is an adapter
folder laid out as the final export's, under the job's export folder
(`users/{uid}/jobs/{job}/export/checkpoints/step-XXXXXX/`, so the engine reads it as it reads the
export and deleting the job's model removes it too), and its document is
`jobs/{job}/model_checkpoints/{step}`, written after the files and never pruned.

Full fine-tuning keeps no model checkpoints: its model has no adapter the engine could load."""

from __future__ import annotations

from typing import Any

from runtune.models.registry import ModelSpec
from runtune.ports.blobs import BlobStore
from runtune.ports.metadata import MetadataStore, OrderBy
from runtune.schemas.common import now_ts
from runtune.schemas.jobs import (
    Checkpoint,
    TrainConfig,
    checkpoint_id,
    checkpoint_model_id,
    job_path,
    model_checkpoint_path,
)
from runtune.training import export

KEEP_EPOCHS = 3  # as OpenAI: the last three epochs' models


def wanted(config: TrainConfig, epochs_done: int) -> bool:
    """Whether the end of epoch `epochs_done` (1-based) gets a model checkpoint."""
    return config.method != "full" and epochs_done > config.epochs - KEEP_EPOCHS


def folder(uid: str, job_id: str, step: int) -> str:
    return f"{export.export_prefix(uid, job_id)}checkpoints/step-{step:06d}/"


def save(
    blobs: BlobStore,
    store: MetadataStore,
    *,
    config: TrainConfig,
    spec: ModelSpec,
    model: Any,
    processor: Any,
    step: int,
    metrics: dict[str, float],
) -> Checkpoint:
    prefix = folder(config.owner, config.job_id, step)
    card = export.model_card(config, {"checkpoint": {"step": step, **metrics}})
    export.save_adapter(blobs, prefix, config=config, spec=spec, model=model, processor=processor, card=card)
    checkpoint = Checkpoint(
        id=checkpoint_id(config.job_id, step),
        created_at=now_ts(),
        fine_tuned_model_checkpoint=checkpoint_model_id(config.model, config.job_id, step),
        fine_tuning_job_id=config.job_id,
        step_number=step,
        metrics=metrics,
    )
    document = checkpoint.model_dump(mode="json", exclude={"best"}) | {"adapter": prefix}
    store.set(model_checkpoint_path(config.job_id, step), document)
    return checkpoint


def listed(store: MetadataStore, job_id: str) -> list[dict[str, Any]]:
    """The job's model checkpoint documents, oldest first (at most `KEEP_EPOCHS` per run)."""
    rows = store.query(f"{job_path(job_id)}/model_checkpoints", order_by=[OrderBy("step_number")])
    return [document for _, document in rows]


def best(documents: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The checkpoint with the lowest validation loss (the earlier one on a tie); None without validation."""
    scored = [d for d in documents if isinstance((d.get("metrics") or {}).get("valid_loss"), int | float)]
    return min(scored, key=lambda d: (d["metrics"]["valid_loss"], d["step_number"]), default=None)
