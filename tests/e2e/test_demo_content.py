"""A first start offers what a new user needs to try the whole flow: tiny models and a demo dataset."""

from __future__ import annotations

from pathlib import Path

from runtune.demo.shapes import CLASSES, DEFAULT_COUNTS
from runtune.dev.platform import DEMO_EMAIL, DEMO_PASSWORD
from runtune.firebase_rest import FirebaseAuthRest
from runtune.models.registry import TINY_MODELS
from runtune.models.tiny import tiny_dir
from tests.datasets.client import api, wait


def test_the_demo_account_has_the_demo_dataset_ready_to_train(platform) -> None:
    session = FirebaseAuthRest("local", emulator_host=platform.auth_host).sign_in(DEMO_EMAIL, DEMO_PASSWORD)
    with api(platform.gateway_url, session.id_token) as client:
        dataset = wait(client, platform.demo_dataset_id)
        assert dataset["status"] == "ready", dataset
        assert dataset["name"] == "demo shapes"
        assert dataset["task_kind"] == "classification"
        assert sorted(dataset["labels"]) == sorted(CLASSES)
        # The archive's own split folders are kept: the held-out images are the demo's test split.
        assert dataset["splits"] == DEFAULT_COUNTS
        samples = client.get(f"/v1/datasets/{platform.demo_dataset_id}/samples", params={"split": "test", "limit": 4})
        assert samples.status_code == 200, samples.text
        assert len(samples.json()["data"]) == 4


def test_the_tiny_models_are_built_into_the_local_folder(platform) -> None:
    for spec in TINY_MODELS:
        folder = tiny_dir(Path(platform.local_dir), spec.id)
        assert (folder / "config.json").is_file(), folder
        assert any(folder.glob("*.safetensors")), folder
