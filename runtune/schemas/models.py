"""OpenAI's Model object as `GET /v1/models` and `GET /v1/models/{id}` show it: a base model of the
registry (`ModelSpec.public`) or one of the caller's tuned models or model checkpoints
(`runtune.inference.resolver.tuned_model_object`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from runtune.schemas.jobs import Lineage


class ModelObject(BaseModel):
    """The two kinds carry different fields, and a field a kind lacks is absent from its JSON, not
    null: the routes answer with `response_model_exclude_unset`. So, unlike the other schemas (not an
    `ApiModel`), every field with a default is optional in the OpenAPI document."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    # A base model's.
    family: str | None = None
    modality: Literal["text", "vision"] | None = None
    parameters: int | None = None
    instruction_tuned: bool | None = None
    methods: list[str] | None = None
    memory_gib: dict[str, float] | None = None
    # Whether the inference engine serves this base's adapters (runtune/serving.json).
    served: bool | None = None
    # A tuned model's: what it was trained from (a base, or the tuned model it continued) and the chain.
    parent: str | None = None
    fine_tuning_job: str | None = None
    lineage: Lineage | None = None
    # Additive (OpenAI's Model has neither): what a picker shows instead of the bare id.
    name: str | None = None
    training_file: str | None = None
    # A model checkpoint's.
    step_number: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]
