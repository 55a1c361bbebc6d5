"""Model setup: load the base model for a method (QLoRA: 4-bit NF4 with double quantisation;
LoRA: 16-bit; full), attach LoRA adapters to every linear layer of the language model (and the vision
tower when asked), enable gradient checkpointing, and pick the optimizer."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch

from runtune.jobs.events import Level
from runtune.models.loading import model_class
from runtune.models.registry import ModelSpec, get
from runtune.schemas.jobs import TrainConfig

log = logging.getLogger("runtune.trainer")


def compute_dtype() -> torch.dtype:
    # bf16 where the accelerator does it natively; float32 on CPU, where bf16 matmuls are emulated.
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_base(spec: ModelSpec, path: str, method: str, *, token: str | None = None) -> Any:
    kwargs: dict[str, Any] = {"dtype": compute_dtype(), "token": token}
    if method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype(),
            # The vision side stays unquantized: it is small, and NF4 costs it accuracy that the
            # adapters of the language model cannot win back.
            llm_int8_skip_modules=skip_modules(spec),
        )
    if torch.cuda.is_available():
        # This process's GPU: 0 alone, a data-parallel rank's own under torchrun (World.start).
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    model = model_class(spec).from_pretrained(path, **kwargs)
    if method == "qlora":
        _no_cpu_inference_repacking(model)
    return model


def skip_modules(spec: ModelSpec) -> list[str]:
    """Module patterns kept out of 4-bit quantisation: the vision side and the output head.

    transformers (>= 5) matches these from the start of a module's full name or as its suffix, never
    as a substring, so a bare `vision_tower` would not match `model.vision_tower.encoder...`: each
    name is given as a regular expression that may follow any parent path.
    """
    names = (*spec.family.vision_modules, *spec.family.unused_modules)
    return [rf"(?:.*\.)?{name}" for name in names] + ["lm_head"]


def _no_cpu_inference_repacking(model: Any) -> None:
    """On CPUs with AVX512-BF16, bitsandbytes repacks a 4-bit layer's weights in place the first time
    it runs in eval mode without gradients (the evaluation's forward). The repacking needs every
    input width to be a multiple of the 64-wide quantisation block (the tiny models' are not), turns
    compute to bf16 (so evaluation would not score the model that was trained), and leaves the layer
    in a layout the training path does not expect. Training and evaluation share one path instead."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit) and hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def lora_targets(model: Any, spec: ModelSpec, *, vision_tower: bool) -> list[str]:
    """Every linear layer's name ('all-linear'), minus the output head, minus the vision side unless asked."""
    import bitsandbytes as bnb

    linear_types: tuple[type, ...] = (torch.nn.Linear, bnb.nn.Linear4bit)
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, linear_types) or name.endswith("lm_head"):
            continue
        parts = name.split(".")
        if any(part in parts for part in spec.family.unused_modules):
            continue
        if not vision_tower and any(part in parts for part in spec.family.vision_modules):
            continue
        names.append(name)
    return names


def enable_checkpointing(model: Any) -> None:
    """Activation (gradient) checkpointing, non-reentrant; by its newer name where transformers has it."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


# A continued dpo job's reference model: the parent's adapter loaded a second time, frozen (a LoRA
# adapter is megabytes, the weights under it are shared), beside the trained `default` one.
REFERENCE_ADAPTER = "reference"


def prepare(model: Any, config: TrainConfig, *, adapter: Path | None = None) -> Any:
    """Adapters (or full training), gradient checkpointing; returns the model to train. With
    `adapter` (continued fine-tuning: the parent model's adapter folder, `TrainConfig.parent_adapter`)
    that adapter is loaded trainable instead of a new one, so training continues where the parent
    ended and the result is one adapter holding the whole delta from the base `model`; a dpo job
    also loads it frozen as `REFERENCE_ADAPTER`, its reference model (runtune/training/preference.py).

    QLoRA deliberately skips peft's `prepare_model_for_kbit_training`: it casts every weight that is
    not 4-bit (the 262k-row embedding, the vision tower, the norms) to float32, which on Gemma 3 4B
    costs ~3 GiB of GPU memory for a stability gain that float16 training needed and bfloat16 does
    not. The frozen weights stay in their loaded dtype; only the adapters train (in float32)."""
    if config.gradient_checkpointing:
        enable_checkpointing(model)
        model.config.use_cache = False
    if config.method == "full":
        return model
    from peft import LoraConfig, PeftModel, get_peft_model

    for parameter in model.parameters():
        parameter.requires_grad_(False)
    if adapter is not None:
        # Its own adapter_config.json gives the shape (the plan copied it: runtune/jobs/plan.py).
        model = PeftModel.from_pretrained(model, adapter, is_trainable=True, autocast_adapter_dtype=True)
        if config.objective == "dpo":
            model.load_adapter(adapter, adapter_name=REFERENCE_ADAPTER, is_trainable=False)
        _adapter_dtype(model, config)
        if config.gradient_checkpointing:
            model.enable_input_require_grads()
        return model
    targets = (
        lora_targets(model, get(config.model), vision_tower=config.lora_vision_tower)
        if config.lora_target_modules == "all-linear"
        else config.lora_target_modules
    )
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora, autocast_adapter_dtype=True)
    _adapter_dtype(model, config)
    if config.gradient_checkpointing:
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    return model


def _adapter_dtype(model: Any, config: TrainConfig) -> None:
    """float32 adapters (peft's autocast), or bf16 ones with `bf16_adapters` where the compute dtype
    is bf16 (a GPU; `speed_switches` says when it is not)."""
    if config.bf16_adapters and compute_dtype() == torch.bfloat16:
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.data = parameter.data.to(torch.bfloat16)


def liger_available() -> str | None:
    """Why Liger's kernels cannot run here (None: they can): they are Triton, for a GPU."""
    if not torch.cuda.is_available():
        return "this machine has no GPU (Liger's kernels are Triton, GPU only)"
    try:
        import liger_kernel.transformers  # noqa: F401
    except ImportError as exc:
        return f"liger-kernel is not installed ({exc})"
    return None


def speed_switches(model: Any, config: TrainConfig) -> list[tuple[Level, str]]:
    """The plan's speed switches applied to the prepared model, and what became of each, as
    (level, message) events for the job: every switch that is on is either applied or said to fall
    back (the trainer then trains without it), never silently dropped. Order: Liger patches the base
    model's modules in place (peft's LoRA layers inside them keep working), then compile wraps the
    decoder layers. `bf16_adapters` is applied by `prepare`; here it is only reported."""
    events: list[tuple[Level, str]] = []
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if config.liger_kernels:
        if (why := liger_available()) is not None:
            events.append(("warn", f"Liger kernels off: {why}; training without them"))
        else:
            from liger_kernel.transformers.monkey_patch import _apply_liger_kernel_to_instance

            # The loss stays Runtune's: logits only at the answer tokens (runtune/training/loop.py),
            # which already keeps the (rows x length x vocabulary) block out of memory, the saving
            # fused linear cross-entropy exists for.
            _apply_liger_kernel_to_instance(
                base, rope=True, rms_norm=True, geglu=True, layer_norm=True, cross_entropy=False,
                fused_linear_cross_entropy=False,
            )  # fmt: skip
            events.append(("info", "Liger kernels on: RMSNorm, RoPE, GeGLU, LayerNorm"))
    if config.bf16_adapters:
        if compute_dtype() == torch.bfloat16:
            events.append(("info", "LoRA adapters in bfloat16"))
        else:
            events.append(("warn", "bf16 adapters off: this machine computes in float32; adapters stay float32"))
    if config.torch_compile:
        if not torch.cuda.is_available():
            events.append(("warn", "torch.compile off: it is applied on a GPU only; training without it"))
        else:
            layers = decoder_layers(base)
            for layer in layers:
                layer.compile(dynamic=True)  # batches differ in length: one graph for all of them
            events.append(("info", f"torch.compile on: {len(layers)} decoder layers"))
    return events


def decoder_layers(model: Any) -> list[Any]:
    """The language model's decoder layers (the repeated blocks compile is worth applying to)."""
    for name, module in model.named_modules():
        if name.endswith("language_model.layers") or name == "model.layers":
            return list(module)
    return []


def base_only(model: Any, config: TrainConfig) -> AbstractContextManager[Any]:
    """The root base model for the block (a baseline evaluation): a continued job's adapter is
    switched off; a new adapter (LoRA's B matrices start at zero) already leaves the base as it is."""
    return model.disable_adapter() if config.parent_adapter else nullcontext()


def trainable_state(model: Any) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: Any, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [name for name, p in params.items() if p.requires_grad and name not in state]
    if missing:
        raise RuntimeError(f"checkpoint lacks {len(missing)} trainable tensors (first: {missing[0]})")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def optimizer(model: Any, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if torch.cuda.is_available():
        import bitsandbytes as bnb

        # 8-bit paged AdamW: a quarter of AdamW's state memory, paged to host under pressure.
        return bnb.optim.PagedAdamW8bit(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    # bitsandbytes' 8-bit optimizers need an accelerator; on CPU plain AdamW.
    return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)


def scheduler(opt: torch.optim.Optimizer, config: TrainConfig, total_steps: int) -> Any:
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    warmup = round(config.warmup_ratio * total_steps)
    make = get_cosine_schedule_with_warmup if config.lr_scheduler == "cosine" else get_linear_schedule_with_warmup
    return make(opt, num_warmup_steps=warmup, num_training_steps=total_steps)
