"""Hub imports against a stand-in Hub on localhost (no internet): the real `huggingface_hub` and
`datasets` code, an ingestion process pointed at it with `HF_ENDPOINT`, and the request log to
show what was, and was not, opened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runtune.settings import REPO_ROOT
from tests.datasets.fake_hub import SHA, FakeHub

_IMPORT = """
import json, sys
from runtune.datasets.hub import open_hub_dataset
from runtune.datasets.limits import DatasetLimits
from runtune.datasets.problems import DataError
from runtune.schemas.datasets import HubSource
try:
    table = open_hub_dataset(HubSource(id="me/set", split="train"), None, DatasetLimits())
    print(json.dumps({"rows": [row for _, row in table.rows]}))
except DataError as exc:
    print(json.dumps({"code": exc.code, "message": str(exc)}))
"""
DATA = b"question,answer\nhi,there\nhow,fine\n"


def _card(path: str) -> bytes:
    return f"---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: {path}\n---\n".encode()


def _import(hub: FakeHub, tmp_path: Path, **env: str) -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, "-c", _IMPORT],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=180,
        check=True,
        env={
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "HF_ENDPOINT": hub.url,
            "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            **env,
        },
    )
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_a_card_inside_the_repository_imports_from_the_commit(tmp_path) -> None:
    with FakeHub({"README.md": _card("data/train.csv"), "data/train.csv": DATA}) as hub:
        outcome = _import(hub, tmp_path)
    assert outcome == {"rows": [{"question": "hi", "answer": "there"}, {"question": "how", "answer": "fine"}]}
    assert f"GET /datasets/me/set/resolve/{SHA}/data/train.csv" in hub.requests


@pytest.mark.parametrize("pattern", ["/etc/passwd", "../x", "https://evil/x.csv", "hf://datasets/other/repo/x.csv"])
def test_a_card_naming_files_outside_fails_having_read_only_the_card(tmp_path, pattern) -> None:
    with FakeHub({"README.md": _card(pattern), "data/train.csv": DATA}) as hub:
        outcome = _import(hub, tmp_path)
    assert outcome["code"] == "hub_outside_repository", outcome
    assert f"the card names '{pattern}', which is outside the repository" in outcome["message"]
    # Only the repository's metadata and its card were asked for: nothing was listed or resolved.
    assert all(r.startswith(("GET /api/datasets/me/set", "HEAD /datasets", "GET /datasets")) for r in hub.requests)
    assert not [r for r in hub.requests if "/tree/" in r or "train.csv" in r], hub.requests


def test_data_files_over_the_byte_limit_are_not_read(tmp_path) -> None:
    with FakeHub({"README.md": _card("data/*.csv"), "data/train.csv": DATA}) as hub:
        outcome = _import(hub, tmp_path, RUNTUNE_DATASET_MAX_HUB_BYTES="10")
    assert outcome["code"] == "hub_too_large", outcome
    assert f"the data files are {len(DATA)} bytes, over the limit of 10" in outcome["message"]
    assert not [r for r in hub.requests if r.endswith("/data/train.csv")], hub.requests


def test_a_pattern_in_the_standalone_yaml_is_checked_too(tmp_path) -> None:
    # `datasets` merges `.huggingface.yaml` into the card, so a pattern there is the card's too.
    standalone = b"configs:\n- config_name: default\n  data_files: /etc/passwd\n"
    files = {"README.md": b"# no YAML header\n", ".huggingface.yaml": standalone, "data/train.csv": DATA}
    with FakeHub(files) as hub:
        outcome = _import(hub, tmp_path)
    assert outcome["code"] == "hub_outside_repository", outcome
    assert "the card names '/etc/passwd'" in outcome["message"]
