"""Preview pages: what `GET /v1/datasets/{id}/samples` reads, written beside the shards at ingest time.

The blob port has no ranged reads, so samples are never read out of shards: each split gets pages
of `PREVIEW_PAGE_ROWS` rows (text, label, small thumbnails as data URLs), one small object each.
"""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from runtune.blob_layout import dataset_prefix
from runtune.datasets.canonical import Example
from runtune.datasets.images import NormalizedImage
from runtune.ports.blobs import BlobStore

PREVIEW_PAGE_ROWS = 100


def preview_path(uid: str, dataset_id: str, split: str, page: int) -> str:
    return f"{dataset_prefix(uid, dataset_id)}preview/{split}-{page:05d}.jsonl"


def sample_id(split: str, index: int) -> str:
    return f"{split}-{index:07d}"


def preview_row(split: str, index: int, example: Example, images: list[NormalizedImage]) -> dict[str, Any]:
    """What `GET /v1/datasets/{id}/samples` shows for one example: its text and small thumbnails."""
    image_index = 0
    messages = []
    for message in example.messages:
        content = []
        for part in message["content"]:
            if part["type"] == "image":
                content.append({"type": "image", "image_index": image_index})
                image_index += 1
            else:
                content.append({"type": "text", "text": part["text"]})
        messages.append({"role": message["role"], "content": content})
    return {
        "object": "dataset.sample",
        "id": sample_id(split, index),
        "split": split,
        "index": index,
        "messages": messages,
        "label": example.label,
        # A preference pair's non-preferred answer (text only); the preferred one ends `messages`.
        **(
            {"rejected": [{"role": m["role"], "content": m["content"]} for m in example.rejected]}
            if example.rejected
            else {}
        ),
        "images": [
            {"width": image.width, "height": image.height, "path": path, "thumbnail": image.thumbnail_data_url()}
            for image, path in zip(images, example.image_paths or [None] * len(images), strict=True)
        ],
    }


class PreviewWriter:
    """Pages of `PREVIEW_PAGE_ROWS` preview rows per split, so a page of samples is one small read.
    A full page is uploaded on a background thread while the next fills (at most one in flight);
    `close()` writes the last page and waits."""

    def __init__(self, blobs: BlobStore, uid: str, dataset_id: str, split: str) -> None:
        self._blobs, self._uid, self._dataset_id, self._split = blobs, uid, dataset_id, split
        self._lines: list[str] = []
        self._uploader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="preview-upload")
        self._upload: Future[None] | None = None
        self.rows = 0

    def add(self, example: Example, images: list[NormalizedImage]) -> None:
        self._lines.append(json.dumps(preview_row(self._split, self.rows, example, images)))
        self.rows += 1
        if len(self._lines) >= PREVIEW_PAGE_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        page = (self.rows - 1) // PREVIEW_PAGE_ROWS
        body = ("\n".join(self._lines) + "\n").encode()
        self._lines = []
        self._wait()
        # x-ndjson, not application/json: the storage emulator parses any application/json* body.
        self._upload = self._uploader.submit(
            self._blobs.upload_bytes,
            preview_path(self._uid, self._dataset_id, self._split, page),
            body,
            content_type="application/x-ndjson",
        )

    def close(self) -> None:
        try:
            self.flush()
            self._wait()
        finally:
            self._uploader.shutdown()

    def abort(self) -> None:
        self._uploader.shutdown(cancel_futures=True)

    def _wait(self) -> None:
        if self._upload is not None:
            upload, self._upload = self._upload, None
            upload.result()


def read_preview_page(blobs: BlobStore, uid: str, dataset_id: str, split: str, page: int) -> list[dict[str, Any]]:
    data = blobs.download_bytes(preview_path(uid, dataset_id, split, page))
    return [json.loads(line) for line in data.decode().splitlines() if line]
