"""Terraform grants each deployable's service account exactly what `runtune/permissions.py` derives from
what its code does: a missing grant fails ("narrower than the code"), so does an extra one ("wider
than needed")."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from runtune import permissions
from runtune.permissions import Grant, all_required_grants, compare
from tests.infra.terraform import Config

_SA = r'\$\{google_service_account\.sa\["(\w+)"\]\.(member|name)\}'
# Accounts that are not deployables: their grants are the build's, checked in test_security.py.
NOT_DEPLOYABLES = {"build"}


def _account(reference: str) -> str | None:
    match = re.fullmatch(_SA, reference)
    return match.group(1) if match else None


# Resource type -> (kind, the field naming the resource, the reference's pattern).
_REFERENCES = {
    "google_storage_bucket_iam_member": ("bucket", "bucket", r"\$\{google_storage_bucket\.(\w+)\.name\}"),
    "google_service_account_iam_member": (
        "service_account",
        "service_account_id",
        r'\$\{google_service_account\.sa\["(\w+)"\]\.name\}',
    ),
    "google_cloud_run_v2_service_iam_member": (
        "service",
        "name",
        r'\$\{google_cloud_run_v2_service\.(?:cpu\["(\w+)"\]|(\w+))\.name\}',
    ),
    # A CPU job by its workload (`cpu["ingest"]`); every job of one GPU type is still the trainer:
    # `trainer["l4"]`, or the per-GPU name the `for_each` over the trainer jobs renders
    # (`${local.job_prefix}-trainer-${trimprefix(...)}`).
    "google_cloud_run_v2_job_iam_member": (
        "job",
        "name",
        r'\$\{google_cloud_run_v2_job\.(?:cpu\["(\w+)"\]|(trainer)\[[^\]]+\])\.name\}'
        r"|\$\{local\.job_prefix\}-(trainer)-\$\{trimprefix\([^)]*\)\}",
    ),
    "google_cloud_tasks_queue_iam_member": ("queue", "name", r"\$\{google_cloud_tasks_queue\.(\w+)\.name\}"),
    "google_secret_manager_secret_iam_member": (
        "secret",
        "secret_id",
        r"\$\{google_secret_manager_secret\.(\w+)\.secret_id\}",
    ),
}


def _resource(rtype: str, address: str, body: dict[str, Any]) -> str:
    """The grant's resource, named as `runtune.permissions` names them (`bucket:data`, `job:trainer`)."""
    if rtype == "google_project_iam_member":
        conditions = body.get("condition", [])
        if not conditions:
            return permissions.PROJECT
        (condition,) = conditions
        assert "${local.user_secret_prefix}" in condition["expression"], f"{address}: unmodelled condition"
        return permissions.USER_SECRETS
    assert rtype in _REFERENCES, f"{address}: a grant of a kind runtune/permissions.py does not model"
    kind, field, pattern = _REFERENCES[rtype]
    match = re.fullmatch(pattern, body[field])
    assert match, f"{address}: {field} {body[field]!r} is not a reference these tests resolve"
    return f"{kind}:{next(group for group in match.groups() if group)}"


def _role(role: str) -> str:
    if match := re.fullmatch(r'\$\{google_project_iam_custom_role\.runtune\["(\w+)"\]\.id\}', role):
        return f"custom:{match.group(1)}"
    return role


def terraform_grants(tf: Config) -> set[Grant]:
    """Every grant Terraform makes to a deployable's service account."""
    grants = set()
    for rtype in tf.resources:
        if not rtype.endswith("_iam_member"):
            continue
        for address, body in tf.instances(rtype):
            account = _account(body["member"])
            if account is None or account in NOT_DEPLOYABLES:
                continue
            grants.add(Grant(account, _role(body["role"]), _resource(rtype, address, body)))
    return grants


@pytest.fixture(scope="module")
def granted(tf: Config) -> set[Grant]:
    return terraform_grants(tf)


