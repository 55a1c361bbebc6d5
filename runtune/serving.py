"""The inference engine's serving contract: what it serves, read by Terraform and by the code alike.

`runtune/serving.json` is the one configuration. Terraform builds the vLLM engine's arguments and
the inference service's `RUNTUNE_ENGINE_MAX_ADAPTERS` from it (`jsondecode(file(...))` in
`infra/cloud_run.tf`); the training service refuses, when a job is created, a job whose adapter
that engine could not serve (`assess`); the local engine server serves the
contract's local bases and refuses the adapters vLLM would refuse or serve wrongly
(`adapter_problem`). The file sits in the package rather than in `infra/`: every image copies
`runtune/` and none copies `infra/`, while Terraform reads a file outside its module just as well.

What the engine cannot serve, and why it matters at job creation:
- a LoRA rank above `max_lora_rank`: vLLM refuses to load the adapter (`--max-lora-rank`);
- LoRA on the vision tower (or the audio tower) without `tower_connector_lora`: vLLM filters those
  layers out of the adapter with a warning and serves the rest, so the served model is not the
  one that was trained and evaluated (`--enable-tower-connector-lora`, experimental in vLLM);
- an adapter of a base model the engine does not run: one vLLM server serves one base.
A job on a base the engine does not serve still runs when it exports its merged model (the
default): it is trained for download, and its events say so. Full fine-tuning has no adapter at
all, so it is always trained for download.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from runtune.errors import InvalidRequest
from runtune.models import registry
from runtune.models.registry import ModelSpec
from runtune.schemas.jobs import CreateJobRequest, Job, RuntuneOptions, options_param

CONTRACT_PATH = Path(__file__).with_name("serving.json")
# The ranks vLLM's `--max-lora-rank` accepts (vllm.config.lora.MaxLoRARanks).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

# Where each option sits in `POST /v1/fine_tuning/jobs`, as the request-validation errors name it.
OPTIONS_PARAM = "method.supervised.runtune"
RANK_PARAM = f"{OPTIONS_PARAM}.lora.rank"
VISION_TOWER_PARAM = f"{OPTIONS_PARAM}.lora.vision_tower"
TARGET_MODULES_PARAM = f"{OPTIONS_PARAM}.lora.target_modules"
MERGED_PARAM = f"{OPTIONS_PARAM}.export.merged"
MODEL_PARAM = "model"

ProfileName = Literal["local", "gcp"]


class ServingContractError(RuntimeError):
    """The contract file is missing or invalid: raised when a process starts, never per request."""


class ServingContract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Registry ids (which are the Hugging Face ids) of the bases the cloud engine serves.
    base_models: tuple[str, ...]
    # What the local engine server serves instead: the tiny models a laptop runs.
    local_base_models: tuple[str, ...]
    max_lora_rank: int
    # Adapters the engine holds at once (vLLM --max-loras); the inference service evicts beyond it.
    max_loras: int = Field(ge=1, le=64)
    tower_connector_lora: bool
    max_model_len: int = Field(ge=256, le=131_072)
    gpu_memory_utilization: float = Field(gt=0, le=1)

    @field_validator("base_models")
    @classmethod
    def _one_served_hugging_face_base(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # One vLLM server serves one base and the inference service reaches one engine; more bases
        # would need one engine service each.
        if len(value) != 1:
            raise ValueError("the engine serves exactly one base model (one vLLM server per base)")
        for model_id in value:
            spec = registry.lookup(model_id)
            if spec is None or spec.is_tiny:
                raise ValueError(f"'{model_id}' is not a Hugging Face base model of the registry")
            # vLLM serves the base under the id it was started with; the inference service asks for
            # the registry id: they must be the same string.
            if spec.hf_id != spec.id:
                raise ValueError(f"'{model_id}' is served by vLLM as '{spec.hf_id}', not by its registry id")
        return value

    @field_validator("local_base_models")
    @classmethod
    def _local_bases_exist(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("the local engine must serve at least one base model")
        unknown = [model_id for model_id in value if registry.lookup(model_id) is None]
        if unknown:
            raise ValueError(f"not in the model registry: {', '.join(unknown)}")
        return value

    @field_validator("max_lora_rank")
    @classmethod
    def _a_rank_vllm_accepts(cls, value: int) -> int:
        if value not in VLLM_LORA_RANKS:
            raise ValueError(f"vLLM's --max-lora-rank is one of {', '.join(map(str, VLLM_LORA_RANKS))}")
        return value

    def served(self, profile: ProfileName | str) -> tuple[str, ...]:
        """The bases whose adapters the profile's engine serves."""
        return self.local_base_models if profile == "local" else self.base_models


@lru_cache(maxsize=4)
def load(path: Path = CONTRACT_PATH) -> ServingContract:
    try:
        return ServingContract.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise ServingContractError(f"the serving contract {path} cannot be read: {exc}") from None
    except ValidationError as exc:
        raise ServingContractError(f"the serving contract {path} is invalid: {exc}") from None


@dataclass(frozen=True)
class Problem:
    """Why the engine could not serve a job's adapter, naming the request field to change."""

    param: str
    message: str
    code: str

    def error(self) -> InvalidRequest:
        return InvalidRequest(self.message, param=self.param, code=self.code)


