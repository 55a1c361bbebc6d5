"""Every .tf file parses, providers are pinned, and the configuration hangs together."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from tests.infra.terraform import INFRA, REPO_ROOT, Config, Renderer, blocks, expression, parse

EXPECTED_FILES = {
    "versions.tf",
    "variables.tf",
    "main.tf",
    "apis.tf",
    "artifact_registry.tf",
    "storage.tf",
    "firestore.tf",
    "secrets.tf",
    "iam.tf",
    "network.tf",
    "cloud_run.tf",
    "identity.tf",
    "outputs.tf",
}


def test_every_tf_file_parses() -> None:
    paths = sorted(INFRA.glob("*.tf"))
    assert {path.name for path in paths} >= EXPECTED_FILES
    for path in paths:
        assert parse(path), f"{path.name} is empty"


def test_terraform_and_providers_are_pinned(tf: Config) -> None:
    (settings,) = tf.terraform
    assert re.fullmatch(r">= 1\.\d+\.\d+, < 2\.0\.0", settings["required_version"])
    providers = settings["required_providers"][0]
    for name in ("google", "google-beta"):
        assert providers[name]["source"] == f"hashicorp/{name}"
        assert re.fullmatch(r"~> \d+\.\d+", providers[name]["version"]), f"{name} must be pinned to a minor series"
    assert providers["google"]["version"] == providers["google-beta"]["version"]
    assert "gcs" in settings["backend"][0], "state belongs in a GCS bucket, never on a laptop"


def test_gpu_choices_come_from_the_gpu_table(tf: Config) -> None:
    # Both GPU variables are checked against the table's names, not a list of their own.
    assert tf.variables["engine_gpu_type"]["default"] == "nvidia-l4"
    assert (
        "contains(local.gpu_names, var.engine_gpu_type)"
        in tf.variables["engine_gpu_type"]["validation"][0]["condition"]
    )
    trainer = tf.variables["trainer_gpus"]
    assert trainer["default"] is None, "null offers every GPU of the table"
    assert "contains(local.gpu_names, gpu)" in trainer["validation"][0]["condition"]
    assert "gpu_type" not in tf.variables, "the trainer's GPUs are trainer_gpus (one job each)"


def test_image_tag_is_required(tf: Config) -> None:
    assert "default" not in tf.variables["image_tag"], "deploying needs the tag the build printed"
    assert "default" not in tf.variables["project_id"]


def test_every_image_comes_from_the_registry_at_the_one_tag(tf: Config) -> None:
    assert "${local.registry}/${key}:${var.image_tag}" in tf.locals["images"]
    assert tf.locals["registry"] == "${var.region}-docker.pkg.dev/${var.project_id}/${var.artifact_repository}"
    images = {}
    for rtype in ("google_cloud_run_v2_service", "google_cloud_run_v2_job"):
        for address, body in tf.instances(rtype):
            containers = blocks(body, "template", "containers") + blocks(body, "template", "template", "containers")
            for container in containers:
                match = re.fullmatch(r'\$\{local\.images(?:\.(\w+)|\["(\w+)"\])\}', container["image"])
                assert match, f"{address}: image {container['image']!r} bypasses local.images"
                images[address] = match.group(1) or match.group(2)
    # One image per deployable; the trainer's serves its job of every GPU type, the ingest job runs the
    # preprocessing image (`python -m jobs.ingest`) and the evaluate job the inference image; the
    # convert job has its own (llama.cpp compiled in).
    assert sorted(set(images.values())) == sorted(
        ["gateway", "preprocessing", "training", "inference", "engine", "trainer", "convert"]
    )
    convert = tf.instance('google_cloud_run_v2_job.cpu["convert"]')
    (container,) = blocks(convert, "template", "template", "containers")
    assert container["command"] == ["python", "-m", "jobs.convert"]
    (mount,) = blocks(container, "volume_mounts")
    assert mount["mount_path"] == "${local.data_mount_path}"  # the merged model in, GGUF files out
    (volume,) = blocks(convert, "template", "template", "volumes")
    assert volume["name"] == mount["name"] and volume["gcs"][0]["read_only"] is False
    evaluate = tf.instance('google_cloud_run_v2_job.cpu["evaluate"]')
    (container,) = blocks(evaluate, "template", "template", "containers")
    assert container["command"] == ["python", "-m", "jobs.evaluate"]
    ingest = tf.instance('google_cloud_run_v2_job.cpu["ingest"]')
    (container,) = blocks(ingest, "template", "template", "containers")
    assert container["command"] == ["python", "-m", "jobs.ingest"]
    # Only the convert job mounts the bucket.
    for job in ("evaluate", "ingest"):
        body = tf.instance(f'google_cloud_run_v2_job.cpu["{job}"]')
        assert not blocks(body, "template", "template", "volumes"), job
        assert not blocks(body, "template", "template", "containers", "volume_mounts"), job


def test_cpu_jobs_are_named_as_the_services_launch_them(tf: Config) -> None:
    from runtune.adapters.launch_contract import cloud_run_job_name
    from runtune.ports.launcher import Workload

    renderer = Renderer(tf, {"project_id": "runtune-test", "image_tag": "0" * 40}, "1")
    jobs = {address: body for address, body in tf.instances("google_cloud_run_v2_job") if ".cpu[" in address}
    assert set(jobs) == {f'google_cloud_run_v2_job.cpu["{job}"]' for job in ("ingest", "evaluate", "convert")}
    for address, body in jobs.items():
        workload = Workload(address.split('"')[1])
        assert renderer.render(body["name"]) == cloud_run_job_name(workload)
        (template,) = blocks(body, "template", "template")
        # A retry would redo a deterministic failure and hide why the first attempt died.
        assert template["max_retries"] == 0, address
        assert template["timeout"] == f"${{var.{workload.value}_task_timeout_s}}s", address
        (container,) = template["containers"]
        limits = container["resources"][0]["limits"]
        assert limits == {"cpu": f"${{var.{workload.value}_cpu}}", "memory": f"${{var.{workload.value}_memory}}"}


def test_deterministic_urls_are_computed_from_the_project_number(tf: Config) -> None:
    urls = tf.locals["urls"]
    assert "https://${local.names[key]}-${local.project_number}.${var.region}.run.app" in urls
    assert expression(tf.locals["project_number"]) == "data.google_project.this.number"


def test_services_are_named_as_the_settings_expect(tf: Config) -> None:
    from runtune.adapters.launch_contract import DEFAULT_JOB_PREFIX
    from runtune.settings import ServiceSettings

    assert tf.locals["job_prefix"] == ServiceSettings.model_fields["cloud_run_job_prefix"].default == DEFAULT_JOB_PREFIX
    for key, name in tf.locals["names"].items():
        assert re.fullmatch(r"[a-z][a-z0-9-]{0,48}", name), key


def test_outputs_give_the_ui_what_it_needs(tf: Config) -> None:
    assert tf.outputs["gateway_url"]["value"] == "${local.urls.gateway}"
    assert tf.outputs["firebase_web_config"]["value"] == "${local.firebase_web_config}"
    web = tf.locals["firebase_web_config"]
    assert {"apiKey", "authDomain", "projectId", "appId"} <= set(web)
    # The same values reach the UI at runtime, through the gateway's /config.json.
    gateway_env = tf.local_value("env")["gateway"]
    assert gateway_env["RUNTUNE_FIREBASE_WEB_CONFIG"] == "${jsonencode(local.firebase_web_config)}"


def test_identity_platform_email_password(tf: Config) -> None:
    (config,) = tf.of_type("google_identity_platform_config").values()
    (sign_in,) = config["sign_in"]
    (email,) = sign_in["email"]
    assert email == {"enabled": True, "password_required": True}


def test_signup_is_not_open_by_default(tf: Config) -> None:
    from runtune.settings import SignupPolicy

    policy = tf.variables["signup_policy"]
    assert policy["default"] == SignupPolicy.invite.value
    for name in SignupPolicy:
        assert f'"{name.value}"' in policy["validation"][0]["condition"]
    # A policy whose list is empty admits nobody: `terraform plan` refuses it, as the gateway would.
    for variable, value in (("signup_invited_emails", "invite"), ("signup_allowed_domains", "domains")):
        (validation,) = tf.variables[variable]["validation"]
        assert validation["condition"] == f'${{var.signup_policy != "{value}" || length(var.{variable}) > 0}}'
    gateway_env = tf.local_value("env")["gateway"]
    assert gateway_env["RUNTUNE_SIGNUP_POLICY"] == "${var.signup_policy}"


DEPLOYED_ADDRESSES = Path(__file__).with_name("deployed_addresses.txt")


def deployed_addresses() -> set[str]:
    lines = DEPLOYED_ADDRESSES.read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def test_every_move_lands_on_a_resource_and_leaves_its_old_address_empty(tf: Config) -> None:
    addresses = tf.addresses()
    moves = tf.moves()
    assert moves, "infra/moved.tf keeps the old addresses of the folded resources"
    sources = [source for source, _ in moves]
    assert len(set(sources)) == len(sources), "one move per old address"
    for source, target in moves:
        # No chains: each move names the address the resource has now.
        assert target in addresses, f"moved to {target}, which is no resource instance"
        assert source not in addresses, f"moved from {source}, which is still a resource instance"


def test_no_address_once_deployed_is_left_without_a_resource_or_a_move(tf: Config) -> None:
    # A resource whose address changes without a `moved` block is destroyed and created again on the
    # next apply (a custom role's id then cannot be reused for weeks; an index is rebuilt). The list
    # holds every address (default variables) a deployment had; removing a resource on purpose means
    # removing its line too.
    moved = dict(tf.moves())
    orphans = sorted(address for address in deployed_addresses() if moved.get(address, address) not in tf.addresses())
    assert orphans == []


def test_the_address_check_catches_a_rename_without_a_move(tf: Config) -> None:
    indexes = {
        ("composite" if name == "jobs" else name): body for name, body in tf.of_type("google_firestore_index").items()
    }
    renamed = replace(tf, resources=tf.resources | {"google_firestore_index": indexes})
    moved = dict(renamed.moves())
    orphans = {address for address in deployed_addresses() if moved.get(address, address) not in renamed.addresses()}
    assert orphans == {"google_firestore_index.jobs_status_created", "google_firestore_index.jobs_owner_status_created"}


def test_custom_roles_come_from_the_file_the_permissions_table_reads(tf: Config) -> None:
    from runtune.doctor.identity import custom_role_name
    from runtune.permissions import CUSTOM_ROLES_FILE, custom_roles_data

    assert tf.local_files["custom_roles"] == (REPO_ROOT / "runtune" / CUSTOM_ROLES_FILE).resolve()
    assert tf.locals["custom_roles"] == custom_roles_data()
    roles = dict(tf.instances("google_project_iam_custom_role"))
    assert set(roles) == {f'google_project_iam_custom_role.runtune["{key}"]' for key in custom_roles_data()}
    for key, role in custom_roles_data().items():
        body = roles[f'google_project_iam_custom_role.runtune["{key}"]']
        assert (body["role_id"], body["title"], body["description"]) == (
            role["role_id"],
            role["title"],
            role["description"],
        )
        assert body["permissions"] == role["permissions"] == sorted(role["permissions"])
        assert len(role["why"].split()) >= 8, f"{key}: say why no predefined role fits"
        # What `runtune doctor` looks the role up by.
        assert custom_role_name(key, "p") == f"projects/p/roles/{role['role_id']}"
