"""Optional experiment trackers, asked for in the job's `integrations` (OpenAI's shape):

    {"type": "wandb", "wandb": {"project": "...", "entity": null, "name": null, "tags": []}}
    {"type": "tensorboard"}

Weights & Biases logs every step's metrics to the user's project with their API key (the `wandb`
secret; the run id is the job id, so a retried task continues the same run). TensorBoard writes event
files locally and uploads them to the job's folder, `users/{uid}/jobs/{id}/tensorboard/`, at every
checkpoint and at the end (point TensorBoard at that `gs://` folder). A tracker that cannot start (its
package missing from the image, no key) is reported as a warning and skipped: the metrics are in the
job's events whatever happens, and no tracker fails a job.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtune.ports.blobs import BlobStore

log = logging.getLogger("runtune.trainer")


def _summary_writer(folder: str) -> Any:
    from torch.utils.tensorboard import SummaryWriter  # needs the `tensorboard` package

    return SummaryWriter(log_dir=folder)


def _wandb() -> Any:
    import wandb

    return wandb


class Trackers:
    def __init__(
        self,
        integrations: list[dict[str, Any]],
        *,
        job_id: str,
        config: dict[str, Any],
        blobs: BlobStore,
        prefix: str,
        secret: Callable[[str], str | None],
        warn: Callable[[str], None],
        summary_writer: Callable[[str], Any] | None = None,
        wandb_module: Callable[[], Any] | None = None,
    ) -> None:
        summary_writer = summary_writer or _summary_writer
        wandb_module = wandb_module or _wandb
        self._blobs, self._prefix = blobs, prefix + "tensorboard/"
        self._tensorboard: Any = None
        self._tensorboard_dir: tempfile.TemporaryDirectory[str] | None = None
        self._wandb: Any = None
        for integration in integrations:
            kind = integration.get("type")
            try:
                if kind == "tensorboard":
                    self._tensorboard_dir = tempfile.TemporaryDirectory(prefix="runtune-tensorboard-")
                    self._tensorboard = summary_writer(self._tensorboard_dir.name)
                elif kind == "wandb":
                    self._wandb = self._start_wandb(
                        wandb_module, integration.get("wandb") or {}, job_id, config, secret
                    )
                else:
                    warn(f"Integration '{kind}' is not supported (use 'wandb' or 'tensorboard'); skipped")
            except ImportError as exc:
                warn(f"Integration '{kind}' skipped: the trainer image lacks its package ({exc.name})")
            except Exception as exc:  # a tracker never fails the job
                warn(f"Integration '{kind}' skipped: {type(exc).__name__}: {str(exc)[:200]}")

    @staticmethod
    def _start_wandb(
        module: Callable[[], Any],
        options: dict[str, Any],
        job_id: str,
        config: dict[str, Any],
        secret: Callable[[str], str | None],
    ) -> Any:
        key = secret("wandb")
        if not key:
            raise PermissionError("add your Weights & Biases API key as the 'wandb' secret")
        wandb = module()
        wandb.login(key=key, relogin=True)
        return wandb.init(
            project=options.get("project") or "runtune",
            entity=options.get("entity"),
            name=options.get("name") or job_id,
            tags=options.get("tags") or None,
            config=config,
            id=job_id,
            resume="allow",
        )

    def log(self, step: int, record: dict[str, Any]) -> None:
        numbers = {k: v for k, v in record.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        try:
            if self._tensorboard is not None:
                for name, value in numbers.items():
                    self._tensorboard.add_scalar(f"train/{name}", value, step)
            if self._wandb is not None:
                self._wandb.log({f"train/{k}": v for k, v in numbers.items()}, step=step)
        except Exception:
            log.warning("tracker logging failed", exc_info=True)

    def summary(self, metrics: dict[str, Any]) -> None:
        """The evaluation's headline numbers (flattened), once at the end."""
        flat = {k: v for k, v in _flatten(metrics).items() if isinstance(v, int | float) and not isinstance(v, bool)}
        try:
            if self._wandb is not None:
                self._wandb.summary.update(flat)
            if self._tensorboard is not None:
                for name, value in flat.items():
                    self._tensorboard.add_scalar(name, value, 0)
        except Exception:
            log.warning("tracker summary failed", exc_info=True)

    def sync(self) -> None:
        """Upload TensorBoard's event files to the job's folder."""
        if self._tensorboard is None or self._tensorboard_dir is None:
            return
        try:
            self._tensorboard.flush()
            root = Path(self._tensorboard_dir.name)
            for file in sorted(p for p in root.rglob("*") if p.is_file()):
                self._blobs.upload_file(self._prefix + file.relative_to(root).as_posix(), file)
        except Exception:
            log.warning("tensorboard upload failed", exc_info=True)

    def close(self) -> None:
        self.sync()
        try:
            if self._tensorboard is not None:
                self._tensorboard.close()
            if self._wandb is not None:
                self._wandb.finish()
        except Exception:
            log.warning("tracker close failed", exc_info=True)
        if self._tensorboard_dir is not None:
            self._tensorboard_dir.cleanup()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix.rstrip("/"): value}
    flat: dict[str, Any] = {}
    for key, inner in value.items():
        if key in ("per_class", "confusion_matrix", "examples"):
            continue
        flat |= _flatten(inner, f"{prefix}{key}/")
    return flat
