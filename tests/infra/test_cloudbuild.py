"""cloudbuild.yaml against Cloud Build's build config structure, and what it must do."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.infra.terraform import REPO_ROOT, Config

# https://cloud.google.com/build/docs/build-config-file-schema
TOP_LEVEL = {
    "steps",
    "timeout",
    "queueTtl",
    "logsBucket",
    "options",
    "substitutions",
    "tags",
    "serviceAccount",
    "secrets",
    "availableSecrets",
    "artifacts",
    "images",
}
STEP_KEYS = {
    "name",
    "args",
    "env",
    "dir",
    "id",
    "waitFor",
    "entrypoint",
    "secretEnv",
    "volumes",
    "timeout",
    "script",
    "automapSubstitutions",
    "allowFailure",
    "allowExitCodes",
}
OPTION_KEYS = {
    "sourceProvenanceHash",
    "machineType",
    "diskSizeGb",
    "substitutionOption",
    "dynamicSubstitutions",
    "automapSubstitutions",
    "logStreamingOption",
    "logging",
    "defaultLogsBucketBehavior",
    "env",
    "secretEnv",
    "volumes",
    "pool",
    "requestedVerifyOption",
}
MACHINE_TYPES = {"UNSPECIFIED", "N1_HIGHCPU_8", "N1_HIGHCPU_32", "E2_HIGHCPU_8", "E2_HIGHCPU_32", "E2_MEDIUM"}
LOGGING = {"LOGGING_UNSPECIFIED", "LEGACY", "GCS_ONLY", "STACKDRIVER_ONLY", "CLOUD_LOGGING_ONLY", "NONE"}
BUILT_IN = {
    "PROJECT_ID",
    "BUILD_ID",
    "PROJECT_NUMBER",
    "LOCATION",
    "TRIGGER_NAME",
    "COMMIT_SHA",
    "REVISION_ID",
    "SHORT_SHA",
    "REPO_NAME",
    "REPO_FULL_NAME",
    "BRANCH_NAME",
    "TAG_NAME",
    "REF_NAME",
    "TRIGGER_BUILD_CONFIG_PATH",
    "SERVICE_ACCOUNT_EMAIL",
    "SERVICE_ACCOUNT",
}
IMAGES = {"gateway", "preprocessing", "training", "inference", "trainer", "engine", "convert"}
DURATION = re.compile(r"^\d+(\.\d+)?s$")


@pytest.fixture(scope="module")
def build() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "cloudbuild.yaml").read_text())


def substitution_references(text: str) -> set[str]:
    """Names referenced as $NAME or ${NAME}; `$$` is Cloud Build's escape for a literal `$`."""
    text = text.replace("$$", "")
    return {a or b for a, b in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", text)}


def test_structure(build: dict[str, Any]) -> None:
    assert set(build) <= TOP_LEVEL, set(build) - TOP_LEVEL
    assert DURATION.match(build["timeout"])
    options = build["options"]
    assert set(options) <= OPTION_KEYS, set(options) - OPTION_KEYS
    assert options["machineType"] in MACHINE_TYPES
    assert options["logging"] in LOGGING
    assert isinstance(options["diskSizeGb"], int) and options["diskSizeGb"] <= 4000


def test_steps(build: dict[str, Any]) -> None:
    steps = build["steps"]
    assert 1 <= len(steps) <= 300
    ids = [step["id"] for step in steps]
    assert len(ids) == len(set(ids)), "step ids must be unique"
    seen: set[str] = set()
    for step in steps:
        assert set(step) <= STEP_KEYS, (step["id"], set(step) - STEP_KEYS)
        assert isinstance(step["name"], str) and step["name"]
        assert all(isinstance(arg, str) for arg in step.get("args", []))
        for dependency in step.get("waitFor", []):
            # '-' means "start at once"; any other id must be an earlier step.
            assert dependency == "-" or dependency in seen, f"{step['id']} waits for unknown step {dependency}"
        for entry in step.get("env", []):
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", entry)
        seen.add(step["id"])


def test_substitutions(build: dict[str, Any]) -> None:
    declared = build["substitutions"]
    assert set(declared) == {"_REGION", "_REPOSITORY"}
    for name in declared:
        assert re.fullmatch(r"_[A-Z0-9_]+", name), f"user substitutions are _UPPER_CASE: {name}"
    text = (REPO_ROOT / "cloudbuild.yaml").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    referenced = substitution_references(body)
    # Cloud Build refuses undeclared and unused user substitutions (unless ALLOW_LOOSE).
    assert referenced - BUILT_IN - set(declared) == set()
    assert set(declared) <= referenced


def test_every_image_builds_in_parallel_with_cache_and_sha_tag(build: dict[str, Any]) -> None:
    steps = {step["id"]: step for step in build["steps"]}
    registry = "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}"
    for image in IMAGES:
        step = steps[f"build-{image}"]
        assert step["waitFor"] == ["-"], f"build-{image} must start at once"
        args = step["args"]
        assert args[0] == "build" and args[-1] == "."
        assert f"--cache-from={registry}/{image}:latest" in args
        assert f"--tag={registry}/{image}:$COMMIT_SHA" in args
        assert f"--tag={registry}/{image}:latest" in args
        assert "--build-arg=BUILDKIT_INLINE_CACHE=1" in args and "DOCKER_BUILDKIT=1" in step["env"]
        dockerfile = next(arg.split("=", 1)[1] for arg in args if arg.startswith("--file="))
        assert (REPO_ROOT / dockerfile).is_file()
        push = steps[f"push-{image}"]
        assert push["waitFor"] == [f"build-{image}"]
        assert push["args"] == ["push", "--all-tags", f"{registry}/{image}"]
        assert f"{registry}/{image}:$COMMIT_SHA" in build["images"]
    last = build["steps"][-1]
    assert set(last["waitFor"]) == {f"push-{image}" for image in IMAGES}
    assert "image_tag=$COMMIT_SHA" in last["args"][-1]


def test_images_match_what_terraform_deploys(build: dict[str, Any], tf: Config) -> None:
    assert build["substitutions"]["_REPOSITORY"] == tf.variables["artifact_repository"]["default"]
    assert build["substitutions"]["_REGION"] == tf.variables["region"]["default"]
    assert "${local.registry}/${key}:${var.image_tag}" in tf.locals["images"]
    assert set(re.findall(r'"(\w+)"', tf.locals["images"])) == IMAGES
