"""`python -m runtune.gguf_converter ARGS`: llama.cpp's `convert_hf_to_gguf.py`, with one adaptation.

transformers 5 saves a Gemma 3 vision tower's SigLIP weights as `vision_tower.embeddings...`; the
published checkpoints (and the converter's tensor map) name them `vision_tower.vision_model.
embeddings...`. The names are mapped back before the converter's own filter sees them; everything
else is the converter's code, unchanged. Run by `runtune.gguf_export` with the converter's folder
and its `gguf-py` on PYTHONPATH.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

_TOWER = "vision_tower."
_PUBLISHED_TOWER = "vision_tower.vision_model."


def published_name(name: str) -> str:
    if name.startswith(_TOWER) and not name.startswith(_PUBLISHED_TOWER):
        return _PUBLISHED_TOWER + name[len(_TOWER) :]
    return name


def _adapt_gemma3_vision_names() -> None:
    from conversion import gemma  # type: ignore[import-not-found]  # the converter's package

    model = gemma.Gemma3VisionModel
    original: Callable[[Any], Any] = model.filter_tensors.__func__  # type: ignore[attr-defined]

    def filter_tensors(cls: type, item: tuple[str, Callable[[], Any]]) -> Any:
        name, gen = item
        return original(cls, (published_name(name), gen))

    model.filter_tensors = classmethod(filter_tensors)  # type: ignore[method-assign]


def main() -> None:
    import convert_hf_to_gguf  # type: ignore[import-not-found]

    _adapt_gemma3_vision_names()
    sys.argv[0] = convert_hf_to_gguf.__file__
    convert_hf_to_gguf.main()


if __name__ == "__main__":
    main()
