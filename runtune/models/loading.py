"""Loading a registry model's processor and weights: the family quirks of `registry.Family` applied,
and where the weights come from.

Weights sources, in the order `locate_weights` tries them for a registry model:
- the tiny local models: built into the local data folder on first use;
- a copy staged in the data bucket under `models/{hf_id}/` (for example by `gcloud storage cp -r`),
  read through the bucket's volume where it is mounted (`data_mount`: `DATA_MOUNT`, the Cloud Run
  trainer's Cloud Storage FUSE volume, or on Vertex AI its own FUSE mount `/gcs/<bucket>`), else
  downloaded in parallel to a local cache;
- the Hugging Face Hub, with the user's token (Gemma repositories are gated).
`fetch_weights` also takes an explicit source: a local or mounted folder, a `gs://bucket/prefix`, or
a Hugging Face id.

Kept apart from the registry so that importing the registry never imports torch.
"""

from __future__ import annotations

import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from runtune.models.processors import gemma4_processor, has_torchvision
from runtune.models.registry import ModelSpec
from runtune.models.tiny import ensure_tiny_model, tiny_dir
from runtune.ports.blobs import BlobStore

log = logging.getLogger("runtune.models")

# Where the Cloud Run trainer job mounts the data bucket (infra/main.tf, local.data_mount_path).
DATA_MOUNT = Path("/mnt/runtune-data")
# Where Vertex AI custom training mounts the buckets its job's account may read (Cloud Storage FUSE).
VERTEX_MOUNT_ROOT = Path("/gcs")
# Bucket folder an operator stages base models in: `models/{hf_id}/config.json`, ...
STAGED_PREFIX = "models/"
DOWNLOAD_THREADS = 16


def resolve_weights(spec: ModelSpec, local_dir: Path) -> str:
    """Where `from_pretrained` finds the weights: a Hugging Face id, or the tiny model's folder (built
    on first use)."""
    if spec.is_tiny:
        return str(ensure_tiny_model(spec.id, tiny_dir(local_dir, spec.id)))
    assert spec.hf_id is not None
    return spec.hf_id


def data_mount(bucket: str, *, cloud_run: Path = DATA_MOUNT, vertex_root: Path = VERTEX_MOUNT_ROOT) -> Path:
    """Where this trainer sees the data bucket: the Cloud Run job's volume, or where a Vertex AI
    CustomJob mounts it (`/gcs/<bucket>`); the Cloud Run path (absent, so unused) elsewhere."""
    vertex = vertex_root / bucket
    return vertex if not cloud_run.is_dir() and vertex.is_dir() else cloud_run


def staged_prefix(spec: ModelSpec) -> str:
    return f"{STAGED_PREFIX}{spec.hf_id or spec.id}/"


def locate_weights(
    spec: ModelSpec,
    *,
    local_dir: Path,
    blobs: BlobStore | None = None,
    mount: Path = DATA_MOUNT,
    cache_dir: Path | None = None,
) -> str:
    """What `from_pretrained` loads for a registry model: a local folder, or a Hugging Face id."""
    if spec.is_tiny:
        return resolve_weights(spec, local_dir)
    mounted = mount / staged_prefix(spec)
    if (mounted / "config.json").is_file():
        log.info("weights from the mounted bucket", extra={"path": str(mounted)})
        return str(mounted)
    if blobs is not None and blobs.info(staged_prefix(spec) + "config.json") is not None:
        return str(download_prefix(blobs, staged_prefix(spec), _cache(cache_dir) / staged_prefix(spec)))
    assert spec.hf_id is not None
    return spec.hf_id