def test_every_deployable_has_its_account_and_nothing_else_does(tf: Config) -> None:
    assert set(tf.locals["service_accounts"]) - NOT_DEPLOYABLES == set(permissions.DEPLOYABLES)


def test_terraform_grants_exactly_what_the_table_derives(granted: set[Grant]) -> None:
    assert compare(all_required_grants(), granted) == []


def test_custom_roles_hold_exactly_the_permissions_the_adapters_call(tf: Config) -> None:
    custom = {
        _role(f"${{{address}.id}}"): set(body["permissions"])
        for address, body in tf.instances("google_project_iam_custom_role")
    }
    assert custom == {role: set(perms) for role, perms in permissions.CUSTOM_ROLE_PERMISSIONS.items()}


def test_a_role_narrower_than_the_code_fails(granted: set[Grant]) -> None:
    # The defect this table exists for: inference with the bucket's viewer role cannot write exports.
    writer = Grant("inference", "roles/storage.objectUser", permissions.DATA_BUCKET)
    assert writer in granted
    viewer = Grant("inference", "roles/storage.objectViewer", permissions.DATA_BUCKET)
    problems = compare(all_required_grants(), (granted - {writer}) | {viewer})
    assert problems == [
        "narrower than the code: inference: roles/storage.objectUser on bucket:data is missing",
        "wider than needed: inference: roles/storage.objectViewer on bucket:data is granted but "
        "runtune/permissions.py does not use it",
    ]
    # A grant dropped altogether fails too.
    assert compare(
        all_required_grants(),
        granted - {Grant("trainer", "roles/secretmanager.secretAccessor", permissions.USER_SECRETS)},
    ) == ["narrower than the code: trainer: roles/secretmanager.secretAccessor on project:user_secrets is missing"]


def test_a_role_wider_than_needed_fails(granted: set[Grant]) -> None:
    # A bucket viewer role for the gateway, which has no blob store at all.
    unused = Grant("gateway", "roles/storage.objectViewer", permissions.DATA_BUCKET)
    assert unused not in granted
    assert compare(all_required_grants(), granted | {unused}) == [
        "wider than needed: gateway: roles/storage.objectViewer on bucket:data is granted but "
        "runtune/permissions.py does not use it"
    ]
    # The same role on a wider resource is wider too.
    signer = Grant("inference", "roles/iam.serviceAccountTokenCreator", "service_account:trainer")
    assert compare(all_required_grants(), granted | {signer})[0].startswith("wider than needed: inference")


def test_the_table_drives_the_derivation_both_ways(granted: set[Grant]) -> None:
    # Code that starts writing where it only read must change the grant: the table's change alone
    # makes Terraform narrower than the code.
    table = dict(permissions.DEPLOYABLES)
    table["engine"] = replace(table["engine"], bucket={permissions.JOB_EXPORTS: "rw"})
    assert "narrower than the code: engine: roles/storage.objectUser on bucket:data is missing" in compare(
        all_required_grants(table), granted
    )
    # And code that stops signing URLs leaves a grant Terraform no longer needs.
    table = dict(permissions.DEPLOYABLES)
    table["preprocessing"] = replace(table["preprocessing"], signs_urls=False)
    assert compare(all_required_grants(table), granted) == [
        "wider than needed: preprocessing: roles/iam.serviceAccountTokenCreator on service_account:preprocessing "
        "is granted but runtune/permissions.py does not use it"
    ]


def test_the_throughput_collection_is_the_trainers_to_write_and_the_jobs_apis_to_read() -> None:
    from runtune.throughput import throughput_path

    path = throughput_path("google/gemma-3-4b-it", "nvidia-l4", "qlora")
    assert permissions.of("trainer").allows_document(path, "w")
    assert permissions.of("training").allows_document(path, "r")
    assert not permissions.of("training").allows_document(path, "w")
    assert not permissions.of("inference").allows_document(path, "r")
