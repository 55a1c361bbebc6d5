"""The serving contract (runtune/serving.py): what the engine serves, and which jobs it could not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtune import serving
from runtune.models import registry
from runtune.schemas.jobs import CreateJobRequest, Job, RuntuneOptions
from runtune.serving import ServingContract, ServingContractError

SHIPPED = json.loads(serving.CONTRACT_PATH.read_text())
CLOUD_BASE = SHIPPED["base_models"][0]
LOCAL_BASE = "tiny-gemma-3-vision"


def contract(**change: Any) -> ServingContract:
    return ServingContract.model_validate(SHIPPED | change)


def request(model: str = CLOUD_BASE, **runtune: Any) -> CreateJobRequest:
    method = {"type": "supervised", "supervised": {"runtune": runtune}}
    return CreateJobRequest.model_validate({"model": model, "training_file": "file-x", "method": method})


def test_the_shipped_contract_loads_and_names_servable_bases() -> None:
    loaded = serving.load()
    assert loaded == ServingContract.model_validate(SHIPPED)
    (base,) = loaded.base_models
    assert registry.get(base).hf_id == base
    assert all(registry.get(model).is_tiny for model in loaded.local_base_models)
    assert loaded.served("gcp") == loaded.base_models and loaded.served("local") == loaded.local_base_models


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"base_models": [CLOUD_BASE, "google/gemma-3-12b-it"]}, "exactly one base"),
        ({"base_models": []}, "exactly one base"),
        ({"base_models": ["tiny-gemma-3-vision"]}, "not a Hugging Face base"),
        ({"base_models": ["google/gemma-9-x"]}, "not a Hugging Face base"),
        ({"local_base_models": ["tiny-nope"]}, "not in the model registry"),
        ({"local_base_models": []}, "at least one"),
        ({"max_lora_rank": 100}, "--max-lora-rank"),
        ({"max_loras": 0}, "max_loras"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"max_lora_ranks": 64}, "max_lora_ranks"),  # a misspelt key is an error, not a silent default
    ],
)
def test_an_invalid_contract_is_refused_when_it_loads(tmp_path: Path, change: dict[str, Any], says: str) -> None:
    path = tmp_path / "serving.json"
    path.write_text(json.dumps(SHIPPED | change))
    with pytest.raises(ServingContractError, match="invalid") as info:
        serving.load(path)
    assert says in str(info.value)


def test_a_missing_contract_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ServingContractError, match="cannot be read"):
        serving.load(tmp_path / "nope.json")


def test_a_job_within_the_limits_is_served() -> None:
    verdict = serving.assess(request(lora={"rank": 64}), profile="gcp", contract=contract(max_lora_rank=64))
    assert verdict.served and verdict.problems == () and verdict.export_only is None


def test_a_rank_above_the_engines_limit_names_the_field_and_the_limit() -> None:
    (problem,) = list(
        serving.assess(request(lora={"rank": 128}), profile="gcp", contract=contract(max_lora_rank=64)).problems
    )
    assert problem.param == "method.supervised.runtune.lora.rank" and problem.code == "lora_rank_not_servable"
    assert "128" in problem.message and "at most 64" in problem.message
    error = problem.error()
    assert error.status_code == 400
    assert error.envelope()["error"] | {"message": None} == {
        "message": None,
        "type": "invalid_request_error",
        "param": "method.supervised.runtune.lora.rank",
        "code": "lora_rank_not_servable",
    }
    # A larger engine limit serves it.
    larger = contract(max_lora_rank=128)
    assert list(serving.assess(request(lora={"rank": 128}), profile="gcp", contract=larger).problems) == []


def test_vision_tower_lora_needs_tower_connector_lora() -> None:
    job = request(lora={"vision_tower": True})
    (problem,) = list(serving.assess(job, profile="gcp", contract=contract(tower_connector_lora=False)).problems)
    assert problem.param == "method.supervised.runtune.lora.vision_tower"
    assert "--enable-tower-connector-lora" in problem.message
    assert list(serving.assess(job, profile="gcp", contract=contract(tower_connector_lora=True)).problems) == []


@pytest.mark.parametrize(
    ("model", "profile", "targets", "refused"),
    [
        # peft matches listed names by suffix: bare names adapt the vision tower's layers too.
        (CLOUD_BASE, "gcp", ["q_proj", "v_proj"], ["'q_proj'", "'v_proj'"]),
        (CLOUD_BASE, "gcp", ["model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj"], ["vision_tower"]),
        (CLOUD_BASE, "gcp", ["model.language_model.layers.0.self_attn.q_proj"], []),
        ("tiny-gemma-3-text", "local", ["q_proj", "v_proj"], []),  # a text model has no tower to reach
    ],
)
def test_listed_target_modules_that_reach_the_towers_are_refused(
    model: str, profile: str, targets: list[str], refused: list[str]
) -> None:
    job = request(model, lora={"target_modules": targets})
    problems = list(serving.assess(job, profile=profile, contract=contract(tower_connector_lora=False)).problems)
    assert [p.param for p in problems] == (["method.supervised.runtune.lora.target_modules"] if refused else [])
    for name in refused:
        assert name in problems[0].message


def test_every_problem_is_reported_together() -> None:
    problems = list(
        serving.assess(
            request(lora={"rank": 256, "vision_tower": True}), profile="gcp", contract=contract(max_lora_rank=64)
        ).problems
    )
    assert [p.param for p in problems] == [
        "method.supervised.runtune.lora.rank",
        "method.supervised.runtune.lora.vision_tower",
    ]


def test_an_unserved_base_runs_for_download_when_it_exports_merged() -> None:
    other = "google/gemma-3-27b-it"
    verdict = serving.assess(request(other, lora={"rank": 256}), profile="gcp", contract=contract())
    # Nothing to refuse: the engine will not serve it whatever its rank; the merged model is the result.
    assert verdict.problems == () and not verdict.served
    assert verdict.export_only and other in verdict.export_only and CLOUD_BASE in verdict.export_only


def test_an_unserved_base_without_a_merged_export_is_refused_naming_the_model() -> None:
    job = request("google/gemma-3-27b-it", export={"merged": False})
    (problem,) = list(serving.assess(job, profile="gcp", contract=contract()).problems)
    assert problem.param == "model" and problem.code == "model_not_served"
    assert CLOUD_BASE in problem.message and "method.supervised.runtune.export.merged=true" in problem.message


def test_full_fine_tuning_is_always_for_download() -> None:
    verdict = serving.assess(request(LOCAL_BASE, method="full"), profile="local", contract=contract())
    assert verdict.problems == () and verdict.export_only and "Full fine-tuning" in verdict.export_only


def test_each_profile_checks_against_its_own_engine() -> None:
    job = request(LOCAL_BASE, export={"merged": False})
    assert list(serving.assess(job, profile="local", contract=contract()).problems) == []
    assert [p.param for p in list(serving.assess(job, profile="gcp", contract=contract()).problems)] == ["model"]


def test_a_stored_job_is_judged_like_its_request() -> None:
    options = RuntuneOptions.model_validate({"lora": {"rank": 128}})
    job = Job(id="ftjob-x", owner="u", model=CLOUD_BASE, training_file="file-x", options=options)
    (problem,) = list(serving.assess(job, profile="gcp", contract=contract(max_lora_rank=64)).problems)
    assert problem.param == "method.supervised.runtune.lora.rank"


SPEC = registry.get(LOCAL_BASE)
LANGUAGE = "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight"
TOWER = "base_model.model.model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"


@pytest.mark.parametrize(
    ("config", "names", "says"),
    [
        ({"r": 16}, [LANGUAGE], None),
        ({"r": 128}, [LANGUAGE], "LoRA rank 128 is greater than max_lora_rank 64"),
        ({"r": 16, "rank_pattern": {"q_proj": 128}}, [LANGUAGE], "LoRA rank 128"),
        ({"r": 16}, [LANGUAGE, TOWER], "tower"),
    ],
)
def test_a_saved_adapter_is_checked_as_vllm_would(config: dict[str, Any], names: list[str], says: str | None) -> None:
    problem = serving.adapter_problem(config, names, SPEC, contract(max_lora_rank=64, tower_connector_lora=False))
    if says is None:
        assert problem is None
    else:
        assert problem is not None and says in problem


def test_tower_adapters_load_where_the_contract_enables_them() -> None:
    assert serving.adapter_problem({"r": 8}, [TOWER], SPEC, contract(tower_connector_lora=True)) is None


def test_a_dpo_jobs_problems_name_its_own_options() -> None:
    body = {"type": "dpo", "dpo": {"runtune": {"lora": {"rank": 128}}}}
    dpo = CreateJobRequest.model_validate({"model": CLOUD_BASE, "training_file": "file-x", "method": body})
    (problem,) = serving.assess(dpo, profile="gcp", contract=contract(max_lora_rank=64)).problems
    assert problem.param == "method.dpo.runtune.lora.rank" and problem.code == "lora_rank_not_servable"
