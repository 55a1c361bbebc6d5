"""`/v1/vibe_checks`: the same prompts (and photos) to the base and the tuned model, side by side, kept."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from runtune.api.deps import CurrentUser, Pagination
from runtune.blob_layout import vibe_check_prefix, vibe_image_path
from runtune.errors import InvalidRequest
from runtune.owned import OwnedCollection
from runtune.ports.blobs import BlobStore
from runtune.schemas import ListPage
from runtune.schemas.common import new_id, now_ts
from runtune.schemas.inference import CreateVibeCheckRequest, VibeAnswer, VibeCheck, VibePrompt
from services.inference.deps import Inference

router = APIRouter(prefix="/v1/vibe_checks", tags=["inference"])


def _checks(request: Request) -> OwnedCollection[VibeCheck]:
    return OwnedCollection(request.app.state.store, "vibe_checks", VibeCheck, "vibe check")


def _messages(prompt: VibePrompt) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if prompt.image is not None:
        parts.append({"type": "image_url", "image_url": {"url": prompt.image}})
    parts.append({"type": "text", "text": prompt.prompt})
    return [{"role": "user", "content": parts}]


def _image_path(uid: str, check_id: str, index: int, content_type: str) -> str:
    extension = content_type.split("/", 1)[1].split("+", 1)[0] or "bin"
    return vibe_image_path(uid, check_id, index, extension)


def _decode_image(url: str, param: str) -> tuple[bytes, str]:
    """(bytes, content type) of a base64 image data URL."""
    head, _, data = url.partition(";base64,")
    content_type = head.removeprefix("data:")
    if not head.startswith("data:image/") or not data or not re.fullmatch(r"image/[a-z0-9.+-]{1,40}", content_type):
        raise InvalidRequest("Images must be base64 data URLs (data:image/...;base64,...)", param=param)
    try:
        return base64.b64decode(data, validate=True), content_type
    except binascii.Error:
        raise InvalidRequest("The image is not valid base64", param=param) from None


def _store_images(blobs: BlobStore, check: VibeCheck, images: dict[int, tuple[bytes, str]]) -> None:
    for index, (data, content_type) in images.items():
        path = _image_path(check.owner, check.id, index, content_type)
        blobs.upload_bytes(path, data, content_type=content_type)
        check.results[index].image_path = path


def _with_image_urls(check: VibeCheck, blobs: BlobStore, ttl_s: int) -> VibeCheck:
    expires_at = now_ts() + ttl_s
    for answer in check.results:
        # Only a path under the owner's own folder is signed, whatever the document says.
        if answer.image_path and answer.image_path.startswith(vibe_check_prefix(check.owner, check.id)):
            answer.image_url = blobs.signed_download_url(answer.image_path, expires=timedelta(seconds=ttl_s))
            answer.image_url_expires_at = expires_at
    return check


@router.post("", response_model=VibeCheck)
async def create_vibe_check(
    body: CreateVibeCheckRequest, request: Request, user: CurrentUser, inference: Inference
) -> VibeCheck:
    images = {
        i: _decode_image(prompt.image, f"prompts[{i}].image")
        for i, prompt in enumerate(body.prompts)
        if prompt.image is not None
    }
    tuned, _ = await inference.target(user.uid, body.model)
    # The chain's root base (a continued model's too): what the tuned adapter is served on.
    base_id = body.base_model or (tuned.job.base_model if tuned.job else tuned.spec.id)
    base_target, _ = await inference.target(user.uid, base_id, "base_model")

    async def both(prompt: VibePrompt) -> VibeAnswer:
        messages = _messages(prompt)
        base, answer = await asyncio.gather(
            inference.answer(base_target, messages, body.max_tokens, body.temperature, body.top_p),
            inference.answer(tuned, messages, body.max_tokens, body.temperature, body.top_p),
        )
        return VibeAnswer(prompt=prompt.prompt, image=prompt.image is not None, base=base, tuned=answer)

    results = await asyncio.gather(*(both(prompt) for prompt in body.prompts))
    check = VibeCheck(id=new_id("vibe"), owner=user.uid, model=body.model, base_model=base_id, results=list(results))
    await run_in_threadpool(_store_images, inference.blobs, check, images)
    await run_in_threadpool(_checks(request).create, check)
    return await run_in_threadpool(_with_image_urls, check, inference.blobs, _ttl(request))


def _ttl(request: Request) -> int:
    return request.app.state.settings.export_url_ttl_s


@router.get("", response_model=ListPage[VibeCheck])
def list_vibe_checks(
    request: Request, user: CurrentUser, page: Pagination, inference: Inference
) -> ListPage[VibeCheck]:
    found = _checks(request).list_owned(user.uid, limit=page.limit + 1, after=page.after)
    checks = [_with_image_urls(check, inference.blobs, _ttl(request)) for check in found]
    return ListPage[VibeCheck].from_overfetch(checks, page.limit)


@router.get("/{check_id}", response_model=VibeCheck)
def get_vibe_check(check_id: str, request: Request, user: CurrentUser, inference: Inference) -> VibeCheck:
    return _with_image_urls(_checks(request).get_owned(user.uid, check_id), inference.blobs, _ttl(request))
