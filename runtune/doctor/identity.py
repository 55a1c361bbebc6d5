"""Identities: does each deployable's service account hold the IAM roles its code needs?

The expectation is a mapping {service account email: roles on resources}; `roles_from_grants` builds
it from grants in `runtune.permissions` terms (the table of what each deployable's code does), and
`identity_checks` compares it with the deployment's IAM policies, read through `GooglePolicies`
(project, bucket, Cloud Run jobs and services, secrets, service accounts). Only missing roles fail
here: a role granted beyond the table is caught by `tests/infra` before anything is applied.

Resources are named `kind:name` (`project`, `bucket:<bucket>`, `job:<job>`, `service:<service>`,
`secret:<secret id>`, `service_account:<email>`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from google.api_core import exceptions as google_exceptions
from google.auth.credentials import Credentials

from runtune.adapters.launch_contract import DEFAULT_JOB_PREFIX, GPU_NAMES, cloud_run_job_name
from runtune.doctor import Check
from runtune.permissions import custom_roles_data
from runtune.ports.launcher import Workload

APPLY = "terraform -chdir=infra apply"
# Terraform's secrets (`google_secret_manager_secret.<name>`) by resource name -> their secret ids.
DEPLOYMENT_SECRET_IDS = {"hf_token": "runtune-hf-token"}
CRM_ENDPOINT = "https://cloudresourcemanager.googleapis.com"
IAM_ENDPOINT = "https://iam.googleapis.com"


@dataclass(frozen=True, order=True)
class RoleOn:
    role: str
    resource: str

    def describe(self) -> str:
        return f"{self.role} on {self.resource}"


ExpectedRoles = Mapping[str, Iterable[RoleOn]]


class PolicyReader(Protocol):
    def members_by_role(self, resource: str) -> Mapping[str, set[str]]:
        """role -> members of the resource's IAM policy (conditional bindings included)."""
        ...


def identity_checks(expected: ExpectedRoles, policies: PolicyReader, project: str, region: str) -> list[Check]:
    """One check per service account: every expected role is bound to it on its resource."""
    checks = []
    for email, roles in sorted(expected.items()):
        member = f"serviceAccount:{email}"
        missing: list[RoleOn] = []
        unreadable: dict[str, str] = {}
        for wanted in sorted(set(roles)):
            if wanted.resource in unreadable:
                continue
            try:
                bound = policies.members_by_role(wanted.resource)
            except (google_exceptions.GoogleAPICallError, PolicyReadError) as exc:
                unreadable[wanted.resource] = getattr(exc, "message", None) or str(exc)
                continue
            if member not in bound.get(wanted.role, set()):
                missing.append(wanted)
        name = f"identity {email.split('@', 1)[0]}"
        if unreadable:
            what = "; ".join(f"{resource}: {why}" for resource, why in sorted(unreadable.items()))
            checks.append(
                Check.failed(
                    name,
                    f"cannot read the IAM policy of {what}",
                    f"gcloud projects add-iam-policy-binding {project} --member=user:YOU "
                    "--role=roles/iam.securityReviewer",
                )
            )
        elif missing:
            commands = [grant_command(email, role, project, region) for role in missing]
            checks.append(
                Check.failed(
                    name,
                    "missing " + ", ".join(role.describe() for role in missing),
                    f"{APPLY} (or: {' && '.join(commands)})",
                )
            )
        else:
            checks.append(Check.passed(name, f"{len(set(roles))} roles held"))
    return checks


def grant_command(email: str, wanted: RoleOn, project: str, region: str) -> str:
    kind, _, target = wanted.resource.partition(":")
    # Each kind's gcloud group and the resource as it names it.
    on = {
        "project": f"projects add-iam-policy-binding {project}",
        "bucket": f"storage buckets add-iam-policy-binding gs://{target}",
        "job": f"run jobs add-iam-policy-binding {target} --region={region}",
        "service": f"run services add-iam-policy-binding {target} --region={region}",
        "secret": f"secrets add-iam-policy-binding {target} --project={project}",
        "service_account": f"iam service-accounts add-iam-policy-binding {target} --project={project}",
    }
    if kind not in on:
        raise ValueError(f"unknown resource kind in {wanted.resource!r}")
    return f"gcloud {on[kind]} --member=serviceAccount:{email} --role={wanted.role}"


class _Grant(Protocol):
    account: str
    role: str
    resource: str


def account_email(deployable: str, project: str) -> str:
    """infra/iam.tf: `google_service_account.sa[<deployable>]` has the account id `runtune-<deployable>`."""
    return f"runtune-{deployable}@{project}.iam.gserviceaccount.com"


def custom_role_name(resource_name: str, project: str) -> str:
    """`custom:job_runner` -> `projects/<project>/roles/runtuneJobRunner` (its role_id in runtune/custom_roles.json,
    which infra/iam.tf creates it with)."""
    return f"projects/{project}/roles/{custom_roles_data()[resource_name]['role_id']}"


