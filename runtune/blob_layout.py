"""The data bucket's layout: every path of a user's objects, spelled here and nowhere else.

    uploads/{uid}/{upload}/{file}                 an upload, temporary (the bucket's lifecycle rule
                                                  deletes what is under `uploads/`)
    users/{uid}/uploads/{upload}/                 uploads made before that prefix (still deleted with them)
    users/{uid}/datasets/{dataset}/               canonical shards and previews (runtune.datasets),
        source/{file}                             the dataset's own copy of its source file
    users/{uid}/jobs/{job}/                       config.json, tensorboard/ (runtune.training)
        checkpoints/step-XXXXXX/                  resume states (runtune.training.checkpoints)
        export/adapter/, export/merged/           the job's model (runtune.training.export)
        export/checkpoints/step-XXXXXX/           model checkpoints (runtune.training.model_checkpoints)
    users/{uid}/evaluations/{evaluation}/predictions.jsonl
    users/{uid}/vibe_checks/{check}/prompt-{index}.{extension}
    users/{uid}/exports/{export}/adapter.tar.gz   adapter archives (a merged export points into the job's
                                                  export/merged/)

Ownership is the metadata's (`owner` on each document); a path is built from ids the platform made,
never from a client's string. `runtune.permissions` states each deployable's access with these same
functions, called with `{name}` placeholders.

A leaf: pure functions, no import of the rest of Runtune.
"""

from __future__ import annotations

import re
from typing import Literal

ExportKind = Literal["adapter", "merged"]
ADAPTER: ExportKind = "adapter"
MERGED: ExportKind = "merged"

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(filename: str) -> str:
    """The last path component with only safe characters: names never address other objects."""
    name = _UNSAFE_NAME.sub("_", filename.replace("\\", "/").rsplit("/", 1)[-1]).strip("._") or "upload"
    return name[-150:]


def user_prefix(uid: str) -> str:
    return f"users/{uid}/"


# -- uploads ----------------------------------------------------------------------------------------


def upload_prefix(uid: str, upload_id: str) -> str:
    """Top-level `uploads/`: the bucket's lifecycle rule deletes what is under it (a GCS rule's prefix
    cannot wildcard the uid). Ownership is the upload document's `owner`; the path is never a client's."""
    return f"uploads/{uid}/{upload_id}/"


def legacy_upload_prefix(uid: str, upload_id: str) -> str:
    """Where uploads were made before the temporary top-level prefix."""
    return f"{user_prefix(uid)}uploads/{upload_id}/"


def upload_folder(object_path: str) -> str:
    """The folder of an upload's object, whichever layout it was made with."""
    return object_path.rsplit("/", 1)[0] + "/"


# -- datasets ---------------------------------------------------------------------------------------


def dataset_prefix(uid: str, dataset_id: str) -> str:
    return f"{user_prefix(uid)}datasets/{dataset_id}/"


def source_path(uid: str, dataset_id: str, filename: str) -> str:
    """Where a dataset keeps its own copy of its source file (inside its prefix, so delete removes it)."""
    return f"{dataset_prefix(uid, dataset_id)}source/{safe_filename(filename)}"


# -- jobs -------------------------------------------------------------------------------------------


def job_prefix(uid: str, job_id: str) -> str:
    """Everything of one job: its resolved config, TensorBoard files, resume states and model. An
    adapter path read from a document is trusted only inside it (runtune.inference.resolver)."""
    return f"{user_prefix(uid)}jobs/{job_id}/"


def checkpoint_prefix(uid: str, job_id: str, step: int) -> str:
    """A resume state (optimizer, data position): the trainer's own, pruned to the newest few."""
    return f"{job_prefix(uid, job_id)}checkpoints/step-{step:06d}/"


def export_prefix(uid: str, job_id: str) -> str:
    """The job's model: deleting the model deletes this folder."""
    return f"{job_prefix(uid, job_id)}export/"


def export_folder(uid: str, job_id: str, kind: ExportKind) -> str:
    """The job's final adapter (`adapter`) or merged 16-bit model (`merged`)."""
    return f"{export_prefix(uid, job_id)}{kind}/"


def converted_folder(uid: str, job_id: str, export_format: str, quantization: str) -> str:
    """A GGUF or Ollama conversion of the merged model (`gguf-q4_k_m/`): deleted with the model."""
    return f"{export_prefix(uid, job_id)}{export_format}-{quantization}/"


def model_checkpoint_folder(uid: str, job_id: str, step: int) -> str:
    """A model checkpoint's adapter, laid out as the final adapter's (so the engine reads it alike)."""
    return f"{export_prefix(uid, job_id)}checkpoints/step-{step:06d}/"


# -- inference --------------------------------------------------------------------------------------


def evaluation_prefix(uid: str, evaluation_id: str) -> str:
    return f"{user_prefix(uid)}evaluations/{evaluation_id}/"


def predictions_path(uid: str, evaluation_id: str) -> str:
    """One JSON line per sample: its expected answer and each model's prediction (`GET .../predictions`)."""
    return f"{evaluation_prefix(uid, evaluation_id)}predictions.jsonl"


def vibe_check_prefix(uid: str, check_id: str) -> str:
    return f"{user_prefix(uid)}vibe_checks/{check_id}/"


def vibe_image_path(uid: str, check_id: str, index: int, extension: str) -> str:
    """A prompt's image: its document keeps the path, every read shows a signed URL of it."""
    return f"{vibe_check_prefix(uid, check_id)}prompt-{index}.{extension}"


def export_archive_prefix(uid: str, export_id: str) -> str:
    return f"{user_prefix(uid)}exports/{export_id}/"


def adapter_archive_path(uid: str, export_id: str) -> str:
    return f"{export_archive_prefix(uid, export_id)}adapter.tar.gz"
