"""What each deployable may do in the cloud: the one source of truth for its service account.

`DEPLOYABLES` states, per deployable, what its code does to the data bucket (object prefixes it reads,
writes, deletes), to Firestore (collections it reads, writes), to Secret Manager, and which Cloud Run
jobs and services it calls. From that table:

- `required_grants` derives the minimal IAM grants (role on resource) of its service account;
  `tests/infra/test_permissions.py` checks `infra/` grants exactly those, no fewer and no more;
- `Permissions.allows_blob` / `allows_document` answer what the cloud would: the local profile wraps
  each deployable's adapters in `runtune.adapters.permitted`, so an operation its account could not do
  fails on a laptop the way it would fail in the cloud (403).

Adding a deployable is one entry in `DEPLOYABLES` (and its account in `infra/iam.tf`).

Pure data and functions: no Google client, no torch; importable everywhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from typing import Any, Literal

from runtune import blob_layout

Access = Literal["r", "rw", "rd", "rwd"]
SecretUse = Literal["none", "read", "manage"]

# Resources a grant is made on, named the way the tests name Terraform's (`kind:name`).
PROJECT = "project"
# The project, with the condition that limits Secret Manager to the users' `runtune-user-*` secrets.
USER_SECRETS = "project:user_secrets"
DATA_BUCKET = "bucket:data"

# Custom roles, named `custom:<key>`: where no predefined role is both sufficient and narrow, the exact
# permissions the adapters' calls need. They live in runtune/custom_roles.json, with why each is
# needed, because infra/iam.tf creates them from the same file (`google_project_iam_custom_role.runtune`).
CUSTOM_ROLES_FILE = "custom_roles.json"
USER_SECRETS_MANAGER = "custom:user_secrets"
JOB_RUNNER = "custom:job_runner"
VERTEX_JOB_RUNNER = "custom:vertex_job_runner"


def custom_roles_data() -> dict[str, dict[str, Any]]:
    """runtune/custom_roles.json's roles as read: key -> role_id, title, description, why, permissions."""
    text = resources.files("runtune").joinpath(CUSTOM_ROLES_FILE).read_text(encoding="utf-8")
    return json.loads(text)["roles"]


CUSTOM_ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    f"custom:{key}": frozenset(role["permissions"]) for key, role in custom_roles_data().items()
}


@dataclass(frozen=True)
class Grant:
    """One IAM grant: `role` for the deployable's service account on `resource`."""

    account: str
    role: str
    resource: str

    def describe(self) -> str:
        return f"{self.account}: {self.role} on {self.resource}"


@dataclass(frozen=True)
class Permissions:
    """What one deployable's code does; paths use `{name}` for one path segment (`users/{uid}/...`).

    `bucket`: object prefix -> "r" (read, list, sign a download), "w" (create, overwrite, open an
    upload session), "d" (delete). `firestore`: collection path without document ids (`jobs`,
    `jobs/events`) -> "r" (get, query) or "rw" (also create, set, update, delete, transact).
    `user_secrets`: the users' own tokens (`runtune-user-*`): read one, or manage them (create, rotate,
    list, delete). `deployment_secrets`: Terraform's secrets (`google_secret_manager_secret.<name>`)
    it reads. `signs_urls`: V4 signed URLs, signed as itself through IAM signBlob. `runs_jobs`: Cloud Run
    jobs it starts (with overrides), follows and cancels; each runs as the deployable of that name.
    `runs_vertex_jobs`: the deployables whose accounts the Vertex AI custom jobs it creates, follows
    and cancels run as.
    `invokes`: Cloud Run services it calls. `verifies_users`: looks Firebase Auth users up.
    `enqueues`: Cloud Tasks queues it adds tasks to -> the account those tasks call their target as
    (an OIDC token Cloud Tasks mints for it, so the enqueuer may act as that account).
    """

    purpose: str
    bucket: Mapping[str, Access] = field(default_factory=dict)
    firestore: Mapping[str, Literal["r", "rw"]] = field(default_factory=dict)
    user_secrets: SecretUse = "none"
    deployment_secrets: tuple[str, ...] = ()
    signs_urls: bool = False
    runs_jobs: tuple[str, ...] = ()
    runs_vertex_jobs: tuple[str, ...] = ()
    invokes: tuple[str, ...] = ()
    verifies_users: bool = False
    enqueues: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def _prefixes(self) -> list[tuple[re.Pattern[str], str]]:
        return [(_prefix_pattern(prefix), access) for prefix, access in self.bucket.items()]

    def allows_blob(self, path: str, access: Literal["r", "w", "d"]) -> bool:
        """Whether an object path (or a listed/deleted prefix) lies in a prefix granting `access`.

        Reading is allowed wherever writing is: the bucket roles that write read too."""
        wanted = {"r": "rw", "w": "w", "d": "d"}[access]
        return ".." not in path.split("/") and any(
            pattern.match(path) and any(a in granted for a in wanted) for pattern, granted in self._prefixes
        )

    def allows_document(self, path: str, access: Literal["r", "w"]) -> bool:
        """Whether a document or collection path (`jobs/abc/events/0001`, `jobs/abc/events`) may be
        read or written."""
        granted = self.firestore.get(collection_of(path))
        return granted is not None and access in granted