def roles_from_grants(
    grants: Iterable[_Grant],
    project: str,
    bucket: str,
    *,
    job_prefix: str = DEFAULT_JOB_PREFIX,
    gpus: Iterable[str] = GPU_NAMES,
    email: Callable[[str, str], str] = account_email,
) -> dict[str, set[RoleOn]]:
    """The expectation for `identity_checks` from grants named as `runtune.permissions` names them
    (account: a deployable; resource: `project`, `project:<condition>`, `bucket:data`,
    `secret:<terraform name>`, `service_account:<deployable>`, `job:<deployable>`, `service:<deployable>`;
    role: a predefined role or `custom:<terraform name>`)."""
    gpus = tuple(gpus)
    expected: dict[str, set[RoleOn]] = {}
    for grant in grants:
        kind, _, target = grant.resource.partition(":")
        role = (
            custom_role_name(grant.role.split(":", 1)[1], project) if grant.role.startswith("custom:") else grant.role
        )
        if kind == "project":  # a conditional grant is still a binding of the role on the project
            resources = ["project"]
        elif kind == "bucket":
            resources = [f"bucket:{bucket}"]
        elif kind == "secret":
            resources = [f"secret:{DEPLOYMENT_SECRET_IDS.get(target, target)}"]
        elif kind == "service_account":
            resources = [f"service_account:{email(target, project)}"]
        elif kind == "service":
            resources = [f"service:runtune-{target}"]
        elif kind == "job":
            resources = [f"job:{name}" for name in _job_names(target, job_prefix, gpus)]
        else:
            raise ValueError(f"unknown resource kind in {grant.resource!r}")
        expected.setdefault(email(grant.account, project), set()).update(RoleOn(role, r) for r in resources)
    return expected


def _job_names(deployable: str, prefix: str, gpus: tuple[str, ...]) -> list[str]:
    if deployable == "trainer":
        return [cloud_run_job_name(Workload.train, gpu, prefix) for gpu in gpus]
    return [cloud_run_job_name(Workload(deployable), None, prefix)]


class PolicyReadError(RuntimeError):
    """An IAM policy read through REST that failed (status and Google's message)."""


class GooglePolicies:
    """`PolicyReader` over the Google APIs with Application Default Credentials; each policy read once."""

    def __init__(
        self,
        project: str,
        region: str,
        *,
        credentials: Credentials | None = None,
        endpoints: Mapping[str, str] | None = None,
    ) -> None:
        self._project, self._region = project, region
        self._credentials = credentials
        self._endpoints = dict(endpoints or {})
        self._cache: dict[str, dict[str, set[str]]] = {}
        self._session: Any = None

    def members_by_role(self, resource: str) -> Mapping[str, set[str]]:
        if resource not in self._cache:
            self._cache[resource] = self._read(resource)
        return self._cache[resource]

    def _options(self, api: str) -> dict[str, str] | None:
        return {"api_endpoint": self._endpoints[api]} if api in self._endpoints else None

    def _read(self, resource: str) -> dict[str, set[str]]:
        kind, _, target = resource.partition(":")
        if kind == "project":
            return self._rest(f"{self._endpoints.get('crm', CRM_ENDPOINT)}/v1/projects/{self._project}:getIamPolicy")
        if kind == "service_account":
            return self._rest(
                f"{self._endpoints.get('iam', IAM_ENDPOINT)}/v1/projects/-/serviceAccounts/{target}:getIamPolicy"
            )
        if kind == "bucket":
            from google.cloud import storage

            client = storage.Client(
                project=self._project, credentials=self._credentials, client_options=self._options("storage")
            )
            policy = client.bucket(target).get_iam_policy(requested_policy_version=3)
            return _by_role((b["role"], b["members"]) for b in policy.bindings)
        if kind in ("job", "service"):
            from google.cloud import run_v2

            if kind == "job":
                jobs = run_v2.JobsClient(
                    credentials=self._credentials, transport="rest", client_options=self._options("run")
                )
                path = jobs.job_path(self._project, self._region, target)
                policy = jobs.get_iam_policy(request={"resource": path})
            else:
                services = run_v2.ServicesClient(
                    credentials=self._credentials, transport="rest", client_options=self._options("run")
                )
                path = services.service_path(self._project, self._region, target)
                policy = services.get_iam_policy(request={"resource": path})
            return _by_role((b.role, b.members) for b in policy.bindings)
        if kind == "secret":
            from google.cloud import secretmanager

            secrets = secretmanager.SecretManagerServiceClient(
                credentials=self._credentials, transport="rest", client_options=self._options("secretmanager")
            )
            policy = secrets.get_iam_policy(request={"resource": f"projects/{self._project}/secrets/{target}"})
            return _by_role((b.role, b.members) for b in policy.bindings)
        raise ValueError(f"unknown resource kind in {resource!r}")

    def _rest(self, url: str) -> dict[str, set[str]]:
        # Cloud Resource Manager and IAM: plain REST (their client libraries are not dependencies).
        if self._session is None:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession

            credentials = self._credentials
            if credentials is None:
                credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
            self._session = AuthorizedSession(credentials)
        response = self._session.post(url, json={"options": {"requestedPolicyVersion": 3}}, timeout=30)
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = f"HTTP {response.status_code}"
            raise PolicyReadError(message)
        return _by_role((b["role"], b.get("members", [])) for b in response.json().get("bindings", []))


def _by_role(bindings: Iterable[tuple[str, Iterable[str]]]) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for role, members in bindings:
        result.setdefault(role, set()).update(members)
    return result
