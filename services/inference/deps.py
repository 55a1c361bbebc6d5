"""Dependencies of the inference endpoints: what the lifespan built."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.inference.service import InferenceService


def inference_service(request: Request) -> InferenceService:
    return request.app.state.inference


Inference = Annotated[InferenceService, Depends(inference_service)]
