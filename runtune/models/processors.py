"""Gemma 4's processor, built where torchvision may be missing: shared by the loader (real checkpoints
on the CPU) and the tiny-model builder, so neither imports the other for it."""

from __future__ import annotations

import importlib.util
from typing import Any


def has_torchvision() -> bool:
    return importlib.util.find_spec("torchvision") is not None


def gemma4_processor(
    tokenizer: Any, image_processor: Any, feature_extractor: Any, chat_template: str, **kwargs: Any
) -> Any:
    """A Gemma4Processor, also where torchvision is missing.

    Gemma4Processor insists on a video processor, and the real one needs torchvision (absent from
    the CPU environment, present in the GPU image). Runtune never trains on video, so without
    torchvision a plain `BaseVideoProcessor` stands in; images and text are processed by the real code.
    """
    from transformers import Gemma4Processor

    if has_torchvision():
        from transformers.models.gemma4.video_processing_gemma4 import Gemma4VideoProcessor

        return Gemma4Processor(
            feature_extractor, image_processor, tokenizer, Gemma4VideoProcessor(), chat_template, **kwargs
        )
    from transformers.video_processing_utils import BaseVideoProcessor

    class _Gemma4Processor(Gemma4Processor):
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument_name == "video_processor":
                return type(argument)
            return super().check_argument_for_proper_class(argument_name, argument)

    processor = _Gemma4Processor(
        feature_extractor, image_processor, tokenizer, BaseVideoProcessor(), chat_template, **kwargs
    )
    processor.__class__.__name__ = "Gemma4Processor"  # what save_pretrained records
    return processor
