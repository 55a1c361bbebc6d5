"""The environment contract between Terraform and runtune/settings.py, for every deployable.

For each deployable, the RUNTUNE_* variables Terraform sets are exactly the fields of its settings
class, less the fields listed below (each with its reason). The rendered environment then loads
into the settings class under the `gcp` profile, as Cloud Run would start it.
"""

from __future__ import annotations

import os
import re

import pytest
from pydantic_settings import BaseSettings

from runtune import settings as settings_module
from runtune.estimate import GPU_TABLE
from runtune.settings import (
    EMULATOR_VARIABLES,
    CommonSettings,
    ConvertSettings,
    EngineClientSettings,
    EvaluateSettings,
    GatewaySettings,
    InferenceSettings,
    ServiceSettings,
    SignupPolicy,
)
from tests.infra.terraform import REPO_ROOT, Config, Renderer, blocks, dynamic_blocks

# The trainer reads CommonSettings until it gets a class of its own; the contract follows it then.
TRAINER_SETTINGS: type[BaseSettings] = getattr(settings_module, "TrainerSettings", CommonSettings)

DEPLOYABLES: dict[str, type[BaseSettings]] = {
    "gateway": GatewaySettings,
    "preprocessing": ServiceSettings,
    "training": ServiceSettings,
    "inference": InferenceSettings,
    "trainer": TRAINER_SETTINGS,
    "evaluate": EvaluateSettings,
    "convert": ConvertSettings,
    "ingest": CommonSettings,
}

# Fields Terraform leaves unset, for every deployable that has them: the one list, with reasons.
UNSET: dict[str, str] = {
    "local_dir": "the local platform's data folder; the gcp profile keeps nothing on local disk",
    "stop_poll_s": "the default (5 s) is the intended policy; the end-to-end tests read the stop flags faster",
    "stop_grace_s": "the default (5 s) fits Cloud Run's 10 s from SIGTERM to SIGKILL; loaded test CPUs wait longer",
    "firestore_query_log": "the tests' record of Firestore query shapes; real Firestore checks indexes itself",
    "host": "set by the image: RUNTUNE_HOST in gateway/Dockerfile, uvicorn's UVICORN_HOST in services/Dockerfile",
    "port": "set by the image: RUNTUNE_PORT in gateway/Dockerfile, UVICORN_PORT in services/Dockerfile",
    "frontend_dir": "set by the image (RUNTUNE_FRONTEND_DIR in gateway/Dockerfile), where it puts the built UI",
    "internal_token": "local profile only; the gcp profile refuses it (Google-signed ID tokens instead)",
    "internal_token_sha256": "local profile only; in the cloud services verify Google-signed ID tokens",
    "secrets_dir": "the local file secret store only; the cloud uses Secret Manager",
    "trainer_command": "the local launcher's argv; Cloud Run runs the trainer image's ENTRYPOINT",
    "ingest_command": "the local launcher's argv; Cloud Run runs the ingest job's image",
    "evaluate_command": "the local launcher's argv; Cloud Run runs the evaluate job's image",
    "convert_command": "the local launcher's argv; Cloud Run runs the convert job's image",
    "local_max_concurrent_jobs": "the local launcher's queue only",
    "local_max_concurrent_cpu_jobs": "the local launcher's queue only",
    "run_api_endpoint": "points the Cloud Run client at the tests' fake server; the default endpoint in the cloud",
    "vertex_api_endpoint": "points the Vertex AI client at the tests' fake server; the region's endpoint in the cloud",
    "rate_limit_per_minute": "the default (600 per user per minute per gateway instance) is the intended policy",
    "rate_limit_burst": "the default burst (120) is the intended policy",
    "token_check_revoked": "the default (True) is the safe choice: disabled users and revoked sessions are refused",
    "token_cache_s": "the default (60 s) bounds how long a disabled user or revoked session keeps access",
    "api_key_cache_s": "the default (10 s) bounds how long a key revoked elsewhere keeps working on an instance",
    "api_key_touch_every_s": "the default (5 min) keeps last_used_at useful without a write per request",
    "upstream_timeout_s": "the default (300 s of silence between chunks) suits uploads and Server-Sent Events",
    "max_running_jobs_per_user": "the default (2) is the intended policy; GPU quota bounds the total anyway",
    "ingest_max_concurrent": "the default (20 ingestions at once, all users) fits the ingest job's default quota",
    **{
        f"quota_{limit}": "the per-user quotas' defaults (docs/architecture.md, Quotas) are the intended policy"
        for limit in (
            "processing_datasets",
            "stored_datasets",
            "stored_bytes",
            "open_streams",
            "running_evaluations",
            "monthly_gpu_hours",
        )
    },
    "heartbeat_stale_s": "the default (120 s) matches the trainer's heartbeat",
    "start_timeout_s": "the default (15 min) covers a GPU cold start and the model download",
    "reconcile_every_s": "the default (30 s) is the intended policy",
    "engine_api_key": "the local engine's bearer token; the gcp profile refuses it (ID tokens for the engine instead)",
    "engine_timeout_s": "the default (300 s) covers a long generation on a cold engine",
    "evaluation_concurrency": "the default (32) keeps the engine's next batch filling while one runs",
    "evaluation_heartbeat_s": "the default (20 s) is the intended policy; the service and the executions must agree",
    "export_url_ttl_s": "the default (1 hour) is the intended lifetime of a download link",
    "convert_heartbeat_s": "the default (20 s) is the intended policy; the service and the executions must agree",
    "gguf_converter_dir": "set by the image (RUNTUNE_GGUF_CONVERTER_DIR in jobs/convert/Dockerfile), where it puts it",
    "gguf_split_max_size": "the default (4G per GGUF file) fits the convert job's default memory with room to spare",
    "convert_threads": "the default (0: every vCPU of the task) is the intended policy",
    "webhook_dispatch_token": "local profile only; the gcp profile refuses it (Cloud Tasks' OIDC tokens instead)",
    "webhook_allow_loopback": "local profile only; the gcp profile refuses it",
    "webhook_dispatch_url": "the default (the service's own URL, its audience, + the dispatcher's path) is the target",
    "webhook_timeout_s": "the default (10 s per delivery attempt) is the intended policy",
}

