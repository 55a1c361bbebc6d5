"""What a GGUF export costs: time and disk of each conversion on the tiny models.

    .venv/bin/python -m bench.gguf

Builds the tiny Gemma 3 text and vision models in a temporary folder (their merged form is the
base's safetensors: a merge changes values, not sizes), converts each to every quantization with
`runtune.gguf_export` (llama.cpp's converter in a child process, its quantizer in this one), and
prints seconds, the merged model's bytes and each output file's bytes. No baseline: the conversion
is llama.cpp's own code, so there is no peer to compare with; the figures say where the time goes
(the converter's start, torch's import, dominates on models this small).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from runtune import gguf_export
from runtune.models.tiny import build_tiny_model
from runtune.schemas.inference import Quantization
from runtune.settings import ConvertSettings

MODELS = ("tiny-gemma-3-text", "tiny-gemma-3-vision")


def main() -> None:
    logging.disable(logging.WARNING)
    converter = ConvertSettings.model_fields["gguf_converter_dir"].default
    print(f"{'model':22} {'weights':7} {'seconds':>7} {'merged B':>9}  output files (bytes)")
    with tempfile.TemporaryDirectory() as tmp:
        for model_id in MODELS:
            merged = build_tiny_model(model_id, Path(tmp) / model_id)
            size = sum(p.stat().st_size for p in merged.glob("*.safetensors"))
            for quantization in Quantization:
                out = Path(tmp) / f"out-{model_id}-{quantization.value}"
                started = time.monotonic()
                files = gguf_export.to_gguf(merged, out, quantization, converter_dir=converter)
                seconds = time.monotonic() - started
                sizes = ", ".join(f"{f.path.name} {f.path.stat().st_size}" for f in files)
                print(f"{model_id:22} {quantization.value:7} {seconds:7.1f} {size:9d}  {sizes}", flush=True)
                shutil.rmtree(out)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
