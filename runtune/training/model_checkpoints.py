"""Model checkpoints, as OpenAI means them: at the end of each of the last `KEEP_EPOCHS` epochs (so at
least the final one, however short the job), the LoRA adapter as it stands, usable as a model under
its `fine_tuned_model_checkpoint` id `ft:<base>:<job>:ckpt-step-N` wherever a tuned model id is.

They are not the resume states of runtune.training.checkpoints (those hold optimizer and data
position, are taken every N steps and pruned to the newest few): a model checkpoint is an adapter
folder laid out as the final export's, under the job's export folder
(`runtune.blob_layout.model_checkpoint_folder`, so the engine reads it as it reads the export and
deleting the job's model removes it too), and its document is `jobs/{job}/model_checkpoints/{step}`
(`runtune.owned.JobCheckpoints`), written after the files and never pruned.

Full fine-tuning keeps no model checkpoints: its model has no adapter the engine could load."""

from __future__ import annotations

from typing import Any

from runtune.blob_layout import model_checkpoint_folder
from runtune.models.registry import ModelSpec
from runtune.owned import JobCheckpoints, StoredCheckpoint
from runtune.ports.blobs import BlobStore
from runtune.ports.metadata import MetadataStore
from runtune.schemas.common import now_ts
from runtune.schemas.jobs import Checkpoint, TrainConfig, checkpoint_id, checkpoint_model_id
from runtune.training import export

KEEP_EPOCHS = 3  # as OpenAI: the last three epochs' models


def wanted(config: TrainConfig, epochs_done: int) -> bool:
    """Whether the end of epoch `epochs_done` (1-based) gets a model checkpoint."""
    return config.method != "full" and epochs_done > config.epochs - KEEP_EPOCHS


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
    prefix = model_checkpoint_folder(config.owner, config.job_id, step)
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
    JobCheckpoints(store).save(StoredCheckpoint(checkpoint, prefix))
    return checkpoint


def best(checkpoints: list[Checkpoint]) -> Checkpoint | None:
    """The checkpoint with the lowest validation loss (the earlier one on a tie); None without validation."""
    scored = [c for c in checkpoints if isinstance(c.metrics.get("valid_loss"), int | float)]
    return min(scored, key=lambda c: (c.metrics["valid_loss"], c.step_number), default=None)