# Fields of a shared class that mean nothing to one deployable.
_TRAINER_ONLY = {
    "offered_gpus": "only the training service launches the trainer jobs (one per GPU offered)",
    "trainer_task_timeout_s": "only the training service launches the trainer",
    **{
        f"vertex_{name}": "only the training service launches the trainer on Vertex AI"
        for name in ("machines", "trainer_image", "service_account", "task_timeout_s")
    },
}
_WEBHOOKS_ONLY = {
    f"webhook_{name}": "only the training service sweeps the outbox and dispatches webhooks"
    for name in (
        "queue",
        "dispatch_url",
        "dispatch_service_account",
        "dispatch_token",
        "allow_loopback",
        "retry_window_s",
        "min_backoff_s",
        "max_backoff_s",
        "timeout_s",
    )
}
NOT_THIS_DEPLOYABLE: dict[str, dict[str, str]] = {
    "preprocessing": {
        **_TRAINER_ONLY,
        **_WEBHOOKS_ONLY,
    },
    "inference": {
        **_TRAINER_ONLY,
        **_WEBHOOKS_ONLY,
        "ingest_task_timeout_s": "only the preprocessing service launches ingestions",
    },
    "training": {
        "ingest_task_timeout_s": "only the preprocessing service launches ingestions",
    },
}

PROJECT_ID = "runtune-test"
PROJECT_NUMBER = "123456789012"


def env_variable(field_name: str) -> str:
    return f"RUNTUNE_{field_name.upper()}"


