"""The vLLM engine's arguments come from the serving contract (runtune/serving.json) that the jobs API
checks every new job against: Terraform reads that very file, and each flag follows it."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from runtune import serving
from runtune.settings import InferenceSettings
from tests.infra.terraform import Config, expression

# Fields of the contract that are not engine flags, with the reason.
NOT_ENGINE_FLAGS = {"local_base_models": "what the local engine server serves instead (engine/)"}
# Variables that duplicated the contract before it existed: a second source of truth if they came back.
RETIRED_VARIABLES = ("engine_base_model", "engine_max_lora_rank", "engine_max_loras", "engine_max_model_len")


def engine_args(tf: Config) -> list[Any]:
    engine = tf.resource("google_cloud_run_v2_service", "engine")
    (template,) = engine["template"]
    (container,) = template["containers"]
    return container["args"]


def render(arg: Any, contract: dict[str, Any]) -> str:
    """One argument as Terraform renders it for this contract (the shapes the engine's args use)."""
    expr = expression(arg)
    if expr is None:
        return str(arg)
    if match := re.fullmatch(r"one\(local\.serving\.(\w+)\)", expr):
        (value,) = contract[match.group(1)]
        return value
    if match := re.fullmatch(r"tostring\(local\.serving\.(\w+)\)", expr):
        return str(contract[match.group(1)])
    if match := re.fullmatch(r'local\.serving\.(\w+) \? "([^"]+)" : "([^"]+)"', expr):
        return match.group(2) if contract[match.group(1)] else match.group(3)
    raise AssertionError(f"the engine argument {arg!r} is not one of the shapes rendered here")


def flag_value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_terraform_reads_the_contract_file_the_code_reads(tf: Config) -> None:
    assert tf.local_files["serving"] == serving.CONTRACT_PATH.resolve()
    assert tf.locals["serving"] == json.loads(serving.CONTRACT_PATH.read_text())
    for name in RETIRED_VARIABLES:
        assert name not in tf.variables, f"var.{name} would be a second source for the engine's flags"


def test_every_engine_flag_of_the_contract_comes_from_the_file(tf: Config) -> None:
    args = engine_args(tf)
    assert not any("var." in str(arg) for arg in args), "the engine's arguments come from the contract alone"
    referenced = {field for arg in args for field in re.findall(r"local\.serving\.(\w+)", str(arg))}
    assert referenced == set(serving.ServingContract.model_fields) - set(NOT_ENGINE_FLAGS)


@pytest.mark.parametrize(
    "change",
    [
        {},
        # Another contract: the rendered arguments follow it (nothing is fixed in Terraform).
        {"base_models": ["google/gemma-3-12b-it"], "max_lora_rank": 128, "max_loras": 8, "tower_connector_lora": True},
    ],
)
def test_engine_args_equal_the_contracts_values(tf: Config, change: dict[str, Any]) -> None:
    contract = serving.ServingContract.model_validate(tf.locals["serving"] | change)
    args = [render(arg, contract.model_dump()) for arg in engine_args(tf)]
    assert args[0] == contract.base_models[0]
    assert "--enable-lora" in args
    assert flag_value(args, "--max-lora-rank") == str(contract.max_lora_rank)
    assert flag_value(args, "--max-loras") == str(contract.max_loras)
    assert flag_value(args, "--max-model-len") == str(contract.max_model_len)
    assert float(flag_value(args, "--gpu-memory-utilization")) == contract.gpu_memory_utilization
    tower = "--enable-tower-connector-lora" if contract.tower_connector_lora else "--no-enable-tower-connector-lora"
    assert tower in args
    assert {"--enable-tower-connector-lora", "--no-enable-tower-connector-lora"} & set(args) == {tower}


def test_the_inference_service_evicts_at_the_engines_max_loras(tf: Config) -> None:
    assert tf.local_value("env")["inference"]["RUNTUNE_ENGINE_MAX_ADAPTERS"] == "${tostring(local.serving.max_loras)}"
    # Its default (the local profile, where no Terraform runs) is the same number.
    assert InferenceSettings.model_fields["engine_max_adapters"].get_default(call_default_factory=True) == (
        serving.load().max_loras
    )


def test_the_engine_fetches_no_remote_or_local_media(tf: Config) -> None:
    # vLLM fetches media URLs from any host when --allowed-media-domains is empty or absent, and
    # reads `file:` URLs under --allowed-local-media-path (the data bucket is mounted on the engine).
    args = [render(arg, tf.locals["serving"]) for arg in engine_args(tf)]
    assert args.count("--allowed-media-domains") == 1
    domains = args[args.index("--allowed-media-domains") + 1 :]
    domains = domains[: next((i for i, arg in enumerate(domains) if arg.startswith("--")), len(domains))]
    assert domains == ["invalid"], "only a name that never resolves (RFC 6761)"
    assert not [arg for arg in args if arg.startswith("--allowed-local-media-path")]
    engine = tf.resource("google_cloud_run_v2_service", "engine")
    (container,) = engine["template"][0]["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["VLLM_MEDIA_URL_ALLOW_REDIRECTS"] == "0"
