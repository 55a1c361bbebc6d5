from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.terraform import REPO_ROOT, Config

# checkov lives in its own virtual environment: its exact pins (packaging<24, aiohttp<3.15,
# networkx<2.7, boto3==...) would downgrade or cap packages the project itself runs on.
CHECKOV_VERSION = "3.3.30"
CHECKOV_VENV = REPO_ROOT / ".venv" / f"checkov-{CHECKOV_VERSION}"


@pytest.fixture(scope="session")
def tf() -> Config:
    return Config.load()


@pytest.fixture(scope="session")
def checkov() -> Path:
    """The checkov executable, installed on first use into `.venv/checkov-<version>` (pip, PyPI)."""
    executable = CHECKOV_VENV / "bin" / "checkov"
    complete = CHECKOV_VENV / ".installed"
    if complete.exists() and executable.exists():
        return executable
    # A virtual environment cannot be moved (its scripts name their interpreter by absolute path),
    # so it is built in place and marked complete last; a half-built one is rebuilt.
    shutil.rmtree(CHECKOV_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(CHECKOV_VENV)], check=True)
    subprocess.run(
        [str(CHECKOV_VENV / "bin" / "python"), "-m", "pip", "install", "-q", f"checkov=={CHECKOV_VERSION}"],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    complete.touch()
    return executable
