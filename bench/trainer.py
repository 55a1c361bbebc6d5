"""Training and evaluation throughput and peak memory: Runtune's recipe against TRL's SFTTrainer
configured like the published Cloud Run fine-tuning script, and TRL at Runtune's configuration, in one run.

    .venv/bin/python -m bench.trainer                      # CPU smoke test, tiny Gemma 3 vision (~1-2 min)
    python -m bench.trainer --real-architecture            # GPU: the Gemma 3 4B architecture, random weights

Each configuration runs in a fresh child process, so its peak memory is its own (GPU: the allocator's
peak; CPU: the process's peak resident memory). All train the same QLoRA adapters (NF4 with double
quantisation, LoRA rank 16 on every linear layer of the language model, gradient checkpointing) on
the same examples with the same effective batch (16), and evaluate the same held-out examples:

- `TRL SFTTrainer, published recipe`: TRL's own trainer (`pip install runtune[bench]` pins it; not a
  platform dependency) configured as the published Cloud Run script configures it: batch 1 with 16
  accumulation steps, the script's collator (every sample's image decoded, chat template rendered and
  processor run inside the training loop; loss on every non-padding, non-image token), peft's
  `prepare_model_for_kbit_training`, constant learning rate 2e-4, gradient norm 0.3, fused AdamW on
  the GPU. Evaluation: batched greedy generation of up to 128 new tokens, a label counted when its
  name is a substring of the answer.
- `TRL SFTTrainer, Runtune's batch and loss`: the same trainer with Runtune's configuration: batches
  of 8 with 2 accumulation steps and the loss on the answer tokens only (Runtune's encoding of each
  batch, still inside TRL's loop). Against the recipe row: what configuration gives; against
  `runtune`: what Runtune's own code gives. Evaluation: answer-length generation.
- `runtune`, the recipe's own pieces (runtune.training): images processed once before training,
  batches of 8 grouped by length and padded to a multiple of 8, 2 accumulation steps, loss on the
  answer tokens only with logits computed there alone, frozen weights left in their dtype, 8-bit
  paged AdamW on the GPU. Evaluation: label scoring (one prefill per example, every label continued
  from its cache).

Random weights never stop generating, so the recipe's evaluation always runs its 128 tokens; the
line "TRL recipe, answer-length generation" shows the best case a trained model would give it (it
stops after the longest label).

`--real-architecture` builds `google/gemma-3-4b-it`'s architecture (SigLIP 896 px vision tower, 34
language layers, the 262k vocabulary) with random weights, so no download is needed; the tokenizer
and chat template are the tiny models', the image processor the real one at 896 px. Targets
(issue 4, on a GPU): training samples/s >= 1.5x the baseline's at no more peak memory, and
label-scoring evaluation >= 5x the baseline's generation-based evaluation.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# The Oxford-IIIT Pet breeds: the published recipe's label set (37 classes).
PET_BREEDS = (
    "Abyssinian", "american bulldog", "american pit bull terrier", "basset hound", "beagle", "Bengal",
    "Birman", "Bombay", "boxer", "British Shorthair", "chihuahua", "Egyptian Mau", "english cocker spaniel",
    "english setter", "german shorthaired", "great pyrenees", "havanese", "japanese chin", "keeshond",
    "leonberger", "Maine Coon", "miniature pinscher", "newfoundland", "Persian", "pomeranian", "pug",
    "Ragdoll", "Russian Blue", "saint bernard", "samoyed", "scottish terrier", "shiba inu", "Siamese",
    "Sphynx", "staffordshire bull terrier", "wheaten terrier", "yorkshire terrier",
)  # fmt: skip
EFFECTIVE_BATCH = 16
BASELINE_MAX_NEW_TOKENS = 128


@dataclass
class Result:
    name: str
    train_samples: int = 0
    train_seconds: float = 0.0
    prepare_seconds: float = 0.0  # runtune: encoding the examples (images included) once
    eval_samples: int = 0
    eval_seconds: float = 0.0
    peak_memory_gib: float = 0.0  # training
    eval_peak_memory_gib: float = 0.0
    accuracy: float = 0.0
    notes: str = ""  # the speed switches' events (applied, or fallen back and why); an error

    @property
    def train_samples_per_s(self) -> float:
        seconds = self.train_seconds + self.prepare_seconds
        return self.train_samples / seconds if seconds else 0.0

    @property
    def eval_samples_per_s(self) -> float:
        return self.eval_samples / self.eval_seconds if self.eval_seconds else 0.0


# -- the model and the data ------------------------------------------------------------------------


def real_architecture(out: Path, *, text_layers: int = 34, vision_layers: int = 27, image_size: int = 896) -> Path:
    """`google/gemma-3-4b-it`'s architecture with random bfloat16 weights, saved to `out` with a
    processor (the tiny models' tokenizer and chat template, the real image processor)."""
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor, SiglipVisionConfig
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    from runtune.models.tiny import GEMMA3_CHAT_TEMPLATE, GEMMA3_NAMED, GEMMA3_OTHER, _tokenizer, train_tokenizer_files

    tokenizer = _tokenizer(*train_tokenizer_files(), GEMMA3_NAMED, GEMMA3_OTHER)
    ids = tokenizer.convert_tokens_to_ids
    pattern = ["sliding_attention"] * 5 + ["full_attention"]
    patch = 14
    config = Gemma3Config(
        text_config={
            "vocab_size": 262_208,
            "hidden_size": 2560,
            "intermediate_size": 10_240,
            "num_hidden_layers": text_layers,
            "num_attention_heads": 8,
            "num_key_value_heads": 4,
            "head_dim": 256,
            "query_pre_attn_scalar": 256,
            "sliding_window": 1024,
            "max_position_embeddings": 131_072,
            "layer_types": [pattern[i % 6] for i in range(text_layers)],
            "rope_parameters": {
                "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
            },
            "pad_token_id": 0,
            "eos_token_id": 1,
            "bos_token_id": 2,
        },
        vision_config=SiglipVisionConfig(
            hidden_size=1152,
            intermediate_size=4304,
            num_hidden_layers=vision_layers,
            num_attention_heads=16,
            image_size=image_size,
            patch_size=patch,
            vision_use_head=False,
        ).to_dict(),
        mm_tokens_per_image=256,
        boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = Gemma3ForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, ids("<end_of_turn>")]
    model.save_pretrained(out)
    del model
    image_processor = Gemma3ImageProcessorPil(size={"height": image_size, "width": image_size})
    processor = Gemma3Processor(image_processor, tokenizer, chat_template=GEMMA3_CHAT_TEMPLATE, image_seq_length=256)
    processor.save_pretrained(out)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def examples(count: int, split: str, labels: tuple[str, ...]) -> list[Any]:
    """Demo-set images, relabelled with `labels` (round robin): the answers' lengths and the label set's
    size are the published recipe's; what the images show does not matter to throughput."""
    from runtune.datasets.canonical import Example
    from runtune.demo import shapes

    drawn = shapes.examples(split, count, seed=7)
    relabelled = []
    for index, item in enumerate(drawn):
        label = labels[index % len(labels)]
        messages = [item.messages[0], {"role": "assistant", "content": [{"type": "text", "text": label}]}]
        relabelled.append(Example(messages=messages, images=item.images, label=label))
    return relabelled


# -- the two configurations -----------------------------------------------------------------------


def _reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _peak_gib() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 1024**3
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _setup(
    model_id: str, weights: str, *, for_runtune: bool, switches: dict[str, Any] | None = None
) -> tuple[Any, Any, Any]:
    import torch

    from runtune.models import registry
    from runtune.models.loading import load_processor
    from runtune.schemas.jobs import TrainConfig
    from runtune.training import model as setup
    from runtune.training.chat import ChatFormat

    spec = registry.get(model_id)
    config = TrainConfig(
        job_id="bench",
        owner="bench",
        model=model_id,
        dataset_id="bench",
        batch_size=EFFECTIVE_BATCH // 2 if for_runtune else 1,
        gradient_accumulation_steps=2 if for_runtune else EFFECTIVE_BATCH,
        learning_rate=2e-4,
        lora_dropout=0.05,
        **(switches or {}),
    )
    torch.manual_seed(0)
    processor = load_processor(spec, weights)
    base = setup.load_base(spec, weights, config.method)
    if for_runtune:
        model = setup.prepare(base, config)
    else:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        base = prepare_model_for_kbit_training(
            base, use_gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
        targets = setup.lora_targets(base, spec, vision_tower=False)
        lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=targets, task_type="CAUSAL_LM")
        model = get_peft_model(base, lora)
    return ChatFormat(spec, processor), model, config


# The trainer's speed switches (`runtune.speed` job options and `method`), one row each on top of the
# `runtune` row (QLoRA): what each gives on this machine. On a CPU the GPU-only ones fall back and say
# so (their row then measures the fallback, which is the wiring check).
SWITCH_ROWS: dict[str, dict[str, Any]] = {
    "runtune, bf16 LoRA (no QLoRA)": {"method": "lora"},
    "runtune, bf16 LoRA + bf16 adapters": {"method": "lora", "bf16_adapters": True},
    "runtune + Liger kernels": {"liger_kernels": True},
    "runtune + token-budget batches": {"batch_tokens": "budget"},  # 16 rows of the median padded length
    "runtune + torch.compile": {"torch_compile": True},
}


def run_runtune(
    model_id: str,
    weights: str,
    train: list[Any],
    held_out: list[Any],
    labels: list[str],
    *,
    name: str = "runtune",
    switches: dict[str, Any] | None = None,
    evaluate: bool = True,
) -> Result:

    from runtune.training import data, evaluation, loop
    from runtune.training import model as setup

    switches = dict(switches or {})
    budget = switches.pop("batch_tokens", None)
    fmt, model, config = _setup(model_id, weights, for_runtune=True, switches=switches)
    result = Result(name)
    events = setup.speed_switches(model, config)
    result.notes = "; ".join(f"{level}: {text}" for level, text in events)
    optimizer = setup.optimizer(model, config)
    steps = len(train) // EFFECTIVE_BATCH
    scheduler = setup.scheduler(optimizer, config, steps + 1)
    _reset_peak()
    started = time.perf_counter()
    encoded = data.encode_all(fmt, train, config.max_length).examples
    result.prepare_seconds = time.perf_counter() - started
    lengths = [len(e) for e in encoded]
    if budget is not None:
        padded = sorted(-(-n // 8) * 8 for n in lengths)[len(lengths) // 2]
        tokens = 2 * config.batch_size * padded
        batches = data.token_batches(lengths, tokens, config.batch_size * data.TOKEN_BATCH_FACTOR, config.seed, 0)
        result.notes = f"batches of at most {tokens} padded tokens: {len(batches)} batches of {len(lengths)}"
    else:
        batches = data.epoch_batches(lengths, config.batch_size, config.seed, 0)
    groups = [batches[i : i + 2] for i in range(0, len(batches), 2)]

    def step(group: list[list[int]]) -> int:
        stats = loop.train_step(
            model,
            [[encoded[i] for i in batch] for batch in group],
            optimizer=optimizer,
            scheduler=scheduler,
            pad_id=fmt.tokenizer.pad_token_id,
            pad_to_multiple_of=8,
            max_grad_norm=1.0,
        )
        return stats.samples

    step(groups[0])  # warm-up (kernels, allocator, compilation), not timed
    _sync()
    started = time.perf_counter()
    # The steps after the warm-up, as the baseline times them: as many examples (by token budget,
    # fewer steps of more rows).
    index = 1
    while result.train_samples < steps * EFFECTIVE_BATCH:
        result.train_samples += step(groups[index % len(groups)])
        index += 1
    _sync()
    result.train_seconds = time.perf_counter() - started
    result.peak_memory_gib = _peak_gib()
    if not evaluate:
        return result
    _reset_peak()
    model.eval()
    evaluation.evaluate_classification(model, fmt, held_out[:2], labels, with_generation=False)  # warm-up
    _sync()
    started = time.perf_counter()
    report = evaluation.evaluate_classification(model, fmt, held_out, labels, with_generation=False)
    _sync()
    result.eval_seconds = time.perf_counter() - started
    result.eval_samples = len(held_out)
    result.accuracy = report["label_scoring"]["accuracy"]
    result.eval_peak_memory_gib = _peak_gib()
    return result


def _baseline_collate(fmt: Any, batch: list[Any]) -> dict[str, Any]:
    """The published script's collator: render each conversation with the chat template, run the
    processor on text and images, label every token but padding and image tokens."""
    from runtune.training.chat import decode_images

    texts = [fmt.render(e.messages, generation_prompt=False) for e in batch]
    images = [decode_images(e) for e in batch] if fmt.spec.modality == "vision" else None
    if images:
        features = fmt.processor(text=texts, images=images, padding=True, return_tensors="pt")
    else:
        features = fmt.tokenizer(texts, padding=True, return_tensors="pt")
    labels = features["input_ids"].clone()
    labels[features["attention_mask"] == 0] = -100
    for key in ("boi_token", "image_token", "eoi_token"):
        token = getattr(fmt.tokenizer, key, None)
        if token:
            labels[labels == fmt.tokenizer.convert_tokens_to_ids(token)] = -100
    features["labels"] = labels
    return dict(features)


def _substring_label(answer: str, labels: list[str]) -> str | None:
    said = answer.lower()
    return next((label for label in labels if label.lower() in said), None)


def _generate_eval(
    model: Any, fmt: Any, held_out: list[Any], labels: list[str], max_new_tokens: int
) -> tuple[float, float]:
    """The recipe's evaluation: batched greedy generation (8 a batch), a label counted when its name
    is a substring of the answer. Seconds and accuracy."""
    import torch
    from transformers import GenerationConfig

    from runtune.training.chat import decode_images
    from runtune.training.evaluation import _device, left_pad, prompt_and_answer

    model.eval()
    tokenizer = fmt.tokenizer
    device = _device(model)
    generation = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        min_new_tokens=max_new_tokens,  # random weights stop at random: every row runs the budget
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=None,
    )
    correct = 0
    _sync()
    started = time.perf_counter()
    for start in range(0, len(held_out), 8):
        group = held_out[start : start + 8]
        prompts = [fmt.encode_prompt(prompt_and_answer(e)[0], decode_images(e)) for e in group]
        batch = {k: v.to(device) for k, v in left_pad(prompts, tokenizer.pad_token_id).items()}
        with torch.no_grad():
            output = model.generate(**batch, generation_config=generation)
        answers = tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        correct += sum(_substring_label(a, labels) == e.label for a, e in zip(answers, group, strict=True))
    _sync()
    return time.perf_counter() - started, correct / len(held_out)


def run_trl(
    model_id: str,
    weights: str,
    train: list[Any],
    held_out: list[Any],
    labels: list[str],
    answer_tokens: int,
    *,
    as_runtune: bool,
    recipe_tokens: int = BASELINE_MAX_NEW_TOKENS,
) -> list[Result]:
    """TRL's `SFTTrainer` (the `bench` extra pins it). `as_runtune=False`: as the published recipe
    configures it (batch 1 x 16 accumulation steps, its collator: every sample processed in the loop,
    loss on every non-padding, non-image token; peft's k-bit preparation, gradient checkpointing,
    constant learning rate 2e-4 with 3% warm-up, gradient norm 0.3, fused AdamW on the GPU).
    `as_runtune=True`: the same trainer with Runtune's micro-batch (8), effective batch (16) and
    answer-only loss (Runtune's encoding and collation of each batch, still in the loop), so the gap
    to `runtune` is Runtune's own code, not its configuration."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from runtune.training import data

    fmt, model, _ = _setup(model_id, weights, for_runtune=False)
    name = "TRL SFTTrainer, Runtune's batch and loss" if as_runtune else "TRL SFTTrainer, published recipe"
    result = Result(name)
    micro = EFFECTIVE_BATCH // 2 if as_runtune else 1
    steps = len(train) // EFFECTIVE_BATCH
    pad_id = fmt.tokenizer.pad_token_id

    def collator(rows: list[dict[str, Any]]) -> dict[str, Any]:
        batch = [train[row["index"]] for row in rows]
        if as_runtune:
            return data.collate([fmt.encode_for_training(e) for e in batch], pad_id)
        return _baseline_collate(fmt, batch)

    marks: list[float] = []

    class Clock(TrainerCallback):  # the first optimizer step is the warm-up, as for `runtune`
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            _sync()
            marks.append(time.perf_counter())

    gpu = torch.cuda.is_available()
    with tempfile.TemporaryDirectory(prefix="bench-trl-") as out:
        config = SFTConfig(
            output_dir=out,
            max_steps=steps + 1,
            per_device_train_batch_size=micro,
            gradient_accumulation_steps=EFFECTIVE_BATCH // micro,
            gradient_checkpointing=True,
            gradient_checkpointing_kwargs={"use_reentrant": False},
            learning_rate=2e-4,
            lr_scheduler_type="constant",
            warmup_steps=0.03,  # a ratio (transformers 5: `warmup_steps` below 1)
            max_grad_norm=1.0 if as_runtune else 0.3,
            optim="adamw_torch_fused" if gpu else "adamw_torch",
            bf16=gpu,
            use_cpu=not gpu,
            logging_steps=10**6,
            save_strategy="no",
            report_to="none",
            remove_unused_columns=False,
            dataset_text_field="",
            dataset_kwargs={"skip_prepare_dataset": True},
            max_length=None,
            dataloader_num_workers=0,
            seed=0,
        )
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_dict({"index": list(range(len(train)))}),
            data_collator=collator,
            processing_class=fmt.processor,
            callbacks=[Clock()],
        )
        _reset_peak()
        trainer.train()
    result.train_seconds = marks[-1] - marks[0]
    result.train_samples = (len(marks) - 1) * EFFECTIVE_BATCH
    result.peak_memory_gib = _peak_gib()
    _generate_eval(model, fmt, held_out[:8], labels, 2)  # warm-up
    _reset_peak()
    budget = answer_tokens if as_runtune else recipe_tokens
    result.eval_seconds, result.accuracy = _generate_eval(model, fmt, held_out, labels, budget)
    result.eval_peak_memory_gib = _peak_gib()
    result.eval_samples = len(held_out)
    if as_runtune:
        return [result]
    short = Result("TRL recipe, answer-length generation", eval_samples=len(held_out))
    short.eval_seconds, short.accuracy = _generate_eval(model, fmt, held_out, labels, answer_tokens)
    return [result, short]


def _run_kind(
    kind: str, args: dict[str, Any], train: list[Any], held_out: list[Any], labels: list[str]
) -> list[Result]:
    if kind == "runtune":
        return [run_runtune(args["model_id"], args["weights"], train, held_out, labels)]
    if kind.startswith("switch:"):
        name = kind.removeprefix("switch:")
        try:
            row = run_runtune(
                args["model_id"], args["weights"], train[: args["switch_train"]], held_out, labels,
                name=name, switches=SWITCH_ROWS[name], evaluate=False,
            )  # fmt: skip
        except Exception as exc:  # one switch failing (a kernel on this GPU) leaves the others' rows
            row = Result(name, notes=f"error: {exc!r}"[:500])
        finally:
            _release()
        return [row]
    return run_trl(
        args["model_id"],
        args["weights"],
        train,
        held_out,
        labels,
        args["answer_tokens"],
        as_runtune=kind == "trl-runtune",
        recipe_tokens=args["recipe_tokens"],
    )


def _release() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_here(kinds: list[str], args: dict[str, Any]) -> list[Result]:
    """`kinds` one after another in this process (GPU peaks reset between them; a CPU's do not)."""
    global EFFECTIVE_BATCH
    EFFECTIVE_BATCH = args["effective_batch"]  # this process's (the smoke's is smaller)
    labels = list(args["labels"])
    train = examples(args["train"], "train", tuple(labels))
    held_out = examples(args["eval"], "test", tuple(labels))
    results: list[Result] = []
    for kind in kinds:
        results += _run_kind(kind, args, train, held_out, labels)
        _release()
    return results


def _child(kinds: list[str], args: dict[str, Any], queue: Any) -> None:
    try:
        results = run_here(kinds, args)
        queue.put(("ok", [asdict(r) | {"name": r.name} for r in results]))
    except BaseException as exc:  # reported to the parent, which prints it
        import traceback

        queue.put(("error", f"{kinds}: {exc!r}\n{traceback.format_exc()}"))


def run_in_child(kinds: list[str], args: dict[str, Any]) -> list[Result]:
    """`kinds` run one after another in a fresh process (its imports and peak memory its own)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(kinds, args, queue))
    process.start()
    status, payload = queue.get()
    process.join()
    if status != "ok":
        raise SystemExit(payload)
    return [Result(**{k: v for k, v in item.items() if k in Result.__dataclass_fields__}) for item in payload]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real-architecture", action="store_true", help="Gemma 3 4B architecture (needs a GPU)")
    parser.add_argument("--train", type=int, help="training examples per configuration (a multiple of 16; smoke: 4)")
    parser.add_argument("--eval", type=int, help="held-out examples per configuration")
    parser.add_argument("--text-layers", type=int, default=34, help=argparse.SUPPRESS)  # smaller: a CPU dry run
    parser.add_argument("--vision-layers", type=int, default=27, help=argparse.SUPPRESS)
    parser.add_argument("--image-size", type=int, default=896, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="every path at the smallest counts, all configurations in one process (make test runs it)",
    )
    parser.add_argument("--no-switches", action="store_true", help="leave out the speed switches' rows")
    args = parser.parse_args(argv)

    from runtune.models.tiny import ensure_tiny_model, tiny_dir

    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        started = time.perf_counter()
        if args.real_architecture:
            # Registered under the tiny Gemma 3 vision id: same family, processor and code path.
            model_id = "tiny-gemma-3-vision"
            weights = str(
                real_architecture(
                    Path(tmp) / "gemma-3-4b-random",
                    text_layers=args.text_layers,
                    vision_layers=args.vision_layers,
                    image_size=args.image_size,
                )
            )
            labels, train_count, eval_count = PET_BREEDS, args.train or 64, args.eval or 32
        else:
            model_id = "tiny-gemma-3-vision"
            # RUNTUNE_BENCH_MODELS: a folder of tiny models already built (the tests' own), else built here.
            models = Path(os.environ.get("RUNTUNE_BENCH_MODELS") or tmp)
            weights = str(ensure_tiny_model(model_id, tiny_dir(models, model_id)))
            counts = (4, 2) if args.smoke else (96, 48)
            labels, train_count, eval_count = PET_BREEDS, args.train or counts[0], args.eval or counts[1]
        build_seconds = time.perf_counter() - started
        from runtune.models import registry
        from runtune.models.loading import load_processor
        from runtune.training.chat import ChatFormat

        fmt = ChatFormat(registry.get(model_id), load_processor(registry.get(model_id), weights))
        answer_tokens = max(len(fmt.raw_ids(label + fmt.end_of_turn)) for label in labels)
        common = {
            "model_id": model_id,
            "weights": weights,
            "labels": labels,
            "train": train_count,
            "eval": eval_count,
            "answer_tokens": answer_tokens,
            # The smoke's recipe generation: a few tokens (the path, not the 128 steps' time).
            "recipe_tokens": 4 if args.smoke else BASELINE_MAX_NEW_TOKENS,
            # The smoke's effective batch: 4 (Runtune 2 x 2, the recipe 1 x 4), one timed step each.
            "effective_batch": 4 if args.smoke else EFFECTIVE_BATCH,
            # Each switch row trains on this many of the examples (the GPU's 8 minutes hold 5 more rows).
            "switch_train": train_count if args.smoke else min(train_count, 2 * EFFECTIVE_BATCH),
        }
        switch_kinds = [] if args.no_switches else [f"switch:{name}" for name in SWITCH_ROWS]
        if args.smoke:  # in this process: the imports and the model's files once
            ours, baseline, short, configured, *switched = run_here(
                ["runtune", "trl-recipe", "trl-runtune", *switch_kinds], common
            )
        else:  # a process each: every configuration's peak memory its own (the CPU's never resets)
            ours = run_in_child(["runtune"], common)[0]
            baseline, short = run_in_child(["trl-recipe"], common)
            configured = run_in_child(["trl-runtune"], common)[0]
            switched = run_in_child(switch_kinds, common) if switch_kinds else []

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    arch = "Gemma 3 4B architecture, random weights" if args.real_architecture else "tiny Gemma 3 vision"
    print(f"bench.trainer: {arch} on {device}; {train_count} training / {eval_count} held-out examples, "
          f"{len(labels)} labels; model built in {build_seconds:.0f}s")  # fmt: skip
    memory = "peak GiB" if torch.cuda.is_available() else "peak RSS GiB"
    header = f"{'configuration':<42}{'train samples/s':>17}{'train ' + memory:>19}"
    print(header + f"{'eval samples/s':>17}{'eval ' + memory:>18}{'accuracy':>10}")
    for r in (baseline, configured, ours):
        print(
            f"{r.name:<42}{r.train_samples_per_s:>17.2f}{r.peak_memory_gib:>19.2f}"
            f"{r.eval_samples_per_s:>17.2f}{r.eval_peak_memory_gib:>18.2f}{r.accuracy:>10.3f}"
        )
    print(f"{short.name:<42}{'':>17}{'':>19}{short.eval_samples_per_s:>17.2f}")
    for r in switched:  # the speed switches: training only, against the `runtune` row
        against = r.train_samples_per_s / ours.train_samples_per_s if ours.train_samples_per_s else 0.0
        print(f"{r.name:<42}{r.train_samples_per_s:>17.2f}{r.peak_memory_gib:>19.2f}  {against:.2f}x runtune")
        if r.notes:
            print(f"{'':<44}{r.notes}")
    ratios = {
        "train_samples_per_s": ours.train_samples_per_s / baseline.train_samples_per_s,
        "train_samples_per_s_configuration": configured.train_samples_per_s / baseline.train_samples_per_s,
        "train_samples_per_s_runtune_code": ours.train_samples_per_s / configured.train_samples_per_s,
        "peak_memory": ours.peak_memory_gib / baseline.peak_memory_gib,
        "peak_memory_vs_same_configuration": ours.peak_memory_gib / configured.peak_memory_gib,
        "eval_samples_per_s": ours.eval_samples_per_s / baseline.eval_samples_per_s,
        "eval_samples_per_s_vs_answer_length_generation": ours.eval_samples_per_s / short.eval_samples_per_s,
    } | {f"train_samples_per_s: {r.name} / runtune": r.train_samples_per_s / ours.train_samples_per_s for r in switched}
    print(
        f"training samples/s: runtune / TRL recipe {ratios['train_samples_per_s']:.2f}x (target >= 1.5x) = "
        f"configuration (TRL at Runtune's batch and loss / TRL recipe) "
        f"{ratios['train_samples_per_s_configuration']:.2f}x x Runtune's code (runtune / TRL at the same "
        f"configuration) {ratios['train_samples_per_s_runtune_code']:.2f}x"
    )
    print(
        f"peak memory: runtune / TRL recipe {ratios['peak_memory']:.2f}x (target <= 1.0x), runtune / TRL at the "
        f"same configuration {ratios['peak_memory_vs_same_configuration']:.2f}x; evaluation samples/s: runtune "
        f"label scoring / TRL recipe generation {ratios['eval_samples_per_s']:.2f}x (target >= 5x; "
        f"{ratios['eval_samples_per_s_vs_answer_length_generation']:.2f}x against answer-length generation)"
    )
    if not torch.cuda.is_available():
        print(
            "(CPU: a smoke test of every path. The peak resident memory of a process never resets, so the "
            "evaluation figure includes training's; the targets are for the GPU, `--real-architecture`)"
        )
    if args.json:
        figures = {
            r.name: asdict(r)
            | {"train_samples_per_s": r.train_samples_per_s, "eval_samples_per_s": r.eval_samples_per_s}
            for r in (baseline, configured, ours, short, *switched)
        }
        args.json.write_text(json.dumps({"ratios": ratios, "results": figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
