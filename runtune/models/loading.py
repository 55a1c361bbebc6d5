"""Loading a registry model's processor and weights: the family quirks of `registry.Family` applied.

Kept apart from the registry so that importing the registry never imports torch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from runtune.models.registry import ModelSpec


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
