"""A merged model as GGUF (llama.cpp, LM Studio) or as an Ollama folder, made by llama.cpp's own code.

    merged/ (safetensors, config, tokenizer.model)
      -> convert_hf_to_gguf.py --outtype f16            model-f16.gguf        (Python, llama.cpp's converter)
      -> llama_model_quantize (q8_0, q4_k_m)            model-q4_k_m.gguf     (C++, through llama-cpp-python)
      -> convert_hf_to_gguf.py --mmproj (vision models) mmproj-f16.gguf       (the vision projector)
      -> Ollama: the GGUF files plus a Modelfile (chat template, stop tokens)

The converter is the script that ships in llama-cpp-python's source distribution (pinned: Makefile
and jobs/convert/Dockerfile extract it from the same sdist the runtime is built from), run as a child
process through `runtune.gguf_converter` with that sdist's own `gguf-py` first on the path.

Large models: `split_max_size` splits the GGUF into shards (`model-f16-00001-of-00003.gguf`, which
llama.cpp loads from the first) and the quantizer keeps the split, so no file is larger than that;
on Cloud Run the output folder is the bucket's mount, where each file is held in memory only until
it is closed. Ollama's `create` reads a single file, so an Ollama folder is never split.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runtune.models.spm import SPM_FILE
from runtune.schemas.inference import Quantization

log = logging.getLogger("runtune.convert")

MODELFILE = "Modelfile"
CONVERTER_SCRIPT = "convert_hf_to_gguf.py"


# llama.cpp's `llama_ftype` values (include/llama.h): LLAMA_FTYPE_MOSTLY_Q8_0, ..._Q4_K_M.
_FTYPES = {Quantization.q8_0: 7, Quantization.q4_k_m: 15}


class ConversionError(RuntimeError):
    """The converter or the quantizer refused the model; the message says why (no secrets in it)."""


@dataclass(frozen=True)
class ConvertedFile:
    path: Path
    role: str  # "model" or "mmproj" or "modelfile"


def converter_available(converter_dir: Path) -> bool:
    return (converter_dir / CONVERTER_SCRIPT).is_file() and (converter_dir / "gguf-py" / "gguf").is_dir()


def is_vision_model(merged: Path) -> bool:
    config = json.loads((merged / "config.json").read_text())
    return "vision_config" in config


def to_gguf(
    merged: Path,
    out: Path,
    quantization: Quantization,
    *,
    converter_dir: Path,
    split_max_size: str | None = None,
    threads: int = 0,
    on_phase: Callable[[str], None] = lambda phase: None,
) -> list[ConvertedFile]:
    """Convert `merged` into `out`: the model's GGUF (split when `split_max_size` is given) and, for a
    vision model, its projector. The f16 intermediate of a quantized file is removed afterwards."""
    if not (merged / SPM_FILE).is_file():
        raise ConversionError(
            f"The merged model has no {SPM_FILE} (SentencePiece), which llama.cpp's converter reads a Gemma "
            "vocabulary from; models exported before GGUF support lack it: train the job again"
        )
    out.mkdir(parents=True, exist_ok=True)
    f16 = out / ("model-f16.gguf" if quantization is Quantization.f16 else ".model-f16.gguf")
    on_phase("converting")
    _run_converter(converter_dir, merged, f16, split_max_size=split_max_size)
    files: list[Path]
    if quantization is Quantization.f16:
        files = _split_files(f16)
    else:
        on_phase("quantizing")
        target = out / f"model-{quantization.value}.gguf"
        _quantize(f16, target, quantization, keep_split=split_max_size is not None, threads=threads)
        for intermediate in _split_files(f16):
            intermediate.unlink()
        files = _split_files(target)
    converted = [ConvertedFile(path, "model") for path in files]
    if is_vision_model(merged):
        on_phase("converting the vision projector")
        mmproj = out / "mmproj-f16.gguf"
        _run_converter(converter_dir, merged, mmproj, mmproj=True)
        converted.append(ConvertedFile(mmproj, "mmproj"))
    return converted


def to_ollama(
    merged: Path, out: Path, quantization: Quantization, *, converter_dir: Path, **options: object
) -> list[ConvertedFile]:
    """An Ollama folder: `ollama create NAME -f Modelfile` in it builds the model."""
    files = to_gguf(merged, out, quantization, converter_dir=converter_dir, split_max_size=None, **options)  # type: ignore[arg-type]
    model = next(file for file in files if file.role == "model")
    projector = next((file for file in files if file.role == "mmproj"), None)
    modelfile = out / MODELFILE
    modelfile.write_text(ollama_modelfile(merged, model.path.name, projector.path.name if projector else None))
    return [*files, ConvertedFile(modelfile, "modelfile")]


def ollama_modelfile(merged: Path, model_file: str, projector_file: str | None) -> str:
    """The Modelfile of a Gemma chat model: Ollama's Go template for Gemma's turns (the Jinja
    template does not run there), the end-of-turn stop, and the sampling defaults of its
    generation config when it has them."""
    end_of_turn = "<end_of_turn>"
    chat_format = merged / "chat_format.json"
    if chat_format.is_file():
        end_of_turn = json.loads(chat_format.read_text()).get("end_of_turn", end_of_turn)
    lines = [f"FROM ./{model_file}"]
    if projector_file:
        lines.append(f"FROM ./{projector_file}")
    lines += [
        'TEMPLATE """{{- range $i, $_ := .Messages }}',
        "{{- $last := eq (len (slice $.Messages $i)) 1 }}",
        '{{- if or (eq .Role "user") (eq .Role "system") }}<start_of_turn>user',
        "{{ .Content }}<end_of_turn>",
        "{{ if $last }}<start_of_turn>model",
        "{{ end }}",
        '{{- else if eq .Role "assistant" }}<start_of_turn>model',
        "{{ .Content }}{{ if not $last }}<end_of_turn>",
        "{{ end }}",
        "{{- end }}",
        '{{- end }}"""',
        f'PARAMETER stop "{end_of_turn}"',
    ]
    generation = merged / "generation_config.json"
    if generation.is_file():
        config = json.loads(generation.read_text())
        for name in ("temperature", "top_p", "top_k"):
            if isinstance(config.get(name), int | float):
                lines.append(f"PARAMETER {name} {config[name]}")
    return "\n".join(lines) + "\n"


