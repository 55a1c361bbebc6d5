"""The model registry, shared by the jobs API (what may be trained, estimates) and the trainer (how).

A leaf: pure data and lookups, no torch, and nothing of Runtune but the estimate's `ModelFigures`
(itself a leaf). Where a model's weights are is `runtune.models.loading`'s; building the tiny ones is
`runtune.models.tiny`'s.

Every supported base model is one `ModelSpec`; everything that differs between model families (the
class to load, how the chat template is rendered, what ends a turn, the image placeholder) lives in
one `Family` record here, so the trainer, the evaluator and the inference engine never branch on a
model name.

Architecture figures are those of the published configs (parameter counts rounded); they feed
`runtune.estimate`, which is deliberately conservative.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from runtune.estimate import ModelFigures

Modality = Literal["text", "vision"]
TINY_PREFIX = "tiny-"


@dataclass(frozen=True)
class Family:
    """A model family's quirks, in one place."""

    name: str
    # transformers class (by name, so importing the registry never imports torch) per modality.
    model_class: dict[str, str]
    # Text that closes an assistant turn in the chat template; the trained answer ends with it.
    end_of_turn: str
    # What the chat template writes for an image content part (before the processor expands it).
    image_placeholder: str
    # Keyword arguments every chat-template render gets, in training, evaluation and serving alike.
    # Gemma 4 renders an empty thinking block after the generation prompt when thinking is off, so
    # the trainer must train on exactly that prefix (see runtune.training.chat).
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    # Modules that belong to the vision side (kept out of LoRA unless the vision tower is asked for).
    vision_modules: tuple[str, ...] = ("vision_tower", "multi_modal_projector", "embed_vision")
    # Towers of modalities Runtune does not train on (Gemma 4's audio): never quantized nor adapted.
    unused_modules: tuple[str, ...] = ()
    # `auto`'s learning-rate multiplier (of the method's base rate, runtune/jobs/plan.py) per
    # modality: a starting point for LoRA/QLoRA adapters, not a measured optimum.
    learning_rate_multiplier: dict[str, float] = field(default_factory=lambda: {"text": 1.0, "vision": 1.0})


GEMMA3 = Family(
    name="gemma3",
    model_class={"text": "Gemma3ForCausalLM", "vision": "Gemma3ForConditionalGeneration"},
    end_of_turn="<end_of_turn>",
    image_placeholder="<start_of_image>",
    # Google's Gemma 3 QLoRA guides (text, and vision) train adapters at 2e-4: the base rate itself.
    learning_rate_multiplier={"text": 1.0, "vision": 1.0},
)
GEMMA4 = Family(
    name="gemma4",
    model_class={"text": "Gemma4ForConditionalGeneration", "vision": "Gemma4ForConditionalGeneration"},
    end_of_turn="<turn|>",
    image_placeholder="<|image|>",
    template_kwargs={"enable_thinking": False},
    unused_modules=("audio_tower", "embed_audio"),
    # Half the base rate: Gemma 4's instruction-tuned checkpoints carry more post-training (thinking,
    # tools) for a small set's adapter to wash out; raise it when a run under-fits.
    learning_rate_multiplier={"text": 0.5, "vision": 0.5},
)
FAMILIES = {family.name: family for family in (GEMMA3, GEMMA4)}


@dataclass(frozen=True)
class ModelSpec:
    id: str
    family: Family
    modality: Modality
    hf_id: str | None  # None for the tiny local models, built on the spot
    parameters: int
    hidden_size: int
    num_layers: int
    intermediate_size: int
    vocab_size: int = 262_144
    tokens_per_image: int = 0
    instruction_tuned: bool = True
    # Full fine-tuning is offered only where weights, gradients and optimizer state fit one GPU.
    full_finetune: bool = False
    # Scales the method's base learning rate: the tiny random models (hidden size 64) need ~10x a
    # pretrained model's rate to move in a few dozen steps.
    learning_rate_scale: float = 1.0

    @property
    def is_tiny(self) -> bool:
        return self.id.startswith(TINY_PREFIX)

    @property
    def model_class(self) -> str:
        return self.family.model_class[self.modality]

    def figures(self) -> ModelFigures:
        """The estimate's figures: the fields of `ModelFigures`, which a spec carries under the same names."""
        return ModelFigures(**{figure.name: getattr(self, figure.name) for figure in fields(ModelFigures)})

    def weights_gib(self, method: Literal["qlora", "lora", "full"]) -> float:
        """Memory of the frozen weights alone: NF4 + double quantisation ~0.56 bytes/parameter, else bf16."""
        return round(self.parameters * (0.5625 if method == "qlora" else 2.0) / 1024**3, 2)

    def public(self) -> dict[str, Any]:
        """What `GET /v1/models` shows of a base model."""
        return {
            "id": self.id,
            "object": "model",
            "owned_by": "google" if self.hf_id else "runtune",
            "family": self.family.name,
            "modality": self.modality,
            "parameters": self.parameters,
            "instruction_tuned": self.instruction_tuned,
            "methods": ["qlora", "lora", *(["full"] if self.full_finetune else [])],
            "memory_gib": {"qlora": self.weights_gib("qlora"), "lora": self.weights_gib("lora")},
        }


