"""Tiny Gemma 3 / Gemma 4 models for the local platform and the tests.

Random weights, a byte-fallback BPE tokenizer trained on the spot, and the real transformers
model, processor and tokenizer classes with each family's real chat template, so the trainer loads
them through exactly the code that loads `google/gemma-3-4b-it`. They are small enough to train in
seconds on a laptop CPU.

    python -m runtune.models.tiny --out DIR   # builds all three into DIR/<model id>
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from runtune.models.spm import write_sentencepiece_model

log = logging.getLogger("runtune.models.tiny")

TINY_IDS = ("tiny-gemma-3-vision", "tiny-gemma-4-vision", "tiny-gemma-3-text")
VOCAB_SIZE = 1024
IMAGE_SIZE = 32  # pixels; the demo set is drawn at this size too
BUILD_MARKER = "runtune-tiny.json"
BUILD_VERSION = 5  # 5: tokenizer.model beside tokenizer.json (llama.cpp's converter reads it)
# The random weights' seed. With seed 0 the untrained Gemma 3 vision model happened to prefer the
# right label for two of the demo set's four colours (baseline accuracy 0.5); with this one every
# tiny model's label preference ignores the image (accuracy at chance, 0.25), as a model that has
# never seen the task should (tests/trainer checks it).
DEFAULT_SEED = 1
# Embeddings drawn wider than the published 0.02: with hidden size 64 and tied embeddings, 0.02 caps
# every logit near +-1.3, and adapters (which leave embeddings and norms frozen) could never make an
# answer likely. Real checkpoints' embeddings are far larger.
INIT_STD = 0.3

# The published Gemma 3 chat template (system prompt folded into the first user turn, images as
# <start_of_image>, text trimmed, `model` as the assistant's role).
GEMMA3_CHAT_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

# The Gemma 4 chat template's conversation part (tools left out): `<|turn>role ... <turn|>` turns, a
# system turn carrying `<|think|>` when thinking is on, thinking stripped from the model's earlier
# answers, and, when thinking is off, an empty thinking block after the generation prompt.
GEMMA4_CHAT_TEMPLATE = """{%- macro strip_thinking(text) -%}
    {%- set ns = namespace(result='') -%}
    {%- for part in text.split('<channel|>') -%}
        {%- if '<|channel>' in part -%}
            {%- set ns.result = ns.result + part.split('<|channel>')[0] -%}
        {%- else -%}
            {%- set ns.result = ns.result + part -%}
        {%- endif -%}
    {%- endfor -%}
    {{- ns.result | trim -}}
{%- endmacro -%}
{%- set loop_messages = messages -%}
{{- bos_token -}}
{%- if (enable_thinking is defined and enable_thinking) or messages[0]['role'] in ['system', 'developer'] -%}
    {{- '<|turn>system\n' -}}
    {%- if enable_thinking is defined and enable_thinking -%}
        {{- '<|think|>\n' -}}
    {%- endif -%}
    {%- if messages[0]['role'] in ['system', 'developer'] -%}
        {%- if messages[0]['content'] is string -%}
            {{- messages[0]['content'] | trim -}}
        {%- else -%}
            {{- messages[0]['content'][0]['text'] | trim -}}
        {%- endif -%}
        {%- set loop_messages = messages[1:] -%}
    {%- endif -%}
    {{- '<turn|>\n' -}}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
    {{- '<|turn>' + role + '\n' -}}
    {%- if message['content'] is string -%}
        {%- if role == 'model' -%}
            {{- strip_thinking(message['content']) -}}
        {%- else -%}
            {{- message['content'] | trim -}}
        {%- endif -%}
    {%- elif message['content'] is sequence -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'text' -%}
                {%- if role == 'model' -%}
                    {{- strip_thinking(item['text']) -}}
                {%- else -%}
                    {{- item['text'] | trim -}}
                {%- endif -%}
            {%- elif item['type'] == 'image' -%}
                {{- '<|image|>' -}}
            {%- elif item['type'] == 'audio' -%}
                {{- '<|audio|>' -}}
            {%- elif item['type'] == 'video' -%}
                {{- '<|video|>' -}}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{- '<turn|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|turn>model\n' -}}
    {%- if not enable_thinking | default(false) -%}
        {{- '<|channel>thought\n<channel|>' -}}
    {%- endif -%}
{%- endif -%}
"""

BASE_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
GEMMA3_NAMED = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
GEMMA3_OTHER = ["<start_of_turn>", "<end_of_turn>"]
GEMMA4_NAMED = {
    "boi_token": "<|image>",
    "eoi_token": "<image|>",
    "image_token": "<|image|>",
    "boa_token": "<|audio>",
    "eoa_token": "<audio|>",
    "audio_token": "<|audio|>",
}
GEMMA4_OTHER = ["<|turn>", "<turn|>", "<|channel>", "<channel|>", "<|think|>", "<|video|>"]
ALL_SPECIALS = [*BASE_SPECIALS, *GEMMA3_NAMED.values(), *GEMMA3_OTHER, *GEMMA4_NAMED.values(), *GEMMA4_OTHER]


def _corpus() -> list[str]:
    """Text the tokenizer learns its merges from: the demo set's prompts and labels, chat words."""
    from runtune.demo.shapes import CLASSES, COLOURS, PROMPT

    words = [
        "the a an is of and to in what which this that image picture photo shape colour color answer",
        "question label class one word describe caption summarise summary translate yes no hello thanks",
        "user model assistant system think thought reply please small large red green blue yellow",
        "the quick brown fox jumps over the lazy dog. A cat sat on the mat. Two plus two is four.",
    ]
    lines = [PROMPT, *CLASSES, *COLOURS, *words]
    return lines * 20