@dataclass(frozen=True)
class Verdict:
    problems: tuple[Problem, ...] = ()
    # Set when the job may run although the engine will not serve its result: why, and where the
    # model goes instead (the merged export). None when the engine serves it.
    export_only: str | None = None

    @property
    def served(self) -> bool:
        return not self.problems and self.export_only is None


def assess(
    job: CreateJobRequest | Job, *, profile: ProfileName | str, contract: ServingContract | None = None
) -> Verdict:
    """Whether the profile's engine could serve what the job produces, and if not, whether the job
    still makes sense as a download (the merged export) or must be refused."""
    contract = contract or load()
    model, options = _subject(job)
    served = contract.served(profile)
    names = ", ".join(f"'{name}'" for name in served)
    if options.method == "full":
        return Verdict(
            export_only=(
                "Full fine-tuning produces a whole model rather than an adapter, and the inference engine "
                f"serves adapters of {names} only: this job's model is for download (its merged export)"
            )
        )
    if model not in served:
        if options.export.merged:
            return Verdict(
                export_only=(
                    f"The inference engine serves adapters of {names}, not of '{model}': this job is trained "
                    "for download (its merged model, or its adapter) and cannot be chatted with, vibe-checked "
                    "or evaluated here"
                )
            )
        return Verdict(
            problems=(
                Problem(
                    MODEL_PARAM,
                    f"The inference engine serves adapters of {names}, not of '{model}', so this job's model "
                    f"could not be used here; pick a served model, or set {MERGED_PARAM}=true to train it "
                    "for download only",
                    "model_not_served",
                ),
            )
        )
    problems = _adapter_problems(registry.lookup(model), options, contract)
    return Verdict(problems=tuple(_for_method(problem, _method_type(job)) for problem in problems))


def _method_type(job: CreateJobRequest | Job) -> str:
    return job.method.type if isinstance(job, CreateJobRequest) else job.method_asked.type


def _for_method(problem: Problem, method_type: str) -> Problem:
    """The problem naming the options where the request has them (`method.dpo.runtune` for dpo)."""
    theirs = options_param(method_type)
    if theirs == OPTIONS_PARAM:
        return problem
    return replace(
        problem,
        param=problem.param.replace(OPTIONS_PARAM, theirs),
        message=problem.message.replace(OPTIONS_PARAM, theirs),
    )


def _subject(job: CreateJobRequest | Job) -> tuple[str, RuntuneOptions]:
    if isinstance(job, CreateJobRequest):
        return job.model, job.method.runtune
    # A continued job's adapter is served on its chain's root base, like any other adapter.
    return job.base_model, job.options


def _adapter_problems(spec: ModelSpec | None, options: RuntuneOptions, contract: ServingContract) -> list[Problem]:
    lora = options.lora
    problems = []
    if lora.rank > contract.max_lora_rank:
        problems.append(
            Problem(
                RANK_PARAM,
                f"LoRA rank {lora.rank} is above {contract.max_lora_rank}, the largest rank the inference engine "
                f"serves (vLLM --max-lora-rank); pick a rank of at most {contract.max_lora_rank}",
                "lora_rank_not_servable",
            )
        )
    if not contract.tower_connector_lora:
        if lora.vision_tower:
            problems.append(
                Problem(
                    VISION_TOWER_PARAM,
                    "The inference engine does not serve LoRA on the vision tower (vLLM "
                    "--enable-tower-connector-lora is off): it would drop those layers and serve a model other "
                    "than the one trained; set vision_tower=false",
                    "vision_tower_not_servable",
                )
            )
        elif spec is not None and isinstance(lora.target_modules, list):
            reaching = [name for name in lora.target_modules if _may_reach_towers(name, spec)]
            if reaching:
                problems.append(
                    Problem(
                        TARGET_MODULES_PARAM,
                        f"On '{spec.id}', target modules {', '.join(repr(n) for n in reaching)} also match the "
                        "vision (or audio) tower's layers, whose LoRA the inference engine does not serve; use "
                        "'all-linear' (the language model's layers) or names under 'language_model.'",
                        "vision_tower_not_servable",
                    )
                )
    return problems


def _towers(spec: ModelSpec) -> tuple[str, ...]:
    return (*spec.family.vision_modules, *spec.family.unused_modules)


def _may_reach_towers(target: str, spec: ModelSpec) -> bool:
    """peft matches a listed target module by name suffix, so a bare `q_proj` adapts the towers'
    `q_proj` layers as well; only a name scoped to the language model stays off them."""
    if spec.modality == "text":
        return False
    parts = target.split(".")
    return any(part in _towers(spec) for part in parts) or "language_model" not in parts


def adapter_problem(
    adapter_config: Mapping[str, Any], tensor_names: Iterable[str], spec: ModelSpec, contract: ServingContract
) -> str | None:
    """Why an engine under this contract must not load a saved peft adapter (None: it may), from its
    `adapter_config.json` and the names of its weights, as vLLM checks at `load_lora_adapter`."""
    ranks = [adapter_config.get("r") or 0, *(adapter_config.get("rank_pattern") or {}).values()]
    rank = max(int(r) for r in ranks)
    if rank > contract.max_lora_rank:
        return f"LoRA rank {rank} is greater than max_lora_rank {contract.max_lora_rank}"
    if not contract.tower_connector_lora:
        towers = _towers(spec)
        if any(part in towers for name in tensor_names for part in name.split(".")):
            return "The adapter adapts the vision (or audio) tower, and tower/connector LoRA is not enabled"
    return None