def collection_of(path: str) -> str:
    """The collection a document or collection path is in, without ids: `jobs/j1/events/7` -> `jobs/events`."""
    parts = [part for part in path.split("/") if part]
    if len(parts) % 2 == 0:  # a document path: drop its own id
        parts = parts[:-1]
    return "/".join(parts[0::2])


def _prefix_pattern(prefix: str) -> re.Pattern[str]:
    pieces = re.split(r"(\{\w+\})", prefix)
    return re.compile("".join("[^/]+" if re.fullmatch(r"\{\w+\}", p) else re.escape(p) for p in pieces))


# The bucket's object layout, as the code builds it (runtune.blob_layout, with `{name}` placeholders).
UPLOADS = blob_layout.upload_prefix("{uid}", "{upload}")  # temporary: the lifecycle rule deletes them
LEGACY_UPLOADS = blob_layout.legacy_upload_prefix("{uid}", "{upload}")
DATASETS = blob_layout.dataset_prefix("{uid}", "{dataset}")  # shards, previews, source
JOBS = blob_layout.job_prefix("{uid}", "{job}")  # config, resume checkpoints, tensorboard
JOB_EXPORTS = blob_layout.export_prefix("{uid}", "{job}")  # adapter/, merged/, checkpoints/, gguf-*/
MERGED_MODELS = blob_layout.export_folder("{uid}", "{job}", blob_layout.MERGED)
CONVERTED_MODELS = blob_layout.converted_folder("{uid}", "{job}", "{format}", "{quantization}")  # GGUF, Ollama
EVALUATIONS = blob_layout.evaluation_prefix("{uid}", "{evaluation}")  # predictions
VIBE_CHECKS = blob_layout.vibe_check_prefix("{uid}", "{check}")  # prompt images
EXPORTS = blob_layout.export_archive_prefix("{uid}", "{export}")  # adapter archives
STAGED_MODELS = "models/"  # runtune/models/loading.py: base weights an operator staged

# Webhooks (runtune/webhooks/): each writer of a state transition writes its event to the outbox in
# the same transaction (events.py); the training service sweeps it, owns the endpoints and their
# delivery log, and runs the dispatcher.
OUTBOX = {"webhook_outbox": "rw"}