def train_tokenizer_files() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-fallback BPE in the Gemma tokenizer's layout (spaces as ▁, specials first)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    byte_tokens = [f"<0x{value:02X}>" for value in range(256)]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.pre_tokenizer = pre_tokenizers.Split(pattern="▁", behavior="merged_with_previous")
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=[*ALL_SPECIALS, *byte_tokens], show_progress=False
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges  # type: ignore[return-value]


# The language tower every tiny model shares (Gemma 4's adds its per-layer inputs and global heads):
# two layers, one sliding and one full, the specials' ids as BASE_SPECIALS orders them.
TEXT_TOWER: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "sliding_window": 64,
    "max_position_embeddings": 2048,
    "layer_types": ["sliding_attention", "full_attention"],
    "pad_token_id": 0,
    "eos_token_id": 1,
    "bos_token_id": 2,
    "initializer_range": INIT_STD,
}


def _tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]], named: dict[str, str], other: list[str]) -> Any:
    from transformers import GemmaTokenizer

    tokenizer = GemmaTokenizer(vocab=dict(vocab), merges=list(merges), extra_special_tokens=named)
    tokenizer.add_special_tokens({"additional_special_tokens": other}, replace_extra_special_tokens=False)
    return tokenizer


def _gemma3_text_config(vocab_size: int) -> Any:
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(vocab_size=vocab_size, **TEXT_TOWER)