def _published(
    family: Family, ids: tuple[tuple[str, bool], ...], modality: Modality, *figures: int, **extra: Any
) -> list[ModelSpec]:
    """A published size's checkpoints (instruction-tuned first), all with the same architecture figures:
    parameters, hidden size, layers, intermediate size."""
    params, hidden, layers, inter = figures
    return [
        ModelSpec(model_id, family, modality, model_id, params, hidden, layers, inter, instruction_tuned=it, **extra)
        for model_id, it in ids
    ]


def _gemma3(size: str, params: int, hidden: int, layers: int, inter: int, modality: Modality) -> list[ModelSpec]:
    ids = ((f"google/gemma-3-{size}-it", True), (f"google/gemma-3-{size}-pt", False))
    vision = modality == "vision"
    extra: dict[str, Any] = {"tokens_per_image": 256 if vision else 0, "full_finetune": params < 2_000_000_000}
    return _published(GEMMA3, ids, modality, params, hidden, layers, inter, **extra)


def _gemma4(size: str, params: int, hidden: int, layers: int, inter: int) -> list[ModelSpec]:
    ids = ((f"google/gemma-4-{size}-it", True), (f"google/gemma-4-{size}", False))
    return _published(GEMMA4, ids, "vision", params, hidden, layers, inter, tokens_per_image=280)


# Local models: random weights, a tokenizer trained on the spot, the real processors and chat
# templates (built by runtune.models.tiny). Small enough to train in seconds on a laptop CPU.
# Shared by the tiny models: full fine-tuning fits, and their random weights (hidden size 64) need
# ~10x a pretrained model's learning rate to move in a few dozen steps.
_TINY: dict[str, Any] = {"full_finetune": True, "learning_rate_scale": 10.0}
TINY_MODELS = (
    ModelSpec("tiny-gemma-3-vision", GEMMA3, "vision", None, 300_000, 64, 2, 128, 1024, 4, **_TINY),
    ModelSpec("tiny-gemma-4-vision", GEMMA4, "vision", None, 300_000, 64, 2, 128, 1024, 70, **_TINY),
    ModelSpec("tiny-gemma-3-text", GEMMA3, "text", None, 200_000, 64, 2, 128, 1024, 0, **_TINY),
)

MODELS: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        *_gemma3("270m", 268_000_000, 640, 18, 2048, "text"),
        *_gemma3("1b", 1_000_000_000, 1152, 26, 6912, "text"),
        *_gemma3("4b", 4_300_000_000, 2560, 34, 10240, "vision"),
        *_gemma3("12b", 12_200_000_000, 3840, 48, 15360, "vision"),
        *_gemma3("27b", 27_400_000_000, 5376, 62, 21504, "vision"),
        # Gemma 4 (transformers >= 5.5): the E-sizes count their per-layer embeddings; 26B-A4B is a
        # mixture of experts with ~4B active parameters per token.
        *_gemma4("E2B", 5_100_000_000, 1536, 35, 6144),
        *_gemma4("E4B", 8_000_000_000, 2560, 42, 10240),
        *_gemma4("26B-A4B", 25_200_000_000, 2816, 30, 2112),
        *_gemma4("31B", 30_700_000_000, 5376, 60, 21504),
        *TINY_MODELS,
    )
}


class UnknownModel(LookupError):
    pass


def get(model_id: str) -> ModelSpec:
    try:
        return MODELS[model_id]
    except KeyError:
        raise UnknownModel(f"model '{model_id}' is not in the registry; GET /v1/models lists the base models") from None


def lookup(model_id: str) -> ModelSpec | None:
    return MODELS.get(model_id)
