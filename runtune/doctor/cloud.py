"""Checks of a Cloud Run deployment, read through the Google APIs with the operator's credentials.

What `infra/` deploys and the code relies on: the public gateway, the private services and engine
(internal ingress, no public invoker, refusing unauthenticated requests), one trainer job per GPU
type of the GPU table with that GPU and the data bucket mounted, the CPU jobs, the Firestore
composite indexes and TTL policies of `runtune/indexes.py`, and the engine serving its bases.
Each failure names what to run; most are `terraform -chdir=infra apply`, which restores what
Terraform declared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from google.api_core import exceptions as google_exceptions
from google.auth.credentials import Credentials
from google.cloud import firestore_admin_v1, run_v2

from runtune.adapters.launch_contract import DEFAULT_JOB_PREFIX, GPU_NAMES, cloud_run_job_name
from runtune.doctor import Check
from runtune.doctor.probes import DEFAULT_TIMEOUT_S, REFUSED_BY_CLOUD_RUN, engine_serves, healthy, refuses_anonymous
from runtune.indexes import COMPOSITE_INDEXES, TTL_POLICIES, CompositeIndex, IndexField
from runtune.ports.launcher import Workload

APPLY = "terraform -chdir=infra apply"
# infra/main.tf local.names.
GATEWAY = "runtune-gateway"
PRIVATE_SERVICES = {
    "preprocessing": "runtune-preprocessing",
    "training": "runtune-training",
    "inference": "runtune-inference",
    "engine": "runtune-engine",
}
PUBLIC_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers"})
PRIVATE_INGRESS = frozenset(
    {
        run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_ONLY,
        run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER,
    }
)
_READY = run_v2.Condition.State.CONDITION_SUCCEEDED


@dataclass(frozen=True)
class Deployment:
    project: str
    region: str
    # infra/main.tf local.data_bucket unless given.
    bucket: str = ""
    gateway_url: str | None = None
    engine_url: str | None = None
    job_prefix: str = DEFAULT_JOB_PREFIX
    gpus: tuple[str, ...] = GPU_NAMES
    database: str = "(default)"

    @property
    def data_bucket(self) -> str:
        return self.bucket or f"{self.project}-runtune-data"


@dataclass(frozen=True)
class RequiredJob:
    name: str
    workload: Workload
    gpu: str | None = None
    mounts_bucket: bool = False


def required_jobs(prefix: str = DEFAULT_JOB_PREFIX, gpus: Iterable[str] = GPU_NAMES) -> list[RequiredJob]:
    """Every Cloud Run job the launcher may run: a trainer per offered GPU (with the data bucket
    mounted: it reads staged models and writes checkpoints through it), the ingest and evaluate jobs,
    and the convert job (mounted too: it reads merged models and writes GGUF files through it)."""
    jobs = [
        RequiredJob(cloud_run_job_name(Workload.train, gpu, prefix), Workload.train, gpu, mounts_bucket=True)
        for gpu in gpus
    ]
    jobs += [RequiredJob(cloud_run_job_name(w, None, prefix), w) for w in (Workload.ingest, Workload.evaluate)]
    jobs.append(RequiredJob(cloud_run_job_name(Workload.convert, None, prefix), Workload.convert, mounts_bucket=True))
    return jobs


@dataclass
class CloudClients:
    """The Admin API clients the checks read with (REST: plain HTTPS, and what the fake-server tests use)."""

    services: run_v2.ServicesClient
    jobs: run_v2.JobsClient
    firestore_admin: firestore_admin_v1.FirestoreAdminClient

    @classmethod
    def create(cls, credentials: Credentials | None = None, endpoints: dict[str, str] | None = None) -> CloudClients:
        endpoints = endpoints or {}

        def options(api: str) -> dict[str, Any] | None:
            return {"api_endpoint": endpoints[api]} if api in endpoints else None

        return cls(
            services=run_v2.ServicesClient(credentials=credentials, transport="rest", client_options=options("run")),
            jobs=run_v2.JobsClient(credentials=credentials, transport="rest", client_options=options("run")),
            firestore_admin=firestore_admin_v1.FirestoreAdminClient(
                credentials=credentials, transport="rest", client_options=options("firestore")
            ),
        )


def _api_error(name: str, exc: google_exceptions.GoogleAPICallError, what: str, viewer_role: str) -> Check:
    if isinstance(exc, google_exceptions.NotFound):
        return Check.failed(name, f"{what} does not exist", APPLY)
    if isinstance(exc, google_exceptions.PermissionDenied):
        return Check.failed(
            name,
            f"your account may not read {what}",
            f"gcloud projects add-iam-policy-binding PROJECT --member=user:YOU --role={viewer_role}",
        )
    return Check.failed(name, f"reading {what} failed: {exc.message}", "retry; check the project and region")


def _is_ready(resource: Any) -> tuple[bool, str]:
    condition = resource.terminal_condition
    if condition.state == _READY:
        return True, "ready"
    return False, condition.message or f"not ready ({condition.state.name})"


# -- services -------------------------------------------------------------------------------------


def _public_members(policy: Any) -> set[str]:
    return {m for binding in policy.bindings for m in binding.members if m in PUBLIC_MEMBERS}


def gateway_checks(deployment: Deployment, clients: CloudClients, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Check]:
    path = clients.services.service_path(deployment.project, deployment.region, GATEWAY)
    try:
        service = clients.services.get_service(name=path)
        policy = clients.services.get_iam_policy(request={"resource": path})
    except google_exceptions.GoogleAPICallError as exc:
        return [_api_error("gateway: deployed", exc, f"the service {GATEWAY}", "roles/run.viewer")]
    ready, detail = _is_ready(service)
    checks = [
        Check.passed("gateway: deployed", detail)
        if ready
        else Check.failed(
            "gateway: deployed",
            detail,
            f"gcloud run services logs read {GATEWAY} --region {deployment.region}; then {APPLY}",
        )
    ]
    if service.ingress != run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL or "allUsers" not in _public_members(policy):
        checks.append(
            Check.failed(
                "gateway: public",
                f"ingress {service.ingress.name}, public invoker {'yes' if _public_members(policy) else 'no'}",
                f"{APPLY} (an organisation policy on allowed members may refuse allUsers: see infra/README.md)",
            )
        )
    else:
        checks.append(Check.passed("gateway: public", "ingress all, allUsers may invoke"))
    url = deployment.gateway_url or service.uri
    checks.append(healthy("gateway: reachable", url, f"{APPLY}; then check {url}/healthz", timeout_s=timeout_s))
    checks.append(refuses_anonymous("gateway: authenticates", url, APPLY, timeout_s=timeout_s))
    return checks


def private_service_checks(
    deployment: Deployment, clients: CloudClients, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[Check]:
    checks: list[Check] = []
    for key, name in PRIVATE_SERVICES.items():
        path = clients.services.service_path(deployment.project, deployment.region, name)
        try:
            service = clients.services.get_service(name=path)
            policy = clients.services.get_iam_policy(request={"resource": path})
        except google_exceptions.GoogleAPICallError as exc:
            checks.append(_api_error(f"{key}: deployed", exc, f"the service {name}", "roles/run.viewer"))
            continue
        ready, detail = _is_ready(service)
        checks.append(
            Check.passed(f"{key}: deployed", detail)
            if ready
            else Check.failed(
                f"{key}: deployed", detail, f"gcloud run services logs read {name} --region {deployment.region}"
            )
        )
        problems = []
        if service.ingress not in PRIVATE_INGRESS:
            problems.append(f"ingress is {service.ingress.name}")
        if public := _public_members(policy):
            problems.append(f"{', '.join(sorted(public))} may invoke it")
        if problems:
            fixes = [APPLY]
            if public:
                fixes += [
                    f"gcloud run services remove-iam-policy-binding {name} --region {deployment.region} "
                    f"--member={member} --role=roles/run.invoker"
                    for member in sorted(public)
                ]
            checks.append(Check.failed(f"{key}: private", "; ".join(problems), " && ".join(fixes)))
        else:
            checks.append(Check.passed(f"{key}: private", f"ingress {service.ingress.name}, no public invoker"))
        if service.uri:
            checks.append(
                refuses_anonymous(
                    f"{key}: refuses anonymous requests",
                    service.uri,
                    APPLY,
                    refused=REFUSED_BY_CLOUD_RUN,
                    unreachable_is_refused=True,
                    timeout_s=timeout_s,
                )
            )
    return checks


# -- jobs -----------------------------------------------------------------------------------------


def _mounts_bucket(template: Any, bucket: str) -> bool:
    volumes = {volume.name for volume in template.volumes if volume.gcs.bucket == bucket}
    return any(mount.name in volumes for container in template.containers for mount in container.volume_mounts)


def job_checks(deployment: Deployment, clients: CloudClients) -> list[Check]:
    checks = []
    for job in required_jobs(deployment.job_prefix, deployment.gpus):
        name = f"job {job.name}"
        try:
            found = clients.jobs.get_job(name=clients.jobs.job_path(deployment.project, deployment.region, job.name))
        except google_exceptions.GoogleAPICallError as exc:
            checks.append(_api_error(name, exc, f"the Cloud Run job {job.name}", "roles/run.viewer"))
            continue
        template = found.template.template
        problems = []
        if job.gpu is not None and template.node_selector.accelerator != job.gpu:
            problems.append(f"runs on {template.node_selector.accelerator or 'no GPU'}, not {job.gpu}")
        if job.mounts_bucket and not _mounts_bucket(template, deployment.data_bucket):
            problems.append(f"does not mount the bucket {deployment.data_bucket}")
        if problems:
            checks.append(Check.failed(name, "; ".join(problems), APPLY))
        else:
            gpu = f" on {job.gpu}" if job.gpu else ""
            mount = f", {deployment.data_bucket} mounted" if job.mounts_bucket else ""
            checks.append(Check.passed(name, f"{job.workload}{gpu}{mount}"))
    return checks


# -- Firestore ------------------------------------------------------------------------------------

_ORDER = {
    firestore_admin_v1.Index.IndexField.Order.ASCENDING: "ASCENDING",
    firestore_admin_v1.Index.IndexField.Order.DESCENDING: "DESCENDING",
}


def _as_declared(index: Any) -> tuple[CompositeIndex | None, bool]:
    """A deployed index in `runtune.indexes` terms (None when it is of another kind), and whether it is READY."""
    if index.query_scope != firestore_admin_v1.Index.QueryScope.COLLECTION:
        return None, False
    collection = index.name.split("/collectionGroups/", 1)[1].split("/", 1)[0]
    fields = []
    for f in index.fields:
        if f.field_path == "__name__":  # every index ends with it, implicitly or not
            continue
        if f.array_config == firestore_admin_v1.Index.IndexField.ArrayConfig.CONTAINS:
            fields.append(IndexField(f.field_path, "CONTAINS"))
        elif f.order in _ORDER:
            fields.append(IndexField(f.field_path, _ORDER[f.order]))  # type: ignore[arg-type]
        else:
            return None, False
    return CompositeIndex(collection, tuple(fields)), index.state == firestore_admin_v1.Index.State.READY


def index_checks(
    deployment: Deployment, clients: CloudClients, declared: Sequence[CompositeIndex] = COMPOSITE_INDEXES
) -> list[Check]:
    parent = f"projects/{deployment.project}/databases/{deployment.database}/collectionGroups/-"
    try:
        deployed = [_as_declared(index) for index in clients.firestore_admin.list_indexes(parent=parent)]
    except google_exceptions.GoogleAPICallError as exc:
        return [_api_error("firestore indexes", exc, "the Firestore indexes", "roles/datastore.indexAdmin")]
    ready = {index for index, is_ready in deployed if index is not None and is_ready}
    building = {index for index, is_ready in deployed if index is not None and not is_ready}
    checks = []
    for index in declared:
        name = f"index {index.describe()}"
        if index in ready:
            checks.append(Check.passed(name, "ready"))
        elif index in building:
            checks.append(Check.failed(name, "still building", "wait a few minutes and run `runtune doctor` again"))
        else:
            checks.append(Check.failed(name, "missing: queries that need it fail with FAILED_PRECONDITION", APPLY))
    return checks


def ttl_checks(deployment: Deployment, clients: CloudClients, policies: dict[str, str] | None = None) -> list[Check]:
    checks = []
    states = firestore_admin_v1.Field.TtlConfig.State
    for collection, ttl_field in (TTL_POLICIES if policies is None else policies).items():
        name = f"ttl {collection}.{ttl_field}"
        database = f"projects/{deployment.project}/databases/{deployment.database}"
        path = f"{database}/collectionGroups/{collection}/fields/{ttl_field}"
        try:
            found = clients.firestore_admin.get_field(name=path)
        except google_exceptions.GoogleAPICallError as exc:
            if isinstance(exc, google_exceptions.NotFound):
                checks.append(Check.failed(name, "no TTL policy: expired documents are kept", APPLY))
            else:
                checks.append(
                    _api_error(name, exc, f"the field {collection}.{ttl_field}", "roles/datastore.indexAdmin")
                )
            continue
        state = found.ttl_config.state
        if state == states.ACTIVE:
            checks.append(Check.passed(name, "active"))
        elif state == states.CREATING:
            checks.append(
                Check.failed(name, "being created", "wait (it can take hours) and run `runtune doctor` again")
            )
        else:
            checks.append(Check.failed(name, f"TTL policy {state.name}: expired documents are kept", APPLY))
    return checks


# -- the engine -----------------------------------------------------------------------------------


def engine_checks(
    deployment: Deployment,
    clients: CloudClients,
    expected_bases: Iterable[str] | None = None,
    authorization: Callable[[str], str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[Check]:
    """The bases the engine is deployed with, and (when it can be reached from here) its model list.

    `authorization(url)` gives the `Authorization` header for the engine's URL (a Google ID token
    for that audience); `expected_bases` defaults to the serving contract's (runtune/serving.json), which
    the jobs API checks every job against: an engine deployed with another base fails here."""
    name = PRIVATE_SERVICES["engine"]
    try:
        service = clients.services.get_service(
            name=clients.services.service_path(deployment.project, deployment.region, name)
        )
    except google_exceptions.GoogleAPICallError as exc:
        return [_api_error("engine: bases", exc, f"the service {name}", "roles/run.viewer")]
    containers = service.template.containers
    # vLLM's first argument is the model it serves (`vllm serve <model>`; infra/cloud_run.tf).
    deployed_base = containers[0].args[0] if containers and containers[0].args else ""
    if expected_bases is None:
        from runtune import serving

        expected_bases = serving.load().served("gcp")
    bases = sorted(set(expected_bases))
    checks = []
    if not deployed_base or deployed_base not in bases:
        checks.append(
            Check.failed(
                "engine: bases", f"deployed with {deployed_base or 'no model'}, expected {', '.join(bases)}", APPLY
            )
        )
    else:
        checks.append(Check.passed("engine: bases", f"deployed with {deployed_base}"))
    url = deployment.engine_url or service.uri
    if not url:
        return [*checks, Check.failed("engine: serves the bases", "the engine has no URL yet", APPLY)]
    header = None
    if authorization is not None:
        try:
            header = authorization(url)
        except Exception as exc:
            return [
                *checks,
                Check.failed(
                    "engine: serves the bases",
                    f"no ID token for {url} ({type(exc).__name__})",
                    'pass --identity-token "$(gcloud auth print-identity-token)"',
                ),
            ]
    if deployment.engine_url is None:
        # Internal ingress: from outside the VPC Cloud Run refuses the request before the engine sees it.
        try:
            probe = httpx.get(
                f"{url.rstrip('/')}/health", headers={"authorization": header} if header else None, timeout=timeout_s
            )
        except httpx.HTTPError as exc:
            return [*checks, _engine_unreachable(f"{url} is not reachable from here ({type(exc).__name__})")]
        if probe.status_code in (403, 404):
            return [
                *checks,
                _engine_unreachable(f"{url} refuses requests from outside its network ({probe.status_code})"),
            ]
    return [
        *checks,
        engine_serves(
            "engine: serves the bases",
            url,
            bases,
            f"gcloud run services logs read {name} --region {deployment.region} (loading the model takes minutes)",
            authorization=header,
            timeout_s=timeout_s,
        ),
    ]


def _engine_unreachable(detail: str) -> Check:
    return Check.not_checked(
        "engine: serves the bases",
        f"{detail}: the engine accepts internal traffic only; "
        "run the doctor from the VPC with --engine-url to list its models",
    )


# -- everything ----------------------------------------------------------------------------------


@dataclass
class CloudDoctor:
    deployment: Deployment
    clients: CloudClients
    expected_bases: Iterable[str] | None = None
    authorization: Callable[[str], str] | None = None
    identity: Callable[[], list[Check]] | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    def run(self) -> list[Check]:
        d, c = self.deployment, self.clients
        checks = [
            *gateway_checks(d, c, self.timeout_s),
            *private_service_checks(d, c, self.timeout_s),
            *engine_checks(d, c, self.expected_bases, self.authorization, self.timeout_s),
            *job_checks(d, c),
            *index_checks(d, c),
            *ttl_checks(d, c),
        ]
        if self.identity is not None:
            checks += self.identity()
        return checks
