"""The one composition place: which adapter backs each port, by profile, for every deployable (the
gateway, the three services, the trainer, the ingest and evaluate executions).

Locally the cloud adapters themselves run against the emulators (the Google clients honour the
emulator variables), so only the job launcher, the secret store and the internal credential have
local adapters.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, TypeVar

from runtune.logging import configure_logging
from runtune.ports.blobs import BlobStore
from runtune.ports.engine import InferenceEngine
from runtune.ports.identity import IdentityVerifier
from runtune.ports.launcher import JobLauncher, Workload
from runtune.ports.metadata import MetadataStore
from runtune.ports.secrets import SecretStore
from runtune.ports.tasks import TaskQueue
from runtune.settings import (
    EMULATOR_VARIABLES,
    CommonSettings,
    EngineClientSettings,
    GatewaySettings,
    ServiceSettings,
    SettingsError,
)
from runtune.webhooks.destinations import DestinationPolicy

if TYPE_CHECKING:
    from runtune.internal_auth import InternalCredentialVerifier

if TYPE_CHECKING:
    from runtune.adapters.vertex_launcher import VertexJobLauncher
    from runtune.api_keys import ApiKeyVerifier
    from runtune.internal_auth import InternalCredentialMinter, InternalCredentialVerifier

# Settings whose names look like secrets (launch_contract.looks_like_secret) but that name no secret:
# the local file secret store's folder. A local execution reads users' tokens from the same folder
# as the services that wrote them; in the cloud it is unset and executions use Secret Manager.
NOT_SECRETS = frozenset({"RUNTUNE_SECRETS_DIR"})

S = TypeVar("S", bound=CommonSettings)


def execution_settings(name: str, argv: list[str], settings_class: type[S], *, argument: str) -> S | None:
    """The start every execution shares (`python -m jobs.<name> <argument>`): one id on the command
    line, the settings read, the logs configured. None when either is wrong (said on stdout, the
    execution's log): the caller exits 2."""
    if len(argv) != 1 or argv[0].startswith("-"):
        print(f"usage: python -m jobs.{name} <{argument}>", flush=True)
        return None
    try:
        settings = settings_class()
    except (SettingsError, ValueError) as exc:
        print(f"{name}: invalid configuration: {exc}", flush=True)
        return None
    configure_logging(name, settings.log_level)
    return settings


def metadata_store(settings: CommonSettings, *, deployable: str) -> MetadataStore:
    """`deployable`: the caller's name in `runtune.permissions.DEPLOYABLES`. Locally its store refuses
    the collections its cloud account could not use (IAM does that in the cloud)."""
    from runtune.adapters.firestore import FirestoreMetadataStore
    from runtune.adapters.permitted import PermittedMetadataStore
    from runtune.indexes import COMPOSITE_INDEXES

    # The emulator serves any query; real Firestore refuses one without its composite index. Locally
    # the adapter refuses it too, so a missing index fails the local platform's tests, not production.
    store = FirestoreMetadataStore.for_project(
        settings.project_id,
        enforce_indexes=COMPOSITE_INDEXES if settings.is_local else None,
        query_log=settings.firestore_query_log,
    )
    return PermittedMetadataStore(store, deployable) if settings.is_local else store


def blob_store(settings: CommonSettings, *, deployable: str) -> BlobStore:
    """`deployable` as for `metadata_store`: locally the store refuses the object prefixes its cloud
    account could not read, write or delete."""
    from runtune.adapters.gcs import GcsBlobStore
    from runtune.adapters.permitted import PermittedBlobStore

    store = GcsBlobStore.for_bucket(settings.project_id, settings.bucket)
    return PermittedBlobStore(store, deployable) if settings.is_local else store


def secret_store(settings: CommonSettings, *, deployable: str) -> SecretStore:
    if settings.is_local:
        from runtune.adapters.file_secrets import LocalFileSecretStore
        from runtune.adapters.permitted import PermittedSecretStore

        return PermittedSecretStore(LocalFileSecretStore(settings.local_secrets_dir), deployable)
    from runtune.adapters.secret_manager import SecretManagerStore

    return SecretManagerStore(settings.project_id)


def job_launcher(settings: ServiceSettings, workload: Workload = Workload.train) -> JobLauncher:
    """The launcher of one workload's executions. Locally each service runs its own workload's child
    processes; in the cloud one client reaches every job of the deployment."""
    if settings.is_local:
        from runtune.adapters.local_launcher import LocalProcessLauncher

        command, max_concurrent = {
            Workload.train: (settings.trainer_command, settings.local_max_concurrent_jobs),
            Workload.ingest: (settings.ingest_command, settings.local_max_concurrent_cpu_jobs),
            Workload.evaluate: (settings.evaluate_command, settings.local_max_concurrent_cpu_jobs),
            Workload.convert: (settings.convert_command, settings.local_max_concurrent_cpu_jobs),
        }[workload]
        return LocalProcessLauncher(
            command,
            max_concurrent=max_concurrent,
            log_dir=settings.local_dir / "logs" / str(workload),
            base_env=local_trainer_env(),
            workload=workload,
        )
    from runtune.adapters.cloud_run_launcher import CloudRunJobLauncher

    options = {"api_endpoint": settings.run_api_endpoint} if settings.run_api_endpoint else None
    cloud_run = CloudRunJobLauncher(
        settings.project_id, settings.region, job_prefix=settings.cloud_run_job_prefix, client_options=options
    )
    if workload is not Workload.train or not settings.vertex_machines:
        return cloud_run
    # Training on both backends: each job launches where its plan put it (runtune/compute.py).
    from runtune.adapters.compute_launcher import ComputeLauncher

    return ComputeLauncher(cloud_run, vertex_launcher(settings))


def vertex_launcher(settings: ServiceSettings) -> VertexJobLauncher:
    """Vertex AI custom training with the trainer's image, account and environment (Terraform sets them)."""
    from runtune.adapters.vertex_launcher import VertexJobLauncher

    assert settings.vertex_trainer_image and settings.vertex_service_account  # the settings validator checks
    options = {"api_endpoint": settings.vertex_api_endpoint} if settings.vertex_api_endpoint else None
    return VertexJobLauncher(
        settings.project_id,
        settings.region,
        image=settings.vertex_trainer_image,
        service_account=settings.vertex_service_account,
        base_env=vertex_trainer_env(settings),
        job_prefix=settings.cloud_run_job_prefix,
        client_options=options,
    )


# The trainer's settings Terraform sets on its Cloud Run jobs (infra/cloud_run.tf local.env.trainer);
# the training service holds the same values (one deployment, one project, region and bucket).
TRAINER_SETTINGS = ("profile", "project_id", "region", "bucket", "log_level")


def vertex_trainer_env(settings: CommonSettings) -> dict[str, str]:
    """What a Vertex AI CustomJob's trainer gets besides the launch contract: the variables the Cloud
    Run trainer jobs have from Terraform (a CustomJob has no deployed template to carry them)."""
    return {f"RUNTUNE_{name.upper()}": str(getattr(settings, name)) for name in TRAINER_SETTINGS}


def local_trainer_env() -> dict[str, str]:
    """What a local execution inherits: the emulators and the non-secret settings, as on Cloud Run,
    where Terraform sets the same variables on the jobs."""
    from runtune.adapters.launch_contract import looks_like_secret

    wanted = {*EMULATOR_VARIABLES, "GCLOUD_PROJECT", "PYTHONPATH"}
    return {
        name: value
        for name, value in os.environ.items()
        if (name in wanted or name.startswith("RUNTUNE_")) and (name in NOT_SECRETS or not looks_like_secret(name))
    }


def inference_engine(settings: EngineClientSettings) -> InferenceEngine:
    """The OpenAI-compatible engine: vLLM behind Cloud Run IAM (an ID token for its URL, minted for the
    caller's own account: the inference service's or the evaluate job's), or the local engine server
    with its bearer token."""
    from runtune.adapters.openai_engine import OpenAIEngine

    if settings.is_local:
        return OpenAIEngine(
            settings.engine_url, api_key=settings.local_engine_token(), timeout_s=settings.engine_timeout_s
        )
    from runtune.internal_auth import GoogleIdTokenMinter

    minter = GoogleIdTokenMinter()
    return OpenAIEngine(
        settings.engine_url,
        authorization=lambda: minter.authorization_async(settings.engine_url),
        timeout_s=settings.engine_timeout_s,
    )


def identity_verifier(settings: GatewaySettings) -> IdentityVerifier:
    """Users' Firebase ID tokens (the Auth emulator locally, through `FIREBASE_AUTH_EMULATOR_HOST`)."""
    from runtune.adapters.firebase_identity import FirebaseIdentityVerifier

    return FirebaseIdentityVerifier(
        settings.project_id, check_revoked=settings.token_check_revoked, cache_ttl_s=settings.token_cache_s
    )


def api_key_verifier(settings: GatewaySettings) -> ApiKeyVerifier:
    """Runtune API keys, looked up (hashed) in the gateway's metadata store, opened on first use."""
    from runtune.api_keys import ApiKeyVerifier

    return ApiKeyVerifier(
        lambda: metadata_store(settings, deployable="gateway"),
        cache_s=settings.api_key_cache_s,
        touch_every_s=settings.api_key_touch_every_s,
    )


def internal_minter(settings: GatewaySettings) -> InternalCredentialMinter:
    """What the gateway sends the private services: the local internal token, or a Google-signed ID token."""
    from runtune.internal_auth import GoogleIdTokenMinter, LocalTokenMinter

    if settings.internal_token is not None:
        return LocalTokenMinter(settings.internal_token.get_secret_value())
    return GoogleIdTokenMinter()


def internal_verifier(settings: ServiceSettings) -> InternalCredentialVerifier:
    """How a private service checks that a request came from the gateway (`internal_minter`)."""
    from runtune.internal_auth import GoogleIdTokenVerifier, LocalTokenVerifier

    if settings.is_local:
        assert settings.internal_token_sha256  # checked by the settings validator
        return LocalTokenVerifier(settings.internal_token_sha256)
    assert settings.service_audience and settings.gateway_service_account
    return GoogleIdTokenVerifier(settings.service_audience, settings.gateway_service_account)


def webhook_dispatch_token(settings: ServiceSettings) -> str:
    """Local profile: the bearer token the queue calls the dispatcher with (`runtune dev up` sets one
    for the platform; a service started alone makes its own, good for its own lifetime)."""
    global _process_dispatch_token
    if settings.webhook_dispatch_token is not None:
        return settings.webhook_dispatch_token.get_secret_value()
    if _process_dispatch_token is None:
        import secrets

        _process_dispatch_token = secrets.token_urlsafe(32)
    return _process_dispatch_token


_process_dispatch_token: str | None = None


def webhook_queue(settings: ServiceSettings) -> TaskQueue:
    """The webhooks' delivery queue: Cloud Tasks, or its emulator locally; its target is this
    service's dispatcher (`services/training/webhooks_api.py`)."""
    from runtune.adapters.cloud_tasks import CloudTasksQueue

    path = "/internal/webhooks/deliver"
    if settings.is_local:
        if not settings.tasks_emulator_host:
            raise SettingsError("profile 'local' needs CLOUD_TASKS_EMULATOR_HOST (set by `runtune dev up`)")
        url = settings.webhook_dispatch_url or f"http://127.0.0.1:{settings.port}{path}"
        return CloudTasksQueue.for_emulator(
            settings.tasks_emulator_host, settings.webhook_queue_path, url, webhook_dispatch_token(settings)
        )
    from google.cloud import tasks_v2

    if not (settings.webhook_dispatch_service_account and settings.service_audience):
        raise SettingsError("profile 'gcp' needs RUNTUNE_WEBHOOK_DISPATCH_SERVICE_ACCOUNT for webhooks")
    return CloudTasksQueue(
        tasks_v2.CloudTasksClient(),
        settings.webhook_queue_path,
        settings.webhook_dispatch_url or settings.service_audience.rstrip("/") + path,
        oidc_service_account=settings.webhook_dispatch_service_account,
        oidc_audience=settings.service_audience,
    )


def webhook_dispatch_verifier(settings: ServiceSettings) -> InternalCredentialVerifier:
    """Who may call the dispatcher: the queue's OIDC identity (cloud) or the local dispatch token."""
    from runtune.internal_auth import GoogleIdTokenVerifier, LocalTokenVerifier, token_sha256

    if settings.is_local:
        return LocalTokenVerifier(token_sha256(webhook_dispatch_token(settings)))
    assert settings.service_audience and settings.webhook_dispatch_service_account
    return GoogleIdTokenVerifier(settings.service_audience, settings.webhook_dispatch_service_account)


def webhook_policy(settings: ServiceSettings) -> DestinationPolicy:
    """Where webhooks may go: https and public addresses in the cloud; loopback too locally, by setting."""
    return DestinationPolicy(require_https=not settings.is_local, allow_loopback=settings.webhook_allow_loopback)
