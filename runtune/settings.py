"""Settings: one typed class per process, all read from `RUNTUNE_*` variables.

`CommonSettings` holds what every deployable shares (profile, project, bucket, emulator hosts);
each deployable has its own small subclass. The embedded defaults describe the local platform, so
`runtune dev up` needs no configuration at all; the `gcp` profile refuses anything that would
weaken the cloud (emulator variables, a shared local token).
"""

from __future__ import annotations

import dataclasses
import os
from enum import StrEnum
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtune import serving
from runtune.compute import VERTEX_MACHINE_NAMES
from runtune.estimate import GPU_TABLE
from runtune.quotas import Quotas

# With FIREBASE_AUTH_EMULATOR_HOST set, firebase-admin skips token signature checks entirely, and the
# other two silently point the Google clients at unauthenticated local servers.
EMULATOR_VARIABLES = (
    "FIREBASE_AUTH_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
    "STORAGE_EMULATOR_HOST",
    "CLOUD_TASKS_EMULATOR_HOST",
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LOCAL_DIR = REPO_ROOT / ".runtune"
# The llama-cpp-python release whose converter and runtime make GGUF exports (Makefile, jobs/convert/Dockerfile).
LLAMA_CPP_PYTHON = "0.3.36"


class Profile(StrEnum):
    local = "local"
    gcp = "gcp"


class SignupPolicy(StrEnum):
    """Who may use the platform once signed in to Firebase Auth (the gateway checks every request)."""

    open = "open"  # any account
    domains = "domains"  # verified email addresses at RUNTUNE_SIGNUP_ALLOWED_DOMAINS
    invite = "invite"  # verified email addresses listed in RUNTUNE_SIGNUP_INVITED_EMAILS


class SettingsError(RuntimeError):
    """A configuration that must not start (raised at startup, never at request time)."""


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RUNTUNE_", extra="ignore", frozen=True)

    profile: Profile = Profile.local
    project_id: str = "demo-runtune"
    region: str = "us-central1"
    bucket: str = "runtune-local"
    log_level: str = "INFO"
    local_dir: Path = DEFAULT_LOCAL_DIR
    # Local profile: the file secret store's folder (users' tokens), shared by every deployable that
    # reads them: the training service, the ingest job and the trainer.
    secrets_dir: Path | None = None
    # A JSONL file the metadata adapter appends each distinct Firestore query shape to (tests' index coverage).
    firestore_query_log: Path | None = None
    # How often the trainer reads its job's stop flags (cancel, pause), in seconds: one document read.
    stop_poll_s: float = Field(default=5.0, gt=0, le=60)
    # How long after SIGTERM the trainer waits for its loop to reach a safe point before its watchdog
    # records the stop and ends it. Cloud Run kills the task 10 s after SIGTERM, so the default leaves
    # the record (at most 3 s) room; a longer grace suits only machines that wait longer (locally, tests
    # on loaded CPUs where one step outlasts 5 s).
    stop_grace_s: float = Field(default=5.0, gt=0, le=600)

    # Read from the variables the Google client libraries themselves read, so what the settings
    # validate is exactly what the clients will use.
    firestore_emulator_host: str | None = Field(default=None, validation_alias=AliasChoices("FIRESTORE_EMULATOR_HOST"))
    storage_emulator_host: str | None = Field(default=None, validation_alias=AliasChoices("STORAGE_EMULATOR_HOST"))
    auth_emulator_host: str | None = Field(default=None, validation_alias=AliasChoices("FIREBASE_AUTH_EMULATOR_HOST"))

    @model_validator(mode="after")
    def _profile_is_consistent(self) -> CommonSettings:
        if self.profile is Profile.gcp:
            present = [name for name in EMULATOR_VARIABLES if os.environ.get(name)]
            if present:
                raise SettingsError(
                    f"profile 'gcp' refuses to start with emulator variables set: {', '.join(present)}. "
                    "Unset them: with FIREBASE_AUTH_EMULATOR_HOST set, firebase-admin accepts "
                    "unsigned tokens."
                )
            if self.project_id.startswith("demo-"):
                raise SettingsError("profile 'gcp' needs RUNTUNE_PROJECT_ID set to a real project id")
        else:
            missing = [
                name
                for name, value in (
                    ("FIRESTORE_EMULATOR_HOST", self.firestore_emulator_host),
                    ("STORAGE_EMULATOR_HOST", self.storage_emulator_host),
                    ("FIREBASE_AUTH_EMULATOR_HOST", self.auth_emulator_host),
                )
                if not value
            ]
            if missing:
                raise SettingsError(
                    f"profile 'local' needs the emulators; {', '.join(missing)} not set. "
                    "Start the platform with `runtune dev up`, which sets them."
                )
        return self

    @property
    def is_local(self) -> bool:
        return self.profile is Profile.local

    @property
    def local_secrets_dir(self) -> Path:
        return self.secrets_dir or self.local_dir / "secrets"


class GatewaySettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = 8080
    preprocessing_url: str = "http://127.0.0.1:8081"
    training_url: str = "http://127.0.0.1:8082"
    inference_url: str = "http://127.0.0.1:8083"
    # Local profile: the raw token only the gateway holds; services keep its SHA-256.
    internal_token: SecretStr | None = None
    rate_limit_per_minute: int = Field(default=600, ge=1)
    rate_limit_burst: int = Field(default=120, ge=1)
    cors_origins: list[str] = ["http://127.0.0.1:8080", "http://localhost:8080", "http://localhost:5173"]
    frontend_dir: Path = REPO_ROOT / "frontend" / "dist"
    # Looks the user up on every first sight of a token: catches disabled users, revoked sessions,
    # and (in the emulator, which signs nothing) tokens naming users that do not exist.
    token_check_revoked: bool = True
    # API keys: how long a key's lookup is trusted (so a revoked key stops working within this bound on
    # every instance), and how often its `last_used_at` is written (at most once per this, per instance).
    api_key_cache_s: float = Field(default=10.0, ge=0, le=300)
    api_key_touch_every_s: float = Field(default=300.0, ge=0)
    # How long a verified ID token is trusted before the user is looked up again: the most time a
    # disabled account or revoked session keeps access (ID tokens themselves live an hour). 0: no cache.
    token_cache_s: float = Field(default=60.0, ge=0, le=3600)
    upstream_timeout_s: float = 300.0
    # The web UI's Firebase configuration (apiKey, authDomain, projectId, appId), served at
    # `/config.json` in the gcp profile. Public values: they identify the project and grant nothing,
    # so one gateway image serves the UI in any project. Local: derived from the Auth emulator.
    firebase_web_config: dict[str, str] | None = None
    # Who may use the platform (gateway/signup.py). Firebase lets anyone with the public web API key
    # create an account, so in the cloud the default is invitations only; unset, the local platform is
    # open (its demo account and tests sign up freely). Both lists compare case-insensitively.
    signup_policy: SignupPolicy | None = None
    signup_allowed_domains: list[str] = []
    signup_invited_emails: list[str] = []

    @model_validator(mode="after")
    def _gateway_credential(self) -> GatewaySettings:
        if self.is_local and self.internal_token is None:
            raise SettingsError("profile 'local' needs RUNTUNE_INTERNAL_TOKEN (set by `runtune dev up`)")
        if not self.is_local and self.internal_token is not None:
            raise SettingsError("profile 'gcp' uses Google-signed ID tokens; unset RUNTUNE_INTERNAL_TOKEN")
        return self

    @model_validator(mode="after")
    def _signup_admits_someone(self) -> GatewaySettings:
        # A policy whose list is empty admits nobody: a configuration mistake, refused at start.
        if self.signup is SignupPolicy.domains and not self.signup_allowed_domains:
            raise SettingsError("RUNTUNE_SIGNUP_POLICY 'domains' needs RUNTUNE_SIGNUP_ALLOWED_DOMAINS (a JSON list)")
        if self.signup is SignupPolicy.invite and not self.signup_invited_emails:
            raise SettingsError("RUNTUNE_SIGNUP_POLICY 'invite' needs RUNTUNE_SIGNUP_INVITED_EMAILS (a JSON list)")
        if bad := [email for email in self.signup_invited_emails if email.count("@") != 1]:
            raise SettingsError(f"RUNTUNE_SIGNUP_INVITED_EMAILS holds entries that are not emails: {', '.join(bad)}")
        if bad := [domain for domain in self.signup_allowed_domains if "@" in domain or "." not in domain]:
            raise SettingsError(f"RUNTUNE_SIGNUP_ALLOWED_DOMAINS holds entries that are not domains: {', '.join(bad)}")
        return self

    @property
    def signup(self) -> SignupPolicy:
        """The policy in force: the setting, else open locally and invitations only in the cloud."""
        if self.signup_policy is not None:
            return self.signup_policy
        return SignupPolicy.open if self.is_local else SignupPolicy.invite

    @property
    def upstreams(self) -> dict[str, str]:
        return {
            "preprocessing": self.preprocessing_url,
            "training": self.training_url,
            "inference": self.inference_url,
        }


class ServiceSettings(CommonSettings):
    """Settings of the three private services (preprocessing, training, inference)."""

    host: str = "127.0.0.1"
    port: int = 8081
    # Local profile: SHA-256 (hex) of the gateway's internal token; the raw token never reaches a service.
    internal_token_sha256: str | None = None
    # Cloud profile: the gateway's service account and the audience its ID tokens carry (this service's URL).
    gateway_service_account: str | None = None
    service_audience: str | None = None
    # Cloud Run jobs are named `<prefix>-trainer-<gpu>`, `<prefix>-ingest`, `<prefix>-evaluate`
    # (runtune.adapters.launch_contract.cloud_run_job_name; Terraform names them the same way).
    cloud_run_job_prefix: str = "runtune"
    # The GPU types this deployment has a trainer job for (Terraform sets it from its GPU list).
    offered_gpus: list[str] = Field(default_factory=lambda: [gpu.name for gpu in GPU_TABLE])
    # Vertex AI custom training (runtune/compute.py, runtune/adapters/vertex_launcher.py): the machine
    # types of the Vertex table this deployment may train on (empty: Cloud Run only; Terraform sets it),
    # the trainer's image and service account the CustomJobs run with, and their timeout (Vertex runs
    # for days: the trainer job's Cloud Run limit does not apply).
    vertex_machines: list[str] = Field(default_factory=list)
    vertex_trainer_image: str | None = None
    vertex_service_account: str | None = None
    vertex_task_timeout_s: int = Field(default=3 * 24 * 3600, ge=60, le=7 * 24 * 3600)
    vertex_api_endpoint: str | None = None
    # Local profile: the command of each workload's executions, and how many run at once.
    trainer_command: list[str] = ["python", "-m", "jobs.trainer"]
    ingest_command: list[str] = ["python", "-m", "jobs.ingest"]
    evaluate_command: list[str] = ["python", "-m", "jobs.evaluate"]
    convert_command: list[str] = ["python", "-m", "jobs.convert"]
    local_max_concurrent_jobs: int = Field(default=1, ge=1)
    local_max_concurrent_cpu_jobs: int = Field(default=2, ge=1)
    # Dataset ingestion: one execution per dataset (Cloud Run caps a CPU job's task at 24 hours);
    # Terraform sets the same value on the `runtune-ingest` job.
    ingest_task_timeout_s: int = Field(default=3600, ge=60, le=24 * 3600)
    run_api_endpoint: str | None = None
    # Jobs: how many may run per user at once (the rest wait `queued`, in order), and when a quiet
    # trainer is checked against its execution.
    max_running_jobs_per_user: int = Field(default=2, ge=1)
    heartbeat_stale_s: float = Field(default=120.0, gt=0)
    start_timeout_s: float = Field(default=900.0, gt=0)
    reconcile_every_s: float = Field(default=30.0, gt=0)
    # Cloud Run GPU job tasks run at most 1 hour (12 in preview); the trainer resumes across tasks.
    trainer_task_timeout_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    # Dataset ingestions running at once, all users together (more wait `processing`, phase `queued`,
    # and start round-robin across users). Locally the CPU launcher's slots bound it instead.
    ingest_max_concurrent: int = Field(default=20, ge=1)
    # Per-user quotas (runtune/quotas.py; docs/architecture.md "Quotas"). Running jobs are bounded by
    # max_running_jobs_per_user above: the rest wait queued.
    quota_processing_datasets: int = Field(default=Quotas.processing_datasets, ge=1)
    quota_stored_datasets: int = Field(default=Quotas.stored_datasets, ge=1, le=10_000)
    quota_stored_bytes: int = Field(default=Quotas.stored_bytes, ge=1)
    quota_open_streams: int = Field(default=Quotas.open_streams, ge=1)
    quota_running_evaluations: int = Field(default=Quotas.running_evaluations, ge=1)
    quota_monthly_gpu_hours: float = Field(default=Quotas.monthly_gpu_hours, gt=0)
    # Webhooks (training service; docs/architecture.md "Webhooks"). The queue is Cloud Tasks
    # (`gcloud-tasks-emulator` locally, at CLOUD_TASKS_EMULATOR_HOST); its target is this service's
    # dispatcher, called with an OIDC token for `webhook_dispatch_service_account` (cloud) or with
    # `webhook_dispatch_token` (local: `runtune dev up` sets one; else one per process).
    webhook_queue: str = "runtune-webhooks"
    webhook_dispatch_url: str | None = None
    webhook_dispatch_service_account: str | None = None
    webhook_dispatch_token: SecretStr | None = None
    tasks_emulator_host: str | None = Field(default=None, validation_alias=AliasChoices("CLOUD_TASKS_EMULATOR_HOST"))
    # Local profile only: receivers on loopback (a developer's machine). Private, link-local and
    # metadata addresses are refused in every profile.
    webhook_allow_loopback: bool = False
    # How long an event is retried before its endpoint is disabled, and the queue's backoff (Terraform
    # gives the queue the same values: infra/tasks.tf).
    webhook_retry_window_s: float = Field(default=24 * 3600, gt=0)
    webhook_min_backoff_s: float = Field(default=10.0, gt=0)
    webhook_max_backoff_s: float = Field(default=3600.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=60)

    @property
    def quotas(self) -> Quotas:
        # Each limit is the setting of its name with the `quota_` prefix.
        return Quotas(**{limit.name: getattr(self, f"quota_{limit.name}") for limit in dataclasses.fields(Quotas)})

    @property
    def ingest_concurrency(self) -> int:
        """Ingestions launched at once: locally no more than the launcher runs, so none waits in its FIFO."""
        if self.is_local:
            return min(self.ingest_max_concurrent, self.local_max_concurrent_cpu_jobs)
        return self.ingest_max_concurrent

    @model_validator(mode="after")
    def _known_gpus(self) -> ServiceSettings:
        known = {gpu.name for gpu in GPU_TABLE}
        if unknown := [name for name in self.offered_gpus if name not in known]:
            raise SettingsError(f"RUNTUNE_OFFERED_GPUS names GPUs not in the GPU table: {', '.join(unknown)}")
        if unknown := [name for name in self.vertex_machines if name not in VERTEX_MACHINE_NAMES]:
            raise SettingsError(f"RUNTUNE_VERTEX_MACHINES names machines not in the Vertex table: {', '.join(unknown)}")
        if self.vertex_machines and self.is_local:
            raise SettingsError("profile 'local' has no Vertex AI: unset RUNTUNE_VERTEX_MACHINES")
        if self.vertex_machines and not (self.vertex_trainer_image and self.vertex_service_account):
            raise SettingsError(
                "RUNTUNE_VERTEX_MACHINES needs RUNTUNE_VERTEX_TRAINER_IMAGE and RUNTUNE_VERTEX_SERVICE_ACCOUNT"
            )
        return self

    @property
    def webhook_queue_path(self) -> str:
        return f"projects/{self.project_id}/locations/{self.region}/queues/{self.webhook_queue}"

    @model_validator(mode="after")
    def _webhooks_are_safe(self) -> ServiceSettings:
        if not self.is_local:
            if self.webhook_allow_loopback:
                raise SettingsError("profile 'gcp' refuses RUNTUNE_WEBHOOK_ALLOW_LOOPBACK")
            if self.tasks_emulator_host:
                raise SettingsError("profile 'gcp' refuses CLOUD_TASKS_EMULATOR_HOST (an unauthenticated local queue)")
            if self.webhook_dispatch_token is not None:
                raise SettingsError(
                    "profile 'gcp' calls the dispatcher with OIDC; unset RUNTUNE_WEBHOOK_DISPATCH_TOKEN"
                )
        return self

    @model_validator(mode="after")
    def _service_credential(self) -> ServiceSettings:
        if self.is_local and not self.internal_token_sha256:
            raise SettingsError("profile 'local' needs RUNTUNE_INTERNAL_TOKEN_SHA256 (set by `runtune dev up`)")
        if not self.is_local and not (self.gateway_service_account and self.service_audience):
            raise SettingsError("profile 'gcp' needs RUNTUNE_GATEWAY_SERVICE_ACCOUNT and RUNTUNE_SERVICE_AUDIENCE")
        return self


# The local engine's bearer token, written by `runtune dev up` (0600) under the local folder: the
# inference service and its evaluation executions read it there, so it never travels in an
# environment the launcher passes on.
ENGINE_TOKEN_FILE = "engine-token"


class EngineClientSettings(CommonSettings):
    """Reaching the inference engine and making tuned models servable there: what the inference
    service and its evaluation executions (`python -m jobs.evaluate`) share."""

    # The OpenAI-compatible engine: vLLM in the cloud, `python -m engine` locally.
    engine_url: str = "http://127.0.0.1:8084"
    # Local profile: a bearer token the local engine checks (its SHA-256); when unset, the token file
    # `runtune dev up` writes under the local folder. The cloud engine is reached with a
    # Google-signed ID token for `engine_url` instead (Cloud Run IAM).
    engine_api_key: SecretStr | None = None
    # Where the engine reads adapters from. Cloud: the data bucket's read-only volume on the engine
    # (adapters are read by path, no copy). Local: a folder adapters are downloaded into.
    engine_adapter_root: str | None = None
    engine_adapter_download: bool = True
    # Adapters kept loaded in the engine at once (vLLM's --max-loras, from the serving contract,
    # runtune/serving.json); the least recently used goes.
    engine_max_adapters: int = Field(default_factory=lambda: serving.load().max_loras, ge=1, le=64)
    engine_timeout_s: float = Field(default=300.0, gt=0)
    # Examples scored concurrently by one evaluation: two engine batches' worth (a scoring batch holds 64
    # rows, a sample's labels being rows), so the next batch fills while one runs (bench/eval.py).
    evaluation_concurrency: int = Field(default=32, ge=1, le=256)
    # How often a running evaluation saves itself (its heartbeat); the service checks the execution of
    # one whose beat is overdue.
    evaluation_heartbeat_s: float = Field(default=20.0, gt=0, le=600)

    @model_validator(mode="after")
    def _engine_is_reachable(self) -> EngineClientSettings:
        if not self.is_local:
            if "127.0.0.1" in self.engine_url or "localhost" in self.engine_url:
                raise SettingsError("profile 'gcp' needs RUNTUNE_ENGINE_URL set to the engine's Cloud Run URL")
            if self.engine_api_key is not None:
                raise SettingsError("profile 'gcp' reaches the engine with ID tokens; unset RUNTUNE_ENGINE_API_KEY")
            if self.engine_adapter_download or not self.engine_adapter_root:
                raise SettingsError(
                    "profile 'gcp' reads adapters through the engine's bucket volume: set "
                    "RUNTUNE_ENGINE_ADAPTER_ROOT (e.g. /mnt/runtune-data) and RUNTUNE_ENGINE_ADAPTER_DOWNLOAD=false"
                )
        return self

    @property
    def adapter_root(self) -> str:
        return self.engine_adapter_root or str(self.local_dir / "engine-adapters")

    def local_engine_token(self) -> str | None:
        """Local profile: the engine's bearer token (the setting, else the platform's token file)."""
        if self.engine_api_key is not None:
            return self.engine_api_key.get_secret_value()
        try:
            return (self.local_dir / ENGINE_TOKEN_FILE).read_text().strip() or None
        except FileNotFoundError:
            return None


class InferenceSettings(ServiceSettings, EngineClientSettings):
    """The inference service: the engine (shared with its evaluation executions), export links, and
    the evaluation executions it launches."""

    port: int = 8083
    export_url_ttl_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    # The evaluation execution's task timeout (Cloud Run CPU jobs run up to 24 hours per task).
    evaluation_timeout_s: int = Field(default=3600, ge=60, le=24 * 3600)
    # The conversion execution's task timeout (GGUF of a 27B model: tens of minutes on 8 vCPUs).
    convert_timeout_s: int = Field(default=3 * 3600, ge=60, le=24 * 3600)
    convert_heartbeat_s: float = Field(default=20.0, gt=0, le=600)


class EvaluateSettings(EngineClientSettings):
    """An evaluation execution (`python -m jobs.evaluate <evaluation_id>`)."""


class ConvertSettings(CommonSettings):
    """A conversion execution (`python -m jobs.convert <export_id>`): merged model -> GGUF / Ollama."""

    # llama.cpp's converter (convert_hf_to_gguf.py, conversion/, gguf-py/) from the pinned
    # llama-cpp-python sdist: `make setup` extracts it here; the convert image to /opt/llama.cpp.
    gguf_converter_dir: Path = REPO_ROOT / ".venv" / f"llama-cpp-{LLAMA_CPP_PYTHON}" / "converter"
    # No GGUF file larger than this (llama.cpp's split format; Ollama folders are never split). On
    # Cloud Run a file written to the bucket's volume is held in memory until it is closed.
    gguf_split_max_size: str | None = Field(default="4G", pattern=r"^[0-9]+[KMG]$")
    convert_heartbeat_s: float = Field(default=20.0, gt=0, le=600)
    convert_threads: int = Field(default=0, ge=0)


class EngineServerSettings(BaseSettings):
    """The local engine server (`python -m engine`): tiny models on the CPU."""

    model_config = SettingsConfigDict(env_prefix="RUNTUNE_ENGINE_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = 8084
    # SHA-256 of the bearer token callers must present; None accepts any caller on loopback only.
    api_key_sha256: str | None = None
    local_dir: Path = Field(default=DEFAULT_LOCAL_DIR, validation_alias=AliasChoices("RUNTUNE_LOCAL_DIR"))
    # Base models it serves (loaded on first use); registry ids: the serving contract's local bases
    # (runtune/serving.json), or some of them.
    models: list[str] = Field(default_factory=lambda: list(serving.load().local_base_models))
    max_batch: int = Field(default=16, ge=1, le=256)
    # How long the batcher waits for companions of a request before running it.
    batch_window_ms: float = Field(default=5.0, ge=0, le=1000)
    max_new_tokens: int = Field(default=512, ge=1)

    @model_validator(mode="after")
    def _serves_only_contracted_bases(self) -> EngineServerSettings:
        # The jobs API accepts adapters of the contract's bases only: serving another would let local
        # behaviour drift from the cloud's.
        extra = sorted(set(self.models) - set(serving.load().local_base_models))
        if extra:
            raise SettingsError(
                f"RUNTUNE_ENGINE_MODELS names {', '.join(extra)}, which the serving contract "
                "(runtune/serving.json, local_base_models) does not list"
            )
        return self
