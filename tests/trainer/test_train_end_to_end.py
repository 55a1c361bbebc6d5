"""The trainer end to end against the real emulators: tiny Gemma 3 vision, Gemma 4 vision and Gemma 3
text models through the QLoRA path, with events, checkpoints, evaluation and export; learning on the
demo set; the exported adapter and merged model agreeing; resume after a kill; cancel and failures
ending the job with the right status and exit code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from jobs.trainer.recipe import run
from runtune.demo.shapes import write_demo_dataset
from runtune.schemas import TaskKind
from runtune.schemas.jobs import job_path
from tests.support import wait_for
from tests.trainer.conftest import demo_dataset, new_dataset, new_job, trainer_environment

pytestmark = pytest.mark.emulators
UID = "user-trainer-tests"


def _demo(store: Any, blobs: Any, modality: str, counts: dict[str, int]) -> str:
    return demo_dataset(store, blobs, UID, modality, counts)


def _run(store: Any, blobs: Any, job_id: str) -> tuple[int, dict[str, Any]]:
    env = trainer_environment(store, blobs)
    code = run(job_id, env)
    return code, store.get(job_path(job_id))


def _events(store: Any, job_id: str) -> list[dict[str, Any]]:
    return [doc for _, doc in store.query(f"{job_path(job_id)}/events")]


def _trainer(job_id: str, *, attempt: int = 0, **env: str) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "CLOUD_RUN_TASK_ATTEMPT": str(attempt), "CLOUD_RUN_EXECUTION": "test/exec", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.trainer", job_id],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.parametrize("model_id", ["tiny-gemma-3-vision", "tiny-gemma-4-vision", "tiny-gemma-3-text"])
def test_each_family_trains_through_qlora_with_events_checkpoints_evaluation_export(
    store: Any, blobs: Any, local_dir: Path, model_id: str
) -> None:
    modality = "text" if model_id.endswith("text") else "vision"
    dataset_id = _demo(store, blobs, "vision", {"train": 24, "test": 8})
    if modality == "text":
        store.update(f"datasets/{dataset_id}", {"modality": "text"})
    job_id = new_job(
        store,
        UID,
        model_id,
        dataset_id,
        epochs=1,
        batch_size=4,
        checkpoint_every_steps=3,
        evaluation={"method": "both"},
        method="qlora",  # named: `auto` would be bf16 LoRA for these tiny models
    )
    code, job = _run(store, blobs, job_id)
    assert code == 0, job.get("error")
    assert job["status"] == "succeeded" and job["phase"] == "done"
    assert job["steps_completed"] == job["total_steps"] == 6
    assert job["fine_tuned_model"] == f"ft:{model_id}:{job_id}" and job["trained_tokens"] > 0
    events = _events(store, job_id)
    messages = [e["message"] for e in events if e["type"] == "message"]
    for phase in ("Loading", "Preparing data", "Training 6 steps", "Evaluating on 8", "Exporting"):
        assert any(m.startswith(phase) for m in messages), (phase, messages)
    metrics_events = [e for e in events if e["type"] == "metrics"]
    assert [e["data"]["step"] for e in metrics_events] == list(range(1, 7))
    assert {
        "loss",
        "lr",
        "grad_norm",
        "tokens_per_s",
        "samples_per_s",
        "epoch",
        "total_steps",
        "eta_s",
        "peak_memory_gib",
    } <= set(metrics_events[0]["data"])
    assert metrics_events[-1]["data"]["samples_seen"] == 24
    checkpoints = store.query(f"{job_path(job_id)}/checkpoints")
    assert [doc["step_number"] for _, doc in checkpoints] == [3]
    folder = f"users/{UID}/jobs/{job_id}/"
    names = ("optimizer.safetensors", "optimizer.json", "trainable.safetensors", "state.json", "chat_template.jinja")
    for name in names:
        assert blobs.info(f"{folder}checkpoints/step-000003/{name}") is not None, name
    # One epoch: the final step is the one model checkpoint, an adapter folder as the export's.
    models = [doc for _, doc in store.query(f"{job_path(job_id)}/model_checkpoints")]
    assert [doc["fine_tuned_model_checkpoint"] for doc in models] == [f"ft:{model_id}:{job_id}:ckpt-step-6"]
    assert models[0]["adapter"] == f"{folder}export/checkpoints/step-000006/"
    assert {"adapter_model.safetensors", "adapter_config.json", "training_config.json"} <= {
        info.path.rsplit("/", 1)[-1] for info in blobs.list(models[0]["adapter"])
    }
    assert set(models[0]["metrics"]) == {"step", "train_loss", "train_mean_token_accuracy"}  # no validation split
    final = job["runtune"]["metrics"]["final"]
    assert final["label_scoring"]["samples"] == 8 and 0.0 <= final["label_scoring"]["accuracy"] <= 1.0
    assert final["generation"]["samples"] == 8 and 0.0 <= final["generation"]["unmapped_rate"] <= 1.0
    assert job["runtune"]["export"] == {"adapter": f"{folder}export/adapter/", "merged": f"{folder}export/merged/"}
    adapter = {info.path.rsplit("/", 1)[-1] for info in blobs.list(f"{folder}export/adapter/")}
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "chat_template.jinja",
        "chat_format.json",
        "training_config.json",
        "README.md",
    } <= adapter
    merged = {info.path.rsplit("/", 1)[-1] for info in blobs.list(f"{folder}export/merged/")}
    assert {"model.safetensors", "config.json", "chat_template.jinja", "README.md"} <= merged
    assert blobs.info(f"{folder}history.json") is not None


def test_a_generation_task_is_evaluated_by_loss_and_text_metrics(store: Any, blobs: Any, local_dir: Path) -> None:
    dataset_id = new_dataset(store, UID, modality="text", task=TaskKind.generation, labels=[])
    write_demo_dataset(blobs, UID, dataset_id, counts={"train": 16, "validation": 6})
    job_id = new_job(
        store, UID, "tiny-gemma-3-text", dataset_id, epochs=1, batch_size=4, export={"merged": False}, method="lora"
    )
    code, job = _run(store, blobs, job_id)
    assert code == 0, job.get("error")
    final = job["runtune"]["metrics"]["final"]
    assert final["loss"] > 0 and final["perplexity"] > 1
    assert final["samples"] == 6 and {"exact_match", "token_f1", "rouge_l"} <= set(final)
    assert set(job["runtune"]["export"]) == {"adapter"}


@pytest.fixture(scope="module")
def demo_job(store: Any, blobs: Any, local_dir: Path) -> dict[str, Any]:
    """The demo set as a user trains on it: the default hyperparameters the jobs API resolves for a
    small set (3 epochs, batch 4, learning-rate multiplier 1), with a baseline evaluation."""
    dataset_id = _demo(store, blobs, "vision", {"train": 240, "test": 80})
    job_id = new_job(
        store,
        UID,
        "tiny-gemma-3-vision",
        dataset_id,
        epochs=3,
        batch_size=4,
        checkpoint_every_steps=1000,
        evaluation={"baseline": True},
    )
    started = time.monotonic()
    code, job = _run(store, blobs, job_id)
    assert code == 0, job.get("error")
    job["seconds"] = time.monotonic() - started
    return job


def test_learning_is_real_on_the_demo_set(demo_job: dict[str, Any]) -> None:
    metrics = demo_job["runtune"]["metrics"]
    baseline, final = metrics["baseline"]["label_scoring"]["accuracy"], metrics["final"]["label_scoring"]["accuracy"]
    print(f"demo set: baseline {baseline:.3f} -> {final:.3f} in {demo_job['seconds']:.0f}s")
    assert baseline <= 0.4
    assert final >= 0.9


def test_exported_adapter_and_merged_model_reload_and_answer_alike(
    demo_job: dict[str, Any], blobs: Any, local_dir: Path, tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import Gemma3ForConditionalGeneration

    from runtune.demo.shapes import examples
    from runtune.models import registry
    from runtune.models.loading import load_processor, resolve_weights
    from runtune.training.chat import ChatFormat
    from runtune.training.evaluation import generate

    for kind in ("adapter", "merged"):
        prefix = demo_job["runtune"]["export"][kind]
        for info in blobs.list(prefix):
            blobs.download_file(info.path, tmp_path / kind / info.path.removeprefix(prefix))
    spec = registry.get("tiny-gemma-3-vision")
    assert json.loads((tmp_path / "adapter" / "training_config.json").read_text())["model"] == spec.id
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["dtype"] == "bfloat16"
    base = Gemma3ForConditionalGeneration.from_pretrained(resolve_weights(spec, local_dir))
    tuned = PeftModel.from_pretrained(base, tmp_path / "adapter")
    merged = Gemma3ForConditionalGeneration.from_pretrained(tmp_path / "merged", dtype=torch.float32)
    # The exported processor (with the chat template it was trained with) renders the prompts.
    fmt = ChatFormat(spec, load_processor(spec, str(tmp_path / "merged")))
    held_out = examples("test", 24)
    from_adapter, from_merged = generate(tuned, fmt, held_out), generate(merged, fmt, held_out)
    assert from_adapter == from_merged
    assert sum(answer == e.label for answer, e in zip(from_adapter, held_out, strict=True)) >= 0.8 * len(held_out)


# Three trainer runs (reference, killed, resumed): about 300 s on a loaded 2-core machine.
@pytest.mark.timeout(600)
def test_a_killed_run_resumes_from_its_checkpoint_with_the_same_steps_and_data(
    store: Any, blobs: Any, local_dir: Path
) -> None:
    # With a validation split: validation during training must not move the resumed run off its course.
    dataset_id = _demo(store, blobs, "vision", {"train": 48, "validation": 8, "test": 8})
    options = {
        "epochs": 2,
        "batch_size": 4,
        "checkpoint_every_steps": 4,
        "evaluation": {"max_samples": 4, "baseline": True},
        "export": {"merged": False},
    }
    reference_id = new_job(store, UID, "tiny-gemma-3-vision", dataset_id, **options)
    assert _run(store, blobs, reference_id)[0] == 0
    job_id = new_job(store, UID, "tiny-gemma-3-vision", dataset_id, **options)
    first = _trainer(job_id)
    try:
        wait_for(
            lambda: store.query(f"{job_path(job_id)}/checkpoints") or first.poll() is not None,
            timeout_s=240,
            every_s=0.2,
        )
    finally:
        first.send_signal(signal.SIGKILL)  # no chance to clean up, as in a maintenance event
        first.communicate()
    assert store.query(f"{job_path(job_id)}/checkpoints"), "the first attempt ended before its first checkpoint"
    steps_before_kill = store.get(job_path(job_id))["steps_completed"]
    assert store.get(job_path(job_id))["status"] == "running"
    retried = _trainer(job_id, attempt=1)
    output, _ = retried.communicate(timeout=400)
    assert retried.returncode == 0, output[-2000:]
    job, reference = store.get(job_path(job_id)), store.get(job_path(reference_id))
    assert job["status"] == "succeeded"
    assert job["steps_completed"] == reference["steps_completed"] == 24
    assert job["runtune"]["samples_seen"] == reference["runtune"]["samples_seen"] == 2 * 48
    assert any("Resumed from the checkpoint at step" in e["message"] for e in _events(store, job_id))
    # The baseline measured before the kill is reported, not measured again on trained weights.
    assert job["runtune"]["metrics"]["baseline"] == reference["runtune"]["metrics"]["baseline"]
    assert job["runtune"]["metrics"]["final"] == reference["runtune"]["metrics"]["final"]

    # Same batches in the same order, same RNG: the resumed loss curve is the uninterrupted one, with
    # one point per step (steps recomputed after the checkpoint are not reported twice).
    def curve(jid: str) -> list[tuple[int, float, float]]:
        return [
            (e["data"]["step"], e["data"]["loss"], e["data"].get("valid_loss", -1.0))
            for e in _events(store, jid)
            if e["type"] == "metrics"
        ]

    resumed, uninterrupted = curve(job_id), curve(reference_id)
    assert [step for step, _, _ in resumed] == list(range(1, 25)) and steps_before_kill >= 4
    assert [step for step, _, valid in uninterrupted if valid >= 0] == [3, 6, 9, 12, 15, 18, 21, 24]
    for (step, loss, valid), (_, expected, expected_valid) in zip(resumed, uninterrupted, strict=True):
        assert loss == pytest.approx(expected, rel=1e-4, abs=1e-5), step
        assert valid == pytest.approx(expected_valid, rel=1e-4, abs=1e-5), step
    # The model checkpoints of both epochs, whichever attempt took them.
    steps = [doc["step_number"] for _, doc in store.query(f"{job_path(job_id)}/model_checkpoints")]
    assert steps == [12, 24]


def _stop_when(store: Any, job_id: str, trainer: subprocess.Popen[bytes], when: str) -> None:
    """Wait until the trainer is loading the model (no safe point there: the stop watchdog ends it) or
    has trained a step (the training loop's safe point does)."""
    if when == "loading":
        wait_for(
            lambda: (store.get(job_path(job_id)) or {}).get("phase") == "loading_model" or trainer.poll(),
            timeout_s=240,
            every_s=0.2,
        )
    else:
        wait_for(
            lambda: (store.get(job_path(job_id)) or {}).get("steps_completed", 0) > 0 or trainer.poll(),
            timeout_s=240,
            every_s=0.2,
        )
    assert trainer.poll() is None, "the trainer ended before it could be stopped"


# The trainer is stopped wherever it happens to be when the signal lands (which phase, which call):
# what is asserted holds for every place, and 60 s is only where a hung trainer is given up on.
@pytest.mark.parametrize("when", ["loading", "training"])
def test_a_cancel_ends_the_job_cancelled(store: Any, blobs: Any, local_dir: Path, when: str) -> None:
    dataset_id = _demo(store, blobs, "vision", {"train": 64, "test": 4})
    store.update(f"datasets/{dataset_id}", {"modality": "text"})
    job_id = new_job(store, UID, "tiny-gemma-3-text", dataset_id, epochs=20, batch_size=2, export={"merged": False})
    trainer = _trainer(job_id)
    try:
        _stop_when(store, job_id, trainer, when)
        # What the jobs API does: set the flag, then stop the execution (SIGTERM).
        store.update(job_path(job_id), {"cancel_requested": True})
        trainer.send_signal(signal.SIGTERM)
        output, _ = trainer.communicate(timeout=60)
    finally:
        trainer.kill()
    job = store.get(job_path(job_id))
    assert trainer.returncode == 0, output[-2000:]
    assert job["status"] == "cancelled", job
    if when == "training":
        assert 0 < job["steps_completed"] < job["total_steps"]


@pytest.mark.parametrize("when", ["loading", "training"])
def test_a_stop_without_cancel_leaves_the_job_to_the_retry(store: Any, blobs: Any, local_dir: Path, when: str) -> None:
    dataset_id = _demo(store, blobs, "vision", {"train": 64, "test": 4})
    store.update(f"datasets/{dataset_id}", {"modality": "text"})
    job_id = new_job(store, UID, "tiny-gemma-3-text", dataset_id, epochs=20, batch_size=2)
    trainer = _trainer(job_id)
    try:
        _stop_when(store, job_id, trainer, when)
        trainer.send_signal(signal.SIGTERM)  # a task timeout or maintenance
        output, _ = trainer.communicate(timeout=60)
    finally:
        trainer.kill()
    job = store.get(job_path(job_id))
    assert trainer.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert job["status"] == "running", job
    stopped = [e for e in _events(store, job_id) if e["message"].startswith("The trainer was stopped (SIGTERM)")]
    assert len(stopped) == 1 and stopped[0]["level"] == "warn"


def test_a_missing_dataset_fails_the_job_with_a_code_and_a_non_zero_exit(store: Any, blobs: Any) -> None:
    dataset_id = _demo(store, blobs, "vision", {"train": 8})
    job_id = new_job(store, UID, "tiny-gemma-3-vision", dataset_id)
    store.delete(f"datasets/{dataset_id}")
    trainer = _trainer(job_id)
    output, _ = trainer.communicate(timeout=120)
    job = store.get(job_path(job_id))
    assert trainer.returncode == 1, output[-2000:]
    assert job["status"] == "failed" and job["error"]["code"] == "invalid_dataset"
    assert dataset_id in job["error"]["message"] and "upload it again" in job["error"]["message"]
    assert any(e["level"] == "error" for e in _events(store, job_id))


def test_broken_model_weights_fail_the_job_with_what_to_do(store: Any, blobs: Any, tmp_path: Path) -> None:
    from runtune.models.tiny import BUILD_MARKER, BUILD_VERSION, tiny_dir

    broken = tiny_dir(tmp_path, "tiny-gemma-3-text")
    broken.mkdir(parents=True)
    (broken / BUILD_MARKER).write_text(json.dumps({"version": BUILD_VERSION}))
    (broken / "config.json").write_text("{not json")
    dataset_id = _demo(store, blobs, "vision", {"train": 8})
    store.update(f"datasets/{dataset_id}", {"modality": "text"})
    job_id = new_job(store, UID, "tiny-gemma-3-text", dataset_id)
    trainer = _trainer(job_id, RUNTUNE_LOCAL_DIR=str(tmp_path))
    output, _ = trainer.communicate(timeout=120)
    job = store.get(job_path(job_id))
    assert trainer.returncode == 1, output[-2000:]
    assert job["status"] == "failed" and job["error"]["code"] == "model_unavailable"
    assert "built again" in job["error"]["message"]


def test_the_command_line_refuses_what_it_cannot_run(store: Any) -> None:
    usage = subprocess.run([sys.executable, "-m", "jobs.trainer"], capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and "usage" in usage.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "jobs.trainer", "ftjob-does-not-exist"], capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 3


def test_a_finished_job_is_left_alone(store: Any, blobs: Any) -> None:
    dataset_id = _demo(store, blobs, "vision", {"train": 8})
    job_id = new_job(store, UID, "tiny-gemma-3-vision", dataset_id)
    store.update(job_path(job_id), {"status": "cancelled"})
    assert _run(store, blobs, job_id)[0] == 0
    assert store.get(job_path(job_id))["status"] == "cancelled"


class _FakeWriter:
    def __init__(self, folder: str) -> None:
        self.folder, self.scalars = Path(folder), []

    def add_scalar(self, name: str, value: float, step: int) -> None:
        self.scalars.append((name, value, step))

    def flush(self) -> None:
        (self.folder / "events.out.tfevents.test").write_text(json.dumps(self.scalars))

    def close(self) -> None:
        self.flush()


class _FakeWandb:
    def __init__(self) -> None:
        self.logged: list[tuple[dict[str, float], int]] = []
        self.init_args: dict[str, Any] = {}
        self.key: str | None = None
        self.summary: dict[str, float] = {}
        self.finished = False

    def login(self, key: str, relogin: bool) -> None:
        self.key = key

    def init(self, **kwargs: Any) -> _FakeWandb:
        self.init_args = kwargs
        return self

    def log(self, data: dict[str, float], step: int) -> None:
        self.logged.append((data, step))

    def finish(self) -> None:
        self.finished = True


def test_tensorboard_and_wandb_integrations(
    store: Any, blobs: Any, local_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtune.adapters.file_secrets import LocalFileSecretStore
    from runtune.training import trackers

    wandb = _FakeWandb()
    monkeypatch.setattr(trackers, "_summary_writer", _FakeWriter)
    monkeypatch.setattr(trackers, "_wandb", lambda: wandb)
    dataset_id = _demo(store, blobs, "vision", {"train": 8, "test": 4})
    store.update(f"datasets/{dataset_id}", {"modality": "text"})
    job_id = new_job(store, UID, "tiny-gemma-3-text", dataset_id, batch_size=4, export={"merged": False})
    integrations = [{"type": "tensorboard"}, {"type": "wandb", "wandb": {"project": "shapes", "tags": ["demo"]}}]
    store.update(job_path(job_id), {"integrations": integrations})
    LocalFileSecretStore(local_dir / "secrets").put(UID, "wandb", "wandb-key-for-tests")
    try:
        code, job = _run(store, blobs, job_id)
    finally:
        LocalFileSecretStore(local_dir / "secrets").delete(UID, "wandb")
    assert code == 0, job.get("error")
    assert wandb.key == "wandb-key-for-tests" and wandb.finished
    assert wandb.init_args["project"] == "shapes" and wandb.init_args["id"] == job_id
    assert [step for _, step in wandb.logged] == [1, 2] and "train/loss" in wandb.logged[0][0]
    assert "final/label_scoring/accuracy" in wandb.summary
    uploaded = blobs.download_bytes(f"users/{UID}/jobs/{job_id}/tensorboard/events.out.tfevents.test")
    assert ["train/loss", json.loads(uploaded)[0][1], 1] in json.loads(uploaded)


def test_an_integration_that_cannot_start_is_a_warning_not_a_failure(store: Any, blobs: Any, local_dir: Path) -> None:
    dataset_id = _demo(store, blobs, "vision", {"train": 4, "test": 2})
    store.update(f"datasets/{dataset_id}", {"modality": "text"})
    job_id = new_job(store, UID, "tiny-gemma-3-text", dataset_id, batch_size=4, export={"merged": False})
    store.update(job_path(job_id), {"integrations": [{"type": "wandb", "wandb": {"project": "p"}}, {"type": "comet"}]})
    code, job = _run(store, blobs, job_id)
    assert code == 0 and job["status"] == "succeeded"
    warnings = [e["message"] for e in _events(store, job_id) if e["level"] == "warn"]
    assert any("'wandb' skipped" in w and "'wandb' secret" in w for w in warnings), warnings
    assert any("'comet' is not supported" in w for w in warnings), warnings


def test_full_fine_tuning_of_a_small_model_exports_the_tuned_model(store: Any, blobs: Any, local_dir: Path) -> None:
    dataset_id = _demo(store, blobs, "vision", {"train": 8, "test": 4})
    store.update(f"datasets/{dataset_id}", {"modality": "text"})
    job_id = new_job(store, UID, "tiny-gemma-3-text", dataset_id, batch_size=4, method="full", checkpoint_every_steps=1)
    code, job = _run(store, blobs, job_id)
    assert code == 0, job.get("error")
    folder = f"users/{UID}/jobs/{job_id}/"
    assert job["runtune"]["export"] == {"merged": f"{folder}export/merged/"}
    assert blobs.info(f"{folder}export/merged/model.safetensors") is not None
    assert blobs.info(f"{folder}checkpoints/step-000001/trainable.safetensors") is not None


def test_the_encoded_dataset_is_released_before_the_merged_export(
    store: Any, blobs: Any, local_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Cloud Run the disk is memory: the merge's staging must not share the RAM with the dataset."""
    import weakref

    from runtune.training import data, export

    encoded: list[weakref.ref[Any]] = []
    alive_at_export: list[bool] = []
    encode_all, export_merged = data.encode_all, export.export_merged

    def tracked_encode_all(*args: Any, **kwargs: Any) -> Any:
        split = encode_all(*args, **kwargs)
        encoded.append(weakref.ref(split))
        return split

    def observed_export_merged(*args: Any, **kwargs: Any) -> Any:
        alive_at_export.append(encoded[0]() is not None)
        return export_merged(*args, **kwargs)

    monkeypatch.setattr(data, "encode_all", tracked_encode_all)
    monkeypatch.setattr(export, "export_merged", observed_export_merged)
    dataset_id = _demo(store, blobs, "vision", {"train": 8, "test": 2})
    store.update(f"datasets/{dataset_id}", {"modality": "text"})
    job_id = new_job(store, UID, "tiny-gemma-3-text", dataset_id, epochs=1, batch_size=4)
    code, job = _run(store, blobs, job_id)
    assert code == 0 and job["status"] == "succeeded", job
    assert alive_at_export == [False]


def test_a_checkpoint_is_taken_before_the_task_deadline(
    store: Any, blobs: Any, local_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deadline already within the margin: the first step is checkpointed although the periodic
    # checkpoints (every 1000 steps) would never come; only one deadline checkpoint is taken.
    monkeypatch.setenv("RUNTUNE_TASK_DEADLINE_S", "30")
    dataset_id = _demo(store, blobs, "vision", {"train": 16, "test": 2})
    store.update(f"datasets/{dataset_id}", {"modality": "text"})
    job_id = new_job(
        store,
        UID,
        "tiny-gemma-3-text",
        dataset_id,
        epochs=1,
        batch_size=2,
        export={"merged": False},
        checkpoint_every_steps=1000,
    )
    code, job = _run(store, blobs, job_id)
    assert code == 0 and job["status"] == "succeeded", job
    steps = [doc["step_number"] for _, doc in store.query(f"{job_path(job_id)}/checkpoints")]
    assert steps == [1]
