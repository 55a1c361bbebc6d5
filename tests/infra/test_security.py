"""Safe by default: one public service, private buckets, least-privilege service accounts."""

from __future__ import annotations

import re
from typing import Any

from runtune.settings import EMULATOR_VARIABLES
from tests.infra.terraform import INFRA, Config, blocks

PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}
JOB_RUNNER = '${google_project_iam_custom_role.runtune["job_runner"].id}'
IAM_SUFFIXES = ("_iam_member", "_iam_binding", "_iam_policy")


def iam_grants(tf: Config) -> list[tuple[str, str, dict[str, Any], list[str]]]:
    """(resource type, address, body, members) of every IAM grant in the configuration."""
    grants = []
    for rtype in tf.resources:
        if not rtype.endswith(IAM_SUFFIXES):
            continue
        for address, body in tf.instances(rtype):
            members = [body["member"]] if "member" in body else list(body.get("members", []))
            grants.append((rtype, address, body, members))
    return grants


def test_iam_is_additive_only(tf: Config) -> None:
    # *_iam_policy and *_iam_binding replace what others granted; members add to it.
    for rtype, address, _, _ in iam_grants(tf):
        assert rtype.endswith("_iam_member"), f"{address}: use *_iam_member"


def test_only_the_gateway_is_public(tf: Config) -> None:
    public = [
        (rtype, address, body) for rtype, address, body, members in iam_grants(tf) if PUBLIC_MEMBERS & set(members)
    ]
    assert len(public) == 1, public
    rtype, _, body = public[0]
    assert rtype == "google_cloud_run_v2_service_iam_member"
    assert body["role"] == "roles/run.invoker"
    assert body["member"] == "allUsers"
    assert body["name"] == '${google_cloud_run_v2_service.cpu["gateway"].name}'
    assert set(tf.locals["public_services"]) == {"gateway"}


