"""One GGUF or Ollama export, as its execution runs it (jobs/convert): the merged model in, the
converted files out, the export document kept current (status, phase, heartbeat) and ended exactly
once with its webhook event.

Where the files live: on Cloud Run the data bucket is mounted (`runtune.models.loading.DATA_MOUNT`):
the merged model is read from the volume, and the output is written into the export's folder on it,
where each file is held in memory only until it is closed (hence the split size). Elsewhere (the
local platform) the merged model is downloaded into a scratch folder and the output uploaded.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path

from runtune import gguf_export
from runtune.blob_layout import MERGED, converted_folder, export_folder
from runtune.models.loading import DATA_MOUNT, download_prefix
from runtune.outbox import on_transition
from runtune.owned import OwnedCollection
from runtune.ports.blobs import BlobStore
from runtune.ports.metadata import Document, MetadataStore
from runtune.schemas.common import ApiError, now_ts
from runtune.schemas.inference import Export, ExportFile, ExportFormat, ExportStatus, Quantization

log = logging.getLogger("runtune.convert")


def export_path(export_id: str) -> str:
    return f"exports/{export_id}"


class ConversionRunner:
    def __init__(
        self,
        store: MetadataStore,
        blobs: BlobStore,
        *,
        converter_dir: Path,
        split_max_size: str | None,
        heartbeat_s: float,
        threads: int = 0,
        mount: Path = DATA_MOUNT,
    ) -> None:
        self._store, self._blobs = store, blobs
        self._exports = OwnedCollection(store, "exports", Export, "export")
        self._converter_dir, self._split = converter_dir, split_max_size
        self._heartbeat_s, self._threads, self._mount = heartbeat_s, threads, mount

    def run(self, export: Export) -> bool:
        """Convert; True when the export succeeded. Every failure the user can act on ends it `failed`
        with the reason; a kill leaves it `running` for the inference service's reconciler."""
        if not gguf_export.converter_available(self._converter_dir):
            return self._end(
                export.id, error=("converter_missing", "This deployment's convert image has no llama.cpp converter")
            )
        self._transition(export.id, ExportStatus.running, phase="starting")
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(export.id, stop), daemon=True)
        beat.start()
        try:
            with tempfile.TemporaryDirectory(prefix="runtune-convert-") as scratch:
                files = self._convert(export, Path(scratch))
        except gguf_export.ConversionError as exc:
            return self._end(export.id, error=("conversion_failed", str(exc)))
        except FileNotFoundError as exc:
            return self._end(export.id, error=("merged_missing", f"The merged model is gone: {exc}"))
        finally:
            stop.set()
            beat.join()
        return self._end(export.id, files=files)

    def _convert(self, export: Export, scratch: Path) -> list[ExportFile]:
        merged_prefix = export_folder(export.owner, export.job_id, MERGED)
        quantization = export.quantization or Quantization.q4_k_m
        out_prefix = converted_folder(export.owner, export.job_id, export.format.value, quantization.value)
        mounted = (self._mount / merged_prefix / "config.json").is_file()
        if mounted:
            merged, out = self._mount / merged_prefix, self._mount / out_prefix
        else:
            self._set_phase(export.id, "downloading")
            merged, out = download_prefix(self._blobs, merged_prefix, scratch / "merged"), scratch / "out"
        if out.exists():
            shutil.rmtree(out)  # an earlier attempt's partial output
        options = {"converter_dir": self._converter_dir, "threads": self._threads}
        on_phase = lambda phase: self._set_phase(export.id, phase)  # noqa: E731
        if export.format is ExportFormat.ollama:
            converted = gguf_export.to_ollama(merged, out, quantization, on_phase=on_phase, **options)
        else:
            converted = gguf_export.to_gguf(
                merged, out, quantization, split_max_size=self._split, on_phase=on_phase, **options
            )
        files = []
        if not mounted:
            self._set_phase(export.id, "uploading")
            self._blobs.delete_prefix(out_prefix)
        for item in converted:
            path = out_prefix + item.path.name
            size = item.path.stat().st_size
            if not mounted:
                self._blobs.upload_file(path, item.path)
                item.path.unlink()  # the scratch disk is memory on Cloud Run: hold one file at a time
            files.append(ExportFile(path=path, bytes=size))
        return files

    # -- the document ----------------------------------------------------------------------------

    def _beat(self, export_id: str, stop: threading.Event) -> None:
        while not stop.wait(self._heartbeat_s):
            try:
                self._exports.update(export_id, {"heartbeat_at": now_ts()})
            except Exception:  # a missed beat is retried at the next one
                log.warning("heartbeat failed", extra={"export": export_id})

    def _set_phase(self, export_id: str, phase: str) -> None:
        self._exports.update(export_id, {"phase": phase, "heartbeat_at": now_ts()})
        log.info("phase", extra={"export": export_id, "phase": phase})

    def _transition(self, export_id: str, status: ExportStatus, *, phase: str) -> None:
        def apply(current: Document | None) -> Document | None:
            if current is None or current.get("status") in (ExportStatus.succeeded, ExportStatus.failed):
                return None
            return {**current, "status": status.value, "phase": phase, "heartbeat_at": now_ts()}

        self._store.transact(export_path(export_id), apply, also=on_transition("export"))

    def _end(
        self, export_id: str, *, files: list[ExportFile] | None = None, error: tuple[str, str] | None = None
    ) -> bool:
        def apply(current: Document | None) -> Document | None:
            if current is None:
                return None
            export = Export.model_validate(current)
            if export.is_finished:
                return None
            export.finished_at, export.phase = now_ts(), None
            if error is None:
                export.status, export.files = ExportStatus.succeeded, files or []
            else:
                export.status, export.error = ExportStatus.failed, ApiError(code=error[0], message=error[1])
            return export.to_document()

        self._store.transact(export_path(export_id), apply, also=on_transition("export"))
        if error is not None:
            log.warning("conversion failed", extra={"export": export_id, "code": error[0]})
        return error is None