def _run_converter(
    converter_dir: Path, merged: Path, outfile: Path, *, mmproj: bool = False, split_max_size: str | None = None
) -> None:
    command = [sys.executable, "-m", "runtune.gguf_converter", str(merged), "--outfile", str(outfile)]
    command += ["--outtype", "f16"]
    if mmproj:
        command.append("--mmproj")
    if split_max_size:
        command += ["--split-max-size", split_max_size]
    # The converter's own gguf-py (the same sdist), ahead of any installed `gguf`.
    path = [str(converter_dir / "gguf-py"), str(converter_dir), *sys.path]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "NO_LOCAL_GGUF": ""}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise ConversionError(f"llama.cpp's converter failed: {lines[-1] if lines else done.returncode}")
    log.info("converted", extra={"file": outfile.name, "mmproj": mmproj})


def _quantize(source: Path, target: Path, quantization: Quantization, *, keep_split: bool, threads: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = _FTYPES[quantization]
    params.nthread = threads
    shards = _split_files(source)
    # A split input keeps its split: llama.cpp then takes the output name as the shards' prefix (and
    # would name even a single file as a shard, so an unsplit one is written as itself).
    params.keep_split = keep_split and len(shards) > 1
    output = target.with_suffix("") if params.keep_split else target
    code = llama_cpp.llama_model_quantize(str(shards[0]).encode(), str(output).encode(), params)
    if code != 0:
        raise ConversionError(f"llama.cpp's quantizer failed ({quantization.value}, code {code})")
    log.info("quantized", extra={"file": target.name, "quantization": quantization.value})


def _split_files(path: Path) -> list[Path]:
    """`path` itself, or the shards the converter wrote in its place (`stem-00001-of-00003.gguf`)."""
    if path.is_file():
        return [path]
    shards = sorted(path.parent.glob(f"{path.stem}-*-of-*.gguf"))
    if not shards:
        raise ConversionError(f"no GGUF file was written for {path.name}")
    return shards