def read_by_env_prefix(cls: type[BaseSettings]) -> dict[str, str]:
    """field -> variable, for the fields pydantic-settings reads as RUNTUNE_<FIELD>."""
    assert cls.model_config["env_prefix"] == "RUNTUNE_"
    return {name: env_variable(name) for name, info in cls.model_fields.items() if info.validation_alias is None}


def expected_variables(deployable: str) -> set[str]:
    fields = read_by_env_prefix(DEPLOYABLES[deployable])
    skipped = set(UNSET) | set(NOT_THIS_DEPLOYABLE.get(deployable, {}))
    return {variable for name, variable in fields.items() if name not in skipped}


def env_map_reference(tf: Config, deployable: str) -> str:
    """Which local.env entry the deployable's Cloud Run container takes its variables from."""
    if deployable == "trainer":
        (container,) = blocks(tf.resource("google_cloud_run_v2_job", deployable), "template", "template", "containers")
    elif deployable in ("evaluate", "ingest", "convert"):
        job = tf.instance(f'google_cloud_run_v2_job.cpu["{deployable}"]')
        (container,) = blocks(job, "template", "template", "containers")
    else:
        service = tf.instance(f'google_cloud_run_v2_service.cpu["{deployable}"]')
        (container,) = blocks(service, "template", "containers")
    assert "env" not in container, f"{deployable}: every variable comes from local.env.{deployable}"
    (env,) = dynamic_blocks(container, "env")
    assert env["content"][0] == {"name": "${env.key}", "value": "${env.value}"}
    return env["for_each"]


def test_every_unset_field_exists() -> None:
    fields = {name for cls in DEPLOYABLES.values() for name in cls.model_fields}
    assert set(UNSET) <= fields, set(UNSET) - fields
    for deployable, extra in NOT_THIS_DEPLOYABLE.items():
        assert set(extra) <= set(DEPLOYABLES[deployable].model_fields), deployable


@pytest.mark.parametrize("deployable", sorted(DEPLOYABLES))
def test_terraform_sets_exactly_the_settings_the_code_reads(tf: Config, deployable: str) -> None:
    assert env_map_reference(tf, deployable) in (f"${{local.env.{deployable}}}", f'${{local.env["{deployable}"]}}')
    actual = set(tf.local_value("env")[deployable])
    expected = expected_variables(deployable)
    assert actual - expected == set(), f"{deployable}: Terraform sets variables the code does not read"
    assert expected - actual == set(), f"{deployable}: the code reads variables Terraform does not set"