def test_private_services_are_internal_and_iam_checked(tf: Config) -> None:
    services = dict(tf.instances("google_cloud_run_v2_service"))
    assert services.pop('google_cloud_run_v2_service.cpu["gateway"]')["ingress"] == "INGRESS_TRAFFIC_ALL"
    assert set(services) == {
        'google_cloud_run_v2_service.cpu["preprocessing"]',
        'google_cloud_run_v2_service.cpu["training"]',
        'google_cloud_run_v2_service.cpu["inference"]',
        "google_cloud_run_v2_service.engine",
    }
    for address, body in services.items():
        assert body["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY", address
    for address, body in tf.instances("google_cloud_run_v2_service"):
        assert body.get("invoker_iam_disabled") in (None, False), f"{address} must keep the IAM invoker check"


def test_only_the_gateway_invokes_the_services_and_only_inference_and_evaluations_the_engine(tf: Config) -> None:
    invokers: dict[str, set[str]] = {}
    for rtype, _, body, members in iam_grants(tf):
        if rtype == "google_cloud_run_v2_service_iam_member":
            assert body["role"] == "roles/run.invoker"
            invokers.setdefault(body["name"], set()).update(members)
    gateway_sa = '${google_service_account.sa["gateway"].member}'
    # Besides the gateway, Cloud Tasks calls the training service's webhook dispatcher as `webhooks`
    # (its middleware takes that account's token on the dispatcher's path only; internal ingress
    # admits Cloud Tasks).
    tasks_sa = '${google_service_account.sa["webhooks"].member}'
    for service, extra in (("preprocessing", set()), ("training", {tasks_sa}), ("inference", set())):
        assert invokers[f'${{google_cloud_run_v2_service.cpu["{service}"].name}}'] == {gateway_sa} | extra
    assert invokers["${google_cloud_run_v2_service.engine.name}"] == {
        '${google_service_account.sa["inference"].member}',
        '${google_service_account.sa["evaluate"].member}',
    }


def test_callers_of_internal_services_egress_through_the_vpc(tf: Config) -> None:
    # An internal-only service sees another Cloud Run service's request as internal only when it
    # leaves through a VPC network (Direct VPC egress, all traffic, Private Google Access).
    for service in ("gateway", "inference"):
        (vpc,) = blocks(tf.instance(f'google_cloud_run_v2_service.cpu["{service}"]'), "template", "vpc_access")
        assert vpc["egress"] == "ALL_TRAFFIC", service
    for service in ("preprocessing", "training"):  # they call no internal service
        assert not blocks(tf.instance(f'google_cloud_run_v2_service.cpu["{service}"]'), "template", "vpc_access")
    # The evaluate job calls the internal-only engine too.
    (job_vpc,) = blocks(tf.instance('google_cloud_run_v2_job.cpu["evaluate"]'), "template", "template", "vpc_access")
    assert job_vpc["egress"] == "ALL_TRAFFIC"
    for job in ("ingest", "convert"):  # the other CPU jobs call no internal service
        assert not blocks(tf.instance(f'google_cloud_run_v2_job.cpu["{job}"]'), "template", "template", "vpc_access")
    (subnet,) = tf.of_type("google_compute_subnetwork").values()
    assert subnet["private_ip_google_access"] is True


def test_no_bucket_is_public(tf: Config) -> None:
    for rtype, address, body, members in iam_grants(tf):
        if rtype.startswith("google_storage_bucket"):
            assert not PUBLIC_MEMBERS & set(members), address
            assert not body["role"].endswith(("admin", "Admin", "owner", "Owner")), address
    for name, bucket in tf.of_type("google_storage_bucket").items():
        assert bucket["uniform_bucket_level_access"] is True, name
        assert bucket["public_access_prevention"] == "enforced", name
    assert not tf.of_type("google_storage_bucket_acl") and not tf.of_type("google_storage_default_object_acl")


def test_data_bucket_lifecycle_only_touches_temporary_objects(tf: Config) -> None:
    bucket = tf.resource("google_storage_bucket", "data")
    assert bucket["versioning"][0]["enabled"] is True
    assert bucket["force_destroy"] is False
    temporary = tf.locals["temporary_prefixes"]
    assert temporary and all(prefix.endswith("/") and not prefix.startswith("users/") for prefix in temporary)
    rules = list(bucket.get("lifecycle_rule", []))
    for dynamic in bucket.get("dynamic", []):
        rule = dynamic["lifecycle_rule"]
        assert rule["for_each"] == "${local.temporary_prefixes}"
        (condition,) = rule["content"][0]["condition"]
        assert condition["matches_prefix"] == ["${lifecycle_rule.value}"]
    for rule in rules:
        (condition,) = rule["condition"]
        on_temporary = condition.get("matches_prefix") and set(condition["matches_prefix"]) <= set(temporary)
        on_old_versions_only = condition.get("with_state") == "ARCHIVED"
        assert on_temporary or on_old_versions_only, f"lifecycle rule deletes live data: {rule}"


def test_data_bucket_cors_admits_the_ui_origin_only(tf: Config) -> None:
    (cors,) = tf.resource("google_storage_bucket", "data")["cors"]
    assert cors["origin"] == ["${local.ui_origin}"]
    assert "*" not in cors["origin"]
    assert set(cors["method"]) <= {"GET", "HEAD", "PUT", "POST"}


def test_no_project_level_basic_or_admin_role(tf: Config) -> None:
    custom_roles = {"${" + address + ".id}": body for address, body in tf.instances("google_project_iam_custom_role")}
    assert len(custom_roles) == 3
    for rtype, address, body, _ in iam_grants(tf):
        if not rtype.startswith("google_project_iam"):
            continue
        role = body["role"]
        if role in custom_roles:
            for permission in custom_roles[role]["permissions"]:
                assert not permission.endswith(("setIamPolicy", "*")), f"{address}: {permission}"
            continue
        assert role.startswith("roles/"), f"{address}: unexpected role {role!r}"
        assert role not in {"roles/owner", "roles/editor", "roles/viewer"}, address
        assert not re.search(r"admin", role, re.IGNORECASE), f"{address}: {role} at project level"


def test_user_secrets_are_reachable_only_by_name_prefix(tf: Config) -> None:
    prefix = tf.locals["user_secret_prefix"]
    assert prefix == "projects/${local.project_number}/secrets/runtune-user-"
    training = tf.resource("google_project_iam_member", "training_user_secrets")
    readers = [body for address, body in tf.instances("google_project_iam_member") if "user_secret_readers" in address]
    assert len(readers) == 2 and all(body["role"] == "roles/secretmanager.secretAccessor" for body in readers)
    for grant in (training, *readers):
        (condition,) = grant["condition"]
        assert 'resource.name.startsWith("${local.user_secret_prefix}")' in condition["expression"]
    # The adapter's secret ids must match the prefix the condition grants.
    from runtune.adapters.secret_manager import SECRET_ID_PREFIX

    assert prefix.endswith(SECRET_ID_PREFIX)


def test_one_service_account_per_deployable(tf: Config) -> None:
    accounts = tf.locals["service_accounts"]
    deployables = {"gateway", "preprocessing", "training", "inference", "trainer", "evaluate", "ingest", "engine"}
    deployables.add("convert")
    deployables.add("webhooks")  # no workload: the identity Cloud Tasks calls the dispatcher as
    assert set(accounts) == deployables | {"build"}
    services = dict(tf.instances("google_cloud_run_v2_service"))
    for address, body in services.items():
        (template,) = body["template"]
        account = re.fullmatch(r'\$\{google_service_account\.sa\["(\w+)"\]\.email\}', template["service_account"])
        assert account, address
        key = re.search(r'"(\w+)"\]$', address)
        expected = key.group(1) if key else address.rsplit(".", 1)[1]
        assert account.group(1) == expected, f"{address} runs as {account.group(1)}"
    jobs = {"trainer": tf.resource("google_cloud_run_v2_job", "trainer")}
    jobs |= {job: tf.instance(f'google_cloud_run_v2_job.cpu["{job}"]') for job in ("evaluate", "ingest", "convert")}
    for job, body in jobs.items():
        (job_template,) = blocks(body, "template", "template")
        assert job_template["service_account"] == f'${{google_service_account.sa["{job}"].email}}'


def test_preprocessing_runs_only_the_ingest_job(tf: Config) -> None:
    grant = tf.instance('google_cloud_run_v2_job_iam_member.cpu_job_launcher["ingest"]')
    assert grant["name"] == '${google_cloud_run_v2_job.cpu["ingest"].name}'
    assert grant["role"] == JOB_RUNNER
    assert grant["member"] == '${google_service_account.sa["preprocessing"].member}'
    acts_as = tf.instance('google_service_account_iam_member.launcher_acts_as_job["ingest"]')
    assert acts_as["service_account_id"] == '${google_service_account.sa["ingest"].name}'
    assert acts_as["member"] == '${google_service_account.sa["preprocessing"].member}'
    assert acts_as["role"] == "roles/iam.serviceAccountUser"
    (job_template,) = blocks(tf.instance('google_cloud_run_v2_job.cpu["ingest"]'), "template", "template")
    # A retry would repeat a deterministic failure (the same file out of memory or time).
    assert job_template["max_retries"] == 0


def test_training_runs_only_the_trainer_jobs(tf: Config) -> None:
    # One grant per trainer job (one job per GPU offered), each on its job only.
    grant = tf.resource("google_cloud_run_v2_job_iam_member", "training_runs_trainer")
    assert grant["for_each"] == "${google_cloud_run_v2_job.trainer}"
    assert grant["name"] == "${each.value.name}"
    assert grant["role"] == JOB_RUNNER
    assert grant["member"] == "${google_service_account.sa[local.job_launchers.trainer].member}"
    assert tf.locals["job_launchers"]["trainer"] == "training"
    trainers = {
        address.removeprefix("google_cloud_run_v2_job.trainer"): body["name"]
        for address, body in tf.instances("google_cloud_run_v2_job")
        if address.startswith("google_cloud_run_v2_job.trainer[")
    }
    grants = dict(tf.instances("google_cloud_run_v2_job_iam_member"))
    named = {key: grants[f"google_cloud_run_v2_job_iam_member.training_runs_trainer{key}"]["name"] for key in trainers}
    assert trainers and named == trainers
    members = {grants[f"google_cloud_run_v2_job_iam_member.training_runs_trainer{key}"]["member"] for key in trainers}
    assert members == {'${google_service_account.sa["training"].member}'}
    acts_as = tf.instance('google_service_account_iam_member.launcher_acts_as_job["trainer"]')
    assert acts_as["service_account_id"] == '${google_service_account.sa["trainer"].name}'
    assert acts_as["member"] == '${google_service_account.sa["training"].member}'
    assert acts_as["role"] == "roles/iam.serviceAccountUser"


def test_inference_runs_only_the_evaluate_and_convert_jobs(tf: Config) -> None:
    job_grants = [body for _, body in tf.instances("google_cloud_run_v2_job_iam_member")]
    theirs = [body for body in job_grants if body["member"] == '${google_service_account.sa["inference"].member}']
    assert sorted((body["name"], body["role"]) for body in theirs) == [
        (f'${{google_cloud_run_v2_job.cpu["{job}"].name}}', JOB_RUNNER) for job in ("convert", "evaluate")
    ]
    for job in ("evaluate", "convert"):
        acts_as = tf.instance(f'google_service_account_iam_member.launcher_acts_as_job["{job}"]')
        assert acts_as["service_account_id"] == f'${{google_service_account.sa["{job}"].name}}'
        assert acts_as["member"] == '${google_service_account.sa["inference"].member}'
        assert acts_as["role"] == "roles/iam.serviceAccountUser"


def test_url_signers_sign_only_as_themselves(tf: Config) -> None:
    for address, body in tf.instances("google_service_account_iam_member"):
        if body["role"] != "roles/iam.serviceAccountTokenCreator":
            continue
        target = re.fullmatch(r'\$\{google_service_account\.sa\["(\w+)"\]\.name\}', body["service_account_id"])
        member = re.fullmatch(r'\$\{google_service_account\.sa\["(\w+)"\]\.member\}', body["member"])
        assert target and member and target.group(1) == member.group(1), address


def test_no_emulator_variable_anywhere_in_infra() -> None:
    # The README may explain why they are absent; no configuration file may name one.
    for path in INFRA.rglob("*"):
        if path.is_file() and path.suffix in {".tf", ".tfvars", ".json", ".hcl"}:
            text = path.read_text()
            for name in (*EMULATOR_VARIABLES, "RUNTUNE_INTERNAL_TOKEN"):
                assert name not in text, f"{path.name} mentions {name}"
