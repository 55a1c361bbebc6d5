"""Every .tf file parses, providers are pinned, and the configuration hangs together."""

from __future__ import annotations

import re

from tests.infra.terraform import INFRA, Config, blocks, expression, parse

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
    convert = tf.resource("google_cloud_run_v2_job", "convert")
    (container,) = blocks(convert, "template", "template", "containers")
    assert container["command"] == ["python", "-m", "jobs.convert"]
    (mount,) = blocks(container, "volume_mounts")
    assert mount["mount_path"] == "${local.data_mount_path}"  # the merged model in, GGUF files out
    evaluate = tf.resource("google_cloud_run_v2_job", "evaluate")
    (container,) = blocks(evaluate, "template", "template", "containers")
    assert container["command"] == ["python", "-m", "jobs.evaluate"]
    ingest = tf.resource("google_cloud_run_v2_job", "ingest")
    (container,) = blocks(ingest, "template", "template", "containers")
    assert container["command"] == ["python", "-m", "jobs.ingest"]


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
    gateway_env = tf.locals["env"]["gateway"]
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
    gateway_env = tf.locals["env"]["gateway"]
    assert gateway_env["RUNTUNE_SIGNUP_POLICY"] == "${var.signup_policy}"