DEPLOYABLES: dict[str, Permissions] = {
    "gateway": Permissions(
        "public entry: verifies users' tokens (looking the user up) and API keys, calls the private services",
        # API keys: looked up by hash; `last_used_at` stamped (at most every few minutes per key).
        firestore={"api_keys": "rw"},
        verifies_users=True,
        invokes=("preprocessing", "training", "inference"),
    ),
    "preprocessing": Permissions(
        "uploads, files, datasets: ingestion into canonical shards, shard downloads by signed URL",
        bucket={UPLOADS: "rwd", LEGACY_UPLOADS: "rd", DATASETS: "rwd"},
        firestore={"datasets": "rw", "uploads": "rw", **OUTBOX},
        signs_urls=True,
        # Ingestion runs as its own execution (the ingest job); the service starts and follows it.
        runs_jobs=("ingest",),
    ),
    "ingest": Permissions(
        "the ingestion CPU job: one dataset's input into canonical shards, or its failure cleaned up",
        bucket={UPLOADS: "r", LEGACY_UPLOADS: "r", DATASETS: "rwd"},
        firestore={"datasets": "rw", **OUTBOX},
        # Hugging Face imports read the owner's token (IngestSpec.hub.token_secret).
        user_secrets="read",
    ),
    "training": Permissions(
        # The trainer writes checkpoints and metrics; the service reads their documents only. Deleting
        # an ended job (DELETE /v1/fine_tuning/jobs/{id}) lists and deletes its objects, the exports
        # made from its model (documents and archives) and its documents.
        "fine-tuning jobs: validation, scheduling, the trainer's executions, the users' secrets",
        bucket={JOBS: "rd", EXPORTS: "rd"},
        firestore={
            "jobs": "rw",
            "jobs/events": "rw",
            "jobs/checkpoints": "rw",
            "jobs/model_checkpoints": "rw",
            "exports": "rw",
            "idempotency_keys": "rw",
            "datasets": "r",
            "api_keys": "rw",
            **OUTBOX,
            "webhook_endpoints": "rw",
            "webhook_endpoints/deliveries": "rw",
            # The trainers' measurements of finished runs, read by every estimate (runtune/throughput.py).
            "throughput": "r",
        },
        # The users' tokens, and the webhook endpoints' signing secrets (runtune/webhooks/endpoints.py).
        user_secrets="manage",
        runs_jobs=("trainer",),
        # Runs too big or too long for Cloud Run: Vertex AI custom jobs running as the trainer.
        runs_vertex_jobs=("trainer",),
        # The outbox sweep enqueues one task per (event, endpoint); Cloud Tasks calls the dispatcher
        # (this service) as `webhooks`.
        enqueues={"webhooks": "webhooks"},
    ),
    "inference": Permissions(
        "chat, vibe checks, evaluations and exports over the engine",
        # Deleting a tuned model (DELETE /v1/models/{id}) removes its job's export folder and the
        # exports made from it, and marks the job (`model_deleted_at`).
        bucket={
            JOB_EXPORTS: "rd",
            DATASETS: "r",
            EVALUATIONS: "rw",
            VIBE_CHECKS: "rw",
            EXPORTS: "rwd",
        },
        firestore={
            "evaluations": "rw",
            "vibe_checks": "rw",
            "exports": "rw",
            "jobs": "rw",
            # Resolving `ft:...:ckpt-step-N` ids; deleting a model deletes its checkpoints' documents.
            "jobs/model_checkpoints": "rw",
            "datasets": "r",
            **OUTBOX,
        },
        signs_urls=True,
        runs_jobs=("evaluate", "convert"),
        invokes=("engine",),
    ),
    "convert": Permissions(
        "the conversion CPU job: one tuned model's merged weights into GGUF (or an Ollama folder)",
        # Through the bucket's volume in the cloud (read the merged model, write the output), through
        # the client locally; a retried task first deletes its earlier partial output.
        bucket={MERGED_MODELS: "r", CONVERTED_MODELS: "rwd"},
        firestore={"exports": "rw", **OUTBOX},
    ),
    "evaluate": Permissions(
        "the evaluation CPU job: scores one evaluation's split through the engine, writes its predictions",
        # Adapters are read by the engine through its volume; locally the execution downloads them.
        bucket={DATASETS: "r", JOB_EXPORTS: "r", EVALUATIONS: "rw"},
        firestore={"evaluations": "rw", "jobs": "r", "jobs/model_checkpoints": "r", "datasets": "r", **OUTBOX},
        invokes=("engine",),
    ),
    "trainer": Permissions(
        "the GPU job: one fine-tuning job per execution",
        bucket={STAGED_MODELS: "r", DATASETS: "r", JOBS: "rwd"},
        firestore={
            "jobs": "rw",
            "jobs/events": "rw",
            "jobs/checkpoints": "rw",
            "jobs/model_checkpoints": "rw",
            "datasets": "r",
            **OUTBOX,
            # Each succeeded run's measured phases (runtune/throughput.py): what calibrates estimates.
            "throughput": "rw",
        },
        # The job owner's Hugging Face and W&B tokens.
        user_secrets="read",
    ),
    "engine": Permissions(
        "vLLM: serves the base model and loads adapters through the bucket's read-only volume",
        bucket={JOB_EXPORTS: "r"},
        deployment_secrets=("hf_token",),
    ),
    "webhooks": Permissions(
        "the identity Cloud Tasks calls the webhooks dispatcher (a route of the training service) as",
        invokes=("training",),
    ),
}