@pytest.mark.parametrize("deployable", sorted(DEPLOYABLES))
def test_rendered_environment_loads_under_the_gcp_profile(
    tf: Config, deployable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Terraform's default sign-up policy (invitations only) needs its list: a variable validation says so.
    invited = ["ops@example.com"]
    variables = {"project_id": PROJECT_ID, "image_tag": "0" * 40, "signup_invited_emails": invited}
    renderer = Renderer(tf, variables, PROJECT_NUMBER)
    env = {name: renderer.render(value) for name, value in tf.local_value("env")[deployable].items()}
    for name in [*EMULATOR_VARIABLES, *(n for n in os.environ if n.startswith("RUNTUNE_"))]:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    loaded = DEPLOYABLES[deployable]()
    assert loaded.profile.value == "gcp"
    assert loaded.project_id == PROJECT_ID
    assert loaded.bucket == f"{PROJECT_ID}-runtune-data"
    gateway_url = f"https://runtune-gateway-{PROJECT_NUMBER}.us-central1.run.app"
    if isinstance(loaded, GatewaySettings):
        assert loaded.internal_token is None
        assert loaded.cors_origins == [gateway_url]
        assert (loaded.signup, loaded.signup_invited_emails) == (SignupPolicy.invite, invited)
        for service, url in loaded.upstreams.items():
            # The gateway mints ID tokens for the URL it calls; the service expects exactly that audience.
            assert url == f"https://runtune-{service}-{PROJECT_NUMBER}.us-central1.run.app"
    if isinstance(loaded, ServiceSettings):
        assert loaded.service_audience == f"https://runtune-{deployable}-{PROJECT_NUMBER}.us-central1.run.app"
        assert loaded.gateway_service_account == f"runtune-gateway@{PROJECT_ID}.iam.gserviceaccount.com"
        if deployable == "training":
            assert loaded.trainer_task_timeout_s == tf.variables["trainer_task_timeout_s"]["default"]
            # By default every GPU of the table is offered: one trainer job each (tests/infra/test_gpu.py).
            assert loaded.offered_gpus == [gpu.name for gpu in GPU_TABLE]
            assert loaded.cloud_run_job_prefix == tf.locals["job_prefix"]
            # Vertex AI is opt-in (its GPU quota is requested first); its jobs run the trainer's image
            # as the trainer's account.
            assert loaded.vertex_machines == tf.variables["vertex_machines"]["default"] == []
            assert loaded.vertex_trainer_image == renderer.render("${local.images.trainer}")
            assert loaded.vertex_service_account == f"runtune-trainer@{PROJECT_ID}.iam.gserviceaccount.com"
            assert loaded.vertex_task_timeout_s == tf.variables["vertex_task_timeout_s"]["default"]
    if isinstance(loaded, EngineClientSettings):
        # The inference service and its evaluation executions reach the engine alike.
        assert loaded.engine_url == f"https://runtune-engine-{PROJECT_NUMBER}.us-central1.run.app"
        assert loaded.adapter_root == "/mnt/runtune-data" and not loaded.engine_adapter_download
    if isinstance(loaded, InferenceSettings):
        assert loaded.evaluation_timeout_s == tf.variables["evaluate_task_timeout_s"]["default"]


def test_image_level_settings_are_set_by_the_images() -> None:
    gateway = (REPO_ROOT / "gateway" / "Dockerfile").read_text()
    for name in ("host", "port", "frontend_dir"):
        assert re.search(rf"\b{env_variable(name)}=", gateway), f"gateway/Dockerfile must set {env_variable(name)}"
    convert = (REPO_ROOT / "jobs" / "convert" / "Dockerfile").read_text()
    assert re.search(rf"\b{env_variable('gguf_converter_dir')}=", convert), "jobs/convert/Dockerfile must set it"
    services = (REPO_ROOT / "services" / "Dockerfile").read_text()
    for name in ("UVICORN_HOST", "UVICORN_PORT", "UVICORN_APP", "UVICORN_FACTORY"):
        assert re.search(rf"\b{name}=", services), f"services/Dockerfile must set {name}"


def test_no_local_only_or_emulator_variable_is_set(tf: Config) -> None:
    forbidden = set(EMULATOR_VARIABLES) | {"RUNTUNE_INTERNAL_TOKEN", "RUNTUNE_INTERNAL_TOKEN_SHA256"}
    for deployable, env in tf.local_value("env").items():
        assert not forbidden & set(env), deployable
        assert env["RUNTUNE_PROFILE"] == "gcp", deployable


def test_vertex_jobs_get_the_environment_terraform_gives_the_trainer_jobs(
    tf: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CustomJob has no deployed template: the training service sends the trainer's variables from
    its own settings (runtune/wiring.py vertex_trainer_env), the same names and values Terraform sets
    on the Cloud Run trainer jobs."""
    from runtune.wiring import vertex_trainer_env

    renderer = Renderer(tf, {"project_id": PROJECT_ID, "image_tag": "0" * 40}, PROJECT_NUMBER)
    rendered = {
        role: {n: renderer.render(v) for n, v in tf.local_value("env")[role].items()}
        for role in ("training", "trainer")
    }
    for name in [*EMULATOR_VARIABLES, *(n for n in os.environ if n.startswith("RUNTUNE_"))]:
        monkeypatch.delenv(name, raising=False)
    for name, value in rendered["training"].items():
        monkeypatch.setenv(name, value)
    assert vertex_trainer_env(ServiceSettings()) == rendered["trainer"]
