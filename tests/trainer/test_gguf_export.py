"""GGUF exports, checked by llama.cpp itself: a tuned tiny Gemma 3 text model converted by llama.cpp's
converter and run by llama.cpp's runtime (llama-cpp-python) predicts what the transformers model
predicts; the quantized files load and answer; the vision model's GGUF and projector are read back
with the converter's own reader; an Ollama folder holds what `ollama create` reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from runtune import gguf_export
from runtune.models import registry
from runtune.models.loading import load_processor, model_class, resolve_weights
from runtune.models.spm import SPM_FILE
from runtune.schemas.inference import Quantization
from runtune.settings import ConvertSettings
from runtune.training import export
from runtune.training import model as setup

CONVERTER = ConvertSettings.model_fields["gguf_converter_dir"].default
PROMPTS = ["What colour is this shape? Answer with one word.", "the quick brown fox", "hello, describe a cat"]


def _merged(local_dir: Path, model_id: str, out: Path) -> Path:
    """The base with a random LoRA adapter merged in (a tuned model, as export_merged writes it)."""
    from peft import LoraConfig, get_peft_model

    spec = registry.get(model_id)
    weights = resolve_weights(spec, local_dir)
    torch.manual_seed(7)
    base = model_class(spec).from_pretrained(weights, dtype=torch.float32)
    targets = setup.lora_targets(base, spec, vision_tower=False)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False, task_type="CAUSAL_LM")
    merged = get_peft_model(base, config).merge_and_unload()
    # llama.cpp takes two things of Gemma 3's layout from the published models rather than from the
    # config: attention scaled by head_dim ** -0.5 (query_pre_attn_scalar equals head_dim in 1B, 4B
    # and 12B) and every sixth layer global. The tiny models keep transformers' defaults (256 for a
    # head_dim of 32; two layers, the second global), so this one is given the published layout: the
    # reference below is loaded from these files, so both sides compute the same model.
    text = merged.config.get_text_config()
    text.query_pre_attn_scalar = text.head_dim
    text.layer_types = [
        "full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(text.num_hidden_layers)
    ]
    merged.to(torch.bfloat16).save_pretrained(out)
    load_processor(spec, weights).save_pretrained(out)
    export.copy_sentencepiece(weights, out)
    return out


@pytest.fixture(scope="module")
def text_model(local_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _merged(local_dir, "tiny-gemma-3-text", tmp_path_factory.mktemp("merged") / "text")


def _llama(path: Path, **options: Any) -> Any:
    import llama_cpp

    return llama_cpp.Llama(str(path), n_ctx=256, n_threads=1, verbose=False, **options)


def _prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    messages = [{"role": "user", "content": prompt}]
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False))


def test_the_f16_gguf_predicts_what_the_transformers_model_predicts(text_model: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (text_model / SPM_FILE).is_file(), "the merged export carries the base's tokenizer.model"
    (gguf,) = gguf_export.to_gguf(text_model, tmp_path, Quantization.f16, converter_dir=CONVERTER)
    assert gguf.path.name == "model-f16.gguf" and gguf.role == "model"
    tokenizer = AutoTokenizer.from_pretrained(text_model)
    hf = AutoModelForCausalLM.from_pretrained(text_model, dtype=torch.float32).eval()
    llm = _llama(gguf.path, logits_all=True)
    for prompt in PROMPTS:
        ids = _prompt_ids(tokenizer, prompt)
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        # llama.cpp reads the vocabulary from the GGUF: it tokenizes the rendered prompt as transformers does.
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids, prompt
        with torch.no_grad():
            expected = hf(torch.tensor([ids])).logits[0].numpy()
        llm.reset()
        llm.eval(ids)
        got = np.array(llm.scores[: len(ids)])
        assert got.shape == expected.shape
        # Every position's next-token choice, and the logits within float16's precision.
        assert (got.argmax(-1) == expected.argmax(-1)).all(), prompt
        assert np.abs(got - expected).max() <= 0.05 * np.abs(expected).max(), prompt
        want = hf.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False)[0][len(ids) :].tolist()
        greedy = []
        for token in llm.generate(ids, top_k=1, temp=0.0, reset=True):
            greedy.append(token)
            if len(greedy) == len(want):
                break
        assert greedy == want, prompt


def test_a_split_q8_0_gguf_loads_from_its_first_shard(text_model: Path, tmp_path: Path) -> None:
    files = gguf_export.to_gguf(text_model, tmp_path, Quantization.q8_0, converter_dir=CONVERTER, split_max_size="100K")
    names = [file.path.name for file in files]
    assert len(names) >= 2 and names[0] == f"model-q8_0-00001-of-{len(names):05d}.gguf", names
    assert sorted(p.name for p in tmp_path.iterdir()) == names, "no f16 intermediate left behind"
    assert sum(file.path.stat().st_size for file in files) < 2 * sum(t.numel() for t in _tensors(text_model))
    assert _field(_reader(files[0].path), "general.file_type") == 7  # LLAMA_FTYPE_MOSTLY_Q8_0
    llm = _llama(files[0].path)
    assert llm.create_completion("hello", max_tokens=2, temperature=0.0)["usage"]["completion_tokens"] >= 1


def test_the_vision_model_converts_with_its_projector(local_dir: Path, tmp_path: Path) -> None:
    merged = _merged(local_dir, "tiny-gemma-3-vision", tmp_path / "merged")
    files = gguf_export.to_gguf(merged, tmp_path / "out", Quantization.f16, converter_dir=CONVERTER)
    assert [(file.path.name, file.role) for file in files] == [
        ("model-f16.gguf", "model"),
        ("mmproj-f16.gguf", "mmproj"),
    ]
    model, projector = (_reader(file.path) for file in files)
    assert _field(model, "general.architecture") == "gemma3"
    assert _field(projector, "general.architecture") == "clip"
    assert _field(projector, "clip.projector_type") == "gemma3"
    vision = [t for t in projector.tensors if t.name.startswith("v.")]
    # Every SigLIP tensor the published checkpoints carry (the pooling head is not one of them).
    tower = [n for n in _names(merged) if n.startswith("vision_tower.") and ".head." not in n]
    assert len(vision) == len(tower) and any(t.name.startswith("mm.") for t in projector.tensors)


def test_an_ollama_folder_has_a_q4_k_m_gguf_that_answers_and_a_modelfile(text_model: Path, tmp_path: Path) -> None:
    files = gguf_export.to_ollama(text_model, tmp_path, Quantization.q4_k_m, converter_dir=CONVERTER)
    assert [(file.path.name, file.role) for file in files] == [
        ("model-q4_k_m.gguf", "model"),
        ("Modelfile", "modelfile"),
    ]
    assert _field(_reader(files[0].path), "general.file_type") == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    answer = _llama(files[0].path).create_completion("the quick brown", max_tokens=4, temperature=0.0)
    assert answer["usage"]["completion_tokens"] >= 1
    modelfile = (tmp_path / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./model-q4_k_m.gguf\n")
    assert 'PARAMETER stop "<end_of_turn>"' in modelfile and "<start_of_turn>model" in modelfile


def test_a_merged_model_without_tokenizer_model_is_refused_by_name(text_model: Path, tmp_path: Path) -> None:
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(text_model, bare)
    (bare / SPM_FILE).unlink()
    with pytest.raises(gguf_export.ConversionError, match=r"no tokenizer\.model"):
        gguf_export.to_gguf(bare, tmp_path / "out", Quantization.f16, converter_dir=CONVERTER)


def _reader(path: Path) -> Any:
    from gguf import GGUFReader

    return GGUFReader(path)


def _field(reader: Any, name: str) -> Any:
    field = reader.fields[name]
    value = field.parts[field.data[0]]
    return bytes(value).decode() if value.dtype == np.uint8 else value.tolist()[0]


def _tensors(folder: Path) -> list[torch.Tensor]:
    from safetensors.torch import load_file

    return [t for path in folder.glob("*.safetensors") for t in load_file(path).values()]


def _names(folder: Path) -> list[str]:
    from safetensors import safe_open

    names: list[str] = []
    for path in folder.glob("*.safetensors"):
        with safe_open(path, "pt") as handle:
            names += list(handle.keys())
    return names