def of(deployable: str) -> Permissions:
    try:
        return DEPLOYABLES[deployable]
    except KeyError:
        known = ", ".join(sorted(DEPLOYABLES))
        raise ValueError(f"unknown deployable {deployable!r}: runtune/permissions.py knows {known}") from None


def required_grants(deployable: str, permissions: Permissions | None = None) -> set[Grant]:
    """The minimal IAM grants of a deployable's service account for what its table entry says."""
    p = permissions or of(deployable)
    grants: set[Grant] = set()

    def grant(role: str, resource: str) -> None:
        grants.add(Grant(deployable, role, resource))

    if p.bucket:
        # objectUser: read, create, overwrite, delete objects (no IAM, no bucket settings). An
        # overwrite is a delete in IAM's terms, so any write needs it, not objectCreator.
        writes = any(set(access) & {"w", "d"} for access in p.bucket.values())
        grant("roles/storage.objectUser" if writes else "roles/storage.objectViewer", DATA_BUCKET)
    if p.firestore:
        # Firestore has no IAM resource narrower than the database: collections cannot be granted.
        writes = any("w" in access for access in p.firestore.values())
        grant("roles/datastore.user" if writes else "roles/datastore.viewer", PROJECT)
    if p.user_secrets == "read":
        grant("roles/secretmanager.secretAccessor", USER_SECRETS)
    elif p.user_secrets == "manage":
        grant(USER_SECRETS_MANAGER, USER_SECRETS)
    for secret in p.deployment_secrets:
        grant("roles/secretmanager.secretAccessor", f"secret:{secret}")
    if p.signs_urls:
        # Cloud Run's metadata-server credentials hold no key: signing goes through signBlob as itself.
        grant("roles/iam.serviceAccountTokenCreator", f"service_account:{deployable}")
    for job in p.runs_jobs:
        grant(JOB_RUNNER, f"job:{job}")
        # An execution runs code as the job's account: the caller may act as that one account.
        grant("roles/iam.serviceAccountUser", f"service_account:{job}")
    if p.runs_vertex_jobs:
        grant(VERTEX_JOB_RUNNER, PROJECT)
    for account in p.runs_vertex_jobs:
        # A CustomJob with `service_account` runs its code as that account: the creator must act as it.
        grant("roles/iam.serviceAccountUser", f"service_account:{account}")
    for service in p.invokes:
        grant("roles/run.invoker", f"service:{service}")
    for queue, account in p.enqueues.items():
        grant("roles/cloudtasks.enqueuer", f"queue:{queue}")
        # A task with an OIDC token for `account`: the enqueuer must be allowed to act as it.
        grant("roles/iam.serviceAccountUser", f"service_account:{account}")
    if p.verifies_users:
        # firebase-admin's verify_id_token(check_revoked=True) looks the user up.
        grant("roles/firebaseauth.viewer", PROJECT)
    return grants


def all_required_grants(table: Mapping[str, Permissions] | None = None) -> set[Grant]:
    table = DEPLOYABLES if table is None else table
    return {g for name, p in table.items() for g in required_grants(name, p)}


def compare(required: Iterable[Grant], granted: Iterable[Grant]) -> list[str]:
    """What differs between the table's grants and a deployment's, one sentence each (empty: equal)."""
    required, granted = set(required), set(granted)
    missing = sorted(required - granted, key=Grant.describe)
    extra = sorted(granted - required, key=Grant.describe)
    return [f"narrower than the code: {g.describe()} is missing" for g in missing] + [
        f"wider than needed: {g.describe()} is granted but runtune/permissions.py does not use it" for g in extra
    ]