def fetch_weights(source: str, *, blobs_for_bucket: Any = None, cache_dir: Path | None = None) -> str:
    """An explicit source made loadable: a folder as is, `gs://bucket/prefix` downloaded (in parallel)
    to the cache, anything else taken for a Hugging Face id. `blobs_for_bucket(bucket)` gives the
    blob store of a bucket (by default the Cloud Storage adapter)."""
    if source.startswith("gs://"):
        bucket, _, prefix = source.removeprefix("gs://").partition("/")
        if blobs_for_bucket is None:
            from runtune.adapters.gcs import GcsBlobStore

            def blobs_for_bucket(name: str) -> BlobStore:
                return GcsBlobStore.for_bucket(None, name)  # type: ignore[arg-type]

        prefix = prefix.rstrip("/") + "/"
        return str(download_prefix(blobs_for_bucket(bucket), prefix, _cache(cache_dir) / bucket / prefix))
    if Path(source).expanduser().is_dir():
        return str(Path(source).expanduser())
    return source


def download_prefix(blobs: BlobStore, prefix: str, target: Path, *, threads: int = DOWNLOAD_THREADS) -> Path:
    """Every object under `prefix` into `target`, `threads` at a time; files already there with the
    right size are kept (a retried task does not download the model again)."""
    objects = [info for info in blobs.list(prefix) if not info.path.endswith("/")]
    if not objects:
        raise FileNotFoundError(f"nothing under '{prefix}'")
    target.mkdir(parents=True, exist_ok=True)

    def one(path: str, size: int) -> None:
        local = target / path[len(prefix) :]
        if local.is_file() and local.stat().st_size == size:
            return
        local.parent.mkdir(parents=True, exist_ok=True)
        # Into a temporary name first: a half-written file is never taken for a whole one.
        with tempfile.NamedTemporaryFile(dir=local.parent, prefix=f".{local.name}.", delete=False) as partial:
            pass
        try:
            blobs.download_file(path, Path(partial.name))
            Path(partial.name).replace(local)
        finally:
            Path(partial.name).unlink(missing_ok=True)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(one, info.path, info.size) for info in objects]:
            future.result()
    log.info("weights downloaded", extra={"prefix": prefix, "files": len(objects), "path": str(target)})
    return target


def _cache(cache_dir: Path | None) -> Path:
    return cache_dir or Path(tempfile.gettempdir()) / "runtune-weights"


def load_processor(spec: ModelSpec, path: str, *, token: str | None = None) -> Any:
    """The processor (vision models) or tokenizer (text models) that holds the chat template."""
    from transformers import AutoProcessor, AutoTokenizer

    if spec.modality == "text":
        return AutoTokenizer.from_pretrained(path, token=token)
    if spec.family.name == "gemma4" and not has_torchvision():
        return _gemma4_processor_from_parts(path, token)
    return AutoProcessor.from_pretrained(path, token=token)


def _gemma4_processor_from_parts(path: str, token: str | None) -> Any:
    import json

    from transformers import AutoTokenizer
    from transformers.models.gemma4.feature_extraction_gemma4 import Gemma4AudioFeatureExtractor
    from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil
    from transformers.utils import cached_file

    tokenizer = AutoTokenizer.from_pretrained(path, token=token)
    image_processor = Gemma4ImageProcessorPil.from_pretrained(path, token=token)
    feature_extractor = Gemma4AudioFeatureExtractor.from_pretrained(path, token=token)
    template_file = cached_file(path, "chat_template.jinja", token=token)
    config_file = cached_file(path, "processor_config.json", token=token, _raise_exceptions_for_missing_entries=False)
    extra = json.loads(Path(config_file).read_text()) if config_file else {}
    kwargs = {k: extra[k] for k in ("image_seq_length", "audio_seq_length", "audio_ms_per_token") if k in extra}
    return gemma4_processor(tokenizer, image_processor, feature_extractor, Path(template_file).read_text(), **kwargs)


def tokenizer_of(processor: Any) -> Any:
    return getattr(processor, "tokenizer", processor)


def model_class(spec: ModelSpec) -> Any:
    import transformers

    return getattr(transformers, spec.model_class)