def build_gemma3_text(out: Path, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
    from transformers import Gemma3ForCausalLM

    tokenizer = _tokenizer(vocab, merges, GEMMA3_NAMED, GEMMA3_OTHER)
    tokenizer.chat_template = GEMMA3_CHAT_TEMPLATE
    model = Gemma3ForCausalLM(_gemma3_text_config(len(tokenizer)))
    _save(out, model, tokenizer, "<end_of_turn>")


def build_gemma3_vision(out: Path, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor, SiglipVisionConfig
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    tokenizer = _tokenizer(vocab, merges, GEMMA3_NAMED, GEMMA3_OTHER)
    ids = tokenizer.convert_tokens_to_ids
    config = Gemma3Config(
        text_config=_gemma3_text_config(len(tokenizer)).to_dict(),
        vision_config=SiglipVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=IMAGE_SIZE,
            patch_size=8,
        ).to_dict(),
        mm_tokens_per_image=4,
        boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
        initializer_range=INIT_STD,
    )
    model = Gemma3ForConditionalGeneration(config)
    _wake_projector(model)
    image_processor = Gemma3ImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = Gemma3Processor(image_processor, tokenizer, chat_template=GEMMA3_CHAT_TEMPLATE, image_seq_length=4)
    _save(out, model, tokenizer, "<end_of_turn>", processor)


def build_gemma4_vision(out: Path, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
    from transformers import Gemma4Config, Gemma4ForConditionalGeneration
    from transformers.models.gemma4.configuration_gemma4 import Gemma4TextConfig, Gemma4VisionConfig
    from transformers.models.gemma4.feature_extraction_gemma4 import Gemma4AudioFeatureExtractor
    from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil

    tokenizer = _tokenizer(vocab, merges, GEMMA4_NAMED, GEMMA4_OTHER)
    ids = tokenizer.convert_tokens_to_ids
    text = Gemma4TextConfig(
        vocab_size=len(tokenizer) + 1,  # + <|video|>, which the processor adds
        vocab_size_per_layer_input=len(tokenizer) + 1,
        hidden_size_per_layer_input=16,
        global_head_dim=32,
        **TEXT_TOWER,
    )
    vision = Gemma4VisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=16,
        patch_size=4,
        pooling_kernel_size=2,
        position_embedding_size=64,
    )
    image_processor = Gemma4ImageProcessorPil(patch_size=4, max_soft_tokens=70, pooling_kernel_size=2)
    from runtune.models.processors import gemma4_processor

    processor = gemma4_processor(
        tokenizer, image_processor, Gemma4AudioFeatureExtractor(), GEMMA4_CHAT_TEMPLATE, image_seq_length=70
    )
    config = Gemma4Config(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        audio_config=None,
        boi_token_id=ids("<|image>"),
        eoi_token_id=ids("<image|>"),
        image_token_id=ids("<|image|>"),
        video_token_id=ids("<|video|>"),
        boa_token_id=ids("<|audio>"),
        eoa_token_index=ids("<audio|>"),
        audio_token_id=ids("<|audio|>"),
        initializer_range=INIT_STD,
    )
    model = Gemma4ForConditionalGeneration(config)
    _wake_projector(model)
    _save(out, model, tokenizer, "<turn|>", processor)


def _wake_projector(model: Any) -> None:
    """transformers initialises the vision-to-text projection to zeros (a pretrained checkpoint
    overwrites it); left so, every image would reach the language model as zeros."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            is_projection = any(part in name for part in ("multi_modal_projector", "embed_vision"))
            if is_projection and param.dim() >= 2 and not param.abs().sum():
                param.normal_(std=INIT_STD)


def _save(out: Path, model: Any, tokenizer: Any, end_of_turn: str, processor: Any = None) -> None:
    """Every tiny model ends alike: saved with its processor (a text model's: its tokenizer), its
    generation stopping at <eos> or the end-of-turn marker, as in the published checkpoints."""
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(end_of_turn)]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    (tokenizer if processor is None else processor).save_pretrained(out)


BUILDERS = {
    "tiny-gemma-3-vision": build_gemma3_vision,
    "tiny-gemma-4-vision": build_gemma4_vision,
    "tiny-gemma-3-text": build_gemma3_text,
}


def tiny_dir(local_dir: Path, model_id: str) -> Path:
    """The tiny model's folder under the local data folder."""
    return local_dir / "models" / model_id


def build_tiny_model(model_id: str, out: Path, *, seed: int = DEFAULT_SEED) -> Path:
    """Build one tiny model into `out` (atomically: a half-built folder is never left behind)."""
    import torch

    torch.manual_seed(seed)
    vocab, merges = train_tokenizer_files()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model_id}-", dir=out.parent))
    try:
        BUILDERS[model_id](staging, vocab, merges)
        write_sentencepiece_model(staging)
        (staging / BUILD_MARKER).write_text(json.dumps({"id": model_id, "version": BUILD_VERSION, "seed": seed}))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("tiny model built", extra={"model": model_id, "path": str(out)})
    return out


def ensure_tiny_model(model_id: str, out: Path) -> Path:
    marker = out / BUILD_MARKER
    if marker.exists() and json.loads(marker.read_text()).get("version") == BUILD_VERSION:
        return out
    return build_tiny_model(model_id, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the tiny local Gemma models")
    parser.add_argument("--out", type=Path, required=True, help="folder that receives one subfolder per model")
    parser.add_argument("--only", choices=TINY_IDS, action="append", help="build only these (repeatable)")
    args = parser.parse_args(argv)
    for model_id in args.only or TINY_IDS:
        path = build_tiny_model(model_id, args.out / model_id)
        print(f"{model_id}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
