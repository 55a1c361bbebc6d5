"""DPO through the real trainer: a preference JSONL of jittered solid-colour squares (preferred: the
square's colour, non-preferred: another colour) ingested as the service does, a `dpo` job planned as
the jobs API plans it, and the tiny Gemma 3 vision model tuned with the adapter-off reference. On the
held-out pairs the implicit reward accuracy goes from chance (0.5: policy and reference are one model
before training) to at least 0.9; every step's metrics event carries the loss and the rewards. A
paused and resumed dpo job continues the uninterrupted run's loss curve, as a supervised one does."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from jobs.trainer.recipe import run
from runtune.blob_layout import export_folder
from runtune.datasets.canonical import Example
from runtune.datasets.pipeline import IngestOptions
from runtune.estimate import GPU_NAMES
from runtune.jobs import plan
from runtune.models.loading import load_processor, resolve_weights
from runtune.models.registry import get
from runtune.schemas import Dataset, Job, JobStatus, TaskKind
from runtune.schemas.datasets import SplitOptions
from runtune.schemas.jobs import CreateJobRequest, job_path
from runtune.training import data
from runtune.training.chat import IGNORE_INDEX, ChatFormat
from tests.datasets.builders import chat_line, colour_preference_jsonl, jpeg, preference_line
from tests.trainer.conftest import ingested, trainer_environment

pytestmark = pytest.mark.emulators
UID = "user-dpo"
MODEL = "tiny-gemma-3-vision"


def _ingest(store: Any, blobs: Any, tmp_path: Path, per_colour: int = 16) -> Dataset:
    source = tmp_path / "colours.jsonl"
    source.write_bytes(colour_preference_jsonl(per_colour=per_colour))
    split = SplitOptions(validation=0.0, test=0.25, seed=3)
    return ingested(store, blobs, UID, source, name="colour pairs", options=IngestOptions(split=split))


def _planned(store: Any, request: CreateJobRequest, dataset: Dataset, parent: plan.Parent | None = None) -> Job:
    """The job as `POST /v1/fine_tuning/jobs` stores and plans it (services/training/jobs_service.py)."""
    asked = request.new_job(UID, lineage=plan.lineage_of(request.model, parent), status=JobStatus.queued)
    job = plan.with_plan(asked, plan.plan_job(asked, dataset, offered=GPU_NAMES, parent=parent))
    store.set(job_path(job.id), job.to_document())
    return job


def _dpo_job(store: Any, dataset: Dataset, *, batch_size: int = 4, **runtune: Any) -> Job:
    """A `dpo` job of MODEL on `dataset`, planned and stored (`runtune`: options beyond these)."""
    hyperparameters = {"beta": "auto", "n_epochs": 2, "batch_size": batch_size, "learning_rate_multiplier": 5}
    options = {"method": "lora", "checkpoint_every_steps": 1000, "export": {"merged": False}} | runtune
    request = CreateJobRequest(
        model=MODEL,
        training_file=dataset.id,
        method={"type": "dpo", "dpo": {"hyperparameters": hyperparameters, "runtune": options}},
    )
    return _planned(store, request, dataset)


# 18 steps of 4 pairs (8 chats and a reference pass each) on the tiny model: well under a minute.
@pytest.mark.timeout(900)
def test_dpo_raises_held_out_reward_accuracy_from_chance_to_090(
    store: Any, blobs: Any, local_dir: Path, tmp_path: Path
) -> None:
    dataset = _ingest(store, blobs, tmp_path)
    assert dataset.task_kind is TaskKind.preference and dataset.modality == "vision"
    assert dataset.splits == {"train": 36, "test": 12} and dataset.stats and dataset.stats["pairs"] == 48
    job = _dpo_job(store, dataset, evaluation={"baseline": True})
    assert job.plan is not None and (job.plan.objective, job.plan.beta) == ("dpo", 0.1)

    assert run(job.id, trainer_environment(store, blobs)) == 0
    done = store.get(job_path(job.id))
    assert done["status"] == "succeeded", done.get("error")
    assert done["fine_tuned_model"] == f"ft:{MODEL}:{job.id}"
    assert done["method"]["dpo"]["hyperparameters"]["beta"] == 0.1
    metrics = done["runtune"]["metrics"]
    before, after = metrics["baseline"]["preference"], metrics["final"]["preference"]
    assert before["samples"] == after["samples"] == 12
    assert before["reward_accuracy"] == 0.5 and before["reward_margin"] == 0.0
    assert after["reward_accuracy"] >= 0.9, after
    assert after["reward_margin"] > 0 and after["chosen_reward"] > after["rejected_reward"]
    assert after["loss"] < before["loss"]
    card = blobs.download_bytes(export_folder(UID, job.id, "adapter") + "README.md").decode()
    assert "objective: DPO on preference pairs, beta 0.1" in card

    events = [doc for _, doc in store.query(f"{job_path(job.id)}/events")]
    points = [event["data"] for event in events if event.get("type") == "metrics"]
    assert len(points) == done["total_steps"] == 18
    for point in points:
        assert {"loss", "reward_accuracy", "reward_margin", "chosen_reward", "rejected_reward"} <= set(point)
        assert 0 <= point["reward_accuracy"] <= 1 and "token_accuracy" not in point
    assert points[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # log 2: the policy starts as the reference
    assert points[-1]["loss"] < points[0]["loss"]


def _curve(store: Any, job_id: str) -> list[tuple[int, float, float]]:
    events = [doc for _, doc in store.query(f"{job_path(job_id)}/events") if doc.get("type") == "metrics"]
    return [(e["data"]["step"], e["data"]["loss"], e["data"]["reward_margin"]) for e in events]


@pytest.mark.timeout(900)
def test_a_paused_dpo_job_resumes_on_the_uninterrupted_loss_curve(
    store: Any, blobs: Any, local_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTUNE_STOP_POLL_S", "0.05")  # the pause lands within a step of being asked
    dataset = _ingest(store, blobs, tmp_path, per_colour=8)
    options = {"evaluation": {"max_samples": 2}}
    reference, job = (
        _dpo_job(store, dataset, batch_size=3, **options),
        _dpo_job(store, dataset, batch_size=3, **options),
    )
    assert run(reference.id, trainer_environment(store, blobs)) == 0
    total = store.get(job_path(reference.id))["total_steps"]

    def pause_once_training() -> None:  # what POST .../pause does to a running job
        while (store.get(job_path(job.id)) or {}).get("phase") != "training":
            threading.Event().wait(0.05)
        store.update(job_path(job.id), {"pause_requested": True})

    pauser = threading.Thread(target=pause_once_training, daemon=True)
    pauser.start()
    assert run(job.id, trainer_environment(store, blobs)) == 0
    pauser.join(timeout=60)
    paused = store.get(job_path(job.id))
    assert paused["status"] == "paused", paused.get("error")
    assert 0 < paused["steps_completed"] < total
    # What POST .../resume leads to: the job queued again, its trainer started with the same plan.
    store.update(job_path(job.id), {"status": "queued"})
    assert run(job.id, trainer_environment(store, blobs)) == 0
    done = store.get(job_path(job.id))
    assert done["status"] == "succeeded", done.get("error")
    messages = [doc["message"] for _, doc in store.query(f"{job_path(job.id)}/events")]
    assert f"Resumed from the checkpoint at step {paused['steps_completed']}" in messages
    resumed, uninterrupted = _curve(store, job.id), _curve(store, reference.id)
    assert [step for step, _, _ in resumed] == list(range(1, total + 1))
    for (step, loss, margin), (_, expected, expected_margin) in zip(resumed, uninterrupted, strict=True):
        assert loss == pytest.approx(expected, rel=1e-4, abs=1e-5), step
        assert margin == pytest.approx(expected_margin, rel=1e-4, abs=1e-5), step
    assert done["runtune"]["metrics"]["final"] == store.get(job_path(reference.id))["runtune"]["metrics"]["final"]


def test_a_pair_encodes_both_chats_masked_on_their_answers_and_shares_the_images(local_dir: Path) -> None:

    spec = get(MODEL)
    fmt = ChatFormat(spec, load_processor(spec, resolve_weights(spec, local_dir)))
    prompt = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which colour?"}]}
    answer = {"role": "assistant", "content": [{"type": "text", "text": "red"}]}
    other = {"role": "assistant", "content": [{"type": "text", "text": "a long wrong answer"}]}
    example = Example(messages=[prompt, answer], images=[jpeg((200, 10, 10))], rejected=[other])
    (pair,) = data.encode_all(fmt, [example], 4096, pairs=True).examples
    labelled = [
        [t for t, label in zip(c.input_ids, c.labels, strict=True) if label != IGNORE_INDEX]
        for c in (pair.chosen, pair.rejected)
    ]
    assert fmt.tokenizer.decode(labelled[0]).startswith("red") and fmt.tokenizer.decode(labelled[1]).startswith(
        "a long wrong"
    )
    # The same prompt tokens before each answer, and the image tensors held once.
    first_answer = pair.chosen.labels.index(labelled[0][0])
    assert pair.chosen.input_ids[:first_answer] == pair.rejected.input_ids[:first_answer]
    images = [key for key in pair.chosen.extras if not key.endswith("token_type_ids")]
    assert images and all(pair.rejected.extras[key] is pair.chosen.extras[key] for key in images)
    assert len(pair) == len(pair.rejected) > len(pair.chosen)


def _text_set(store: Any, blobs: Any, tmp_path: Path, name: str, lines: list[str]) -> Dataset:
    source = tmp_path / name
    source.write_text("\n".join(lines) + "\n")
    options = IngestOptions(split=SplitOptions(validation=0.0, test=0.0))
    return ingested(store, blobs, UID, source, name=name, options=options)


@pytest.mark.timeout(900)
def test_a_dpo_job_on_a_tuned_model_takes_its_parent_as_the_reference(
    store: Any, blobs: Any, local_dir: Path, tmp_path: Path
) -> None:
    """OpenAI's recipe, supervised then DPO on the `ft:` model: the reference is the parent (its
    adapter loaded a second time, frozen), so the first step's loss is log 2 although the parent's
    adapter is far from zero; the export holds the trained adapter alone."""
    text = "tiny-gemma-3-text"
    options = {"method": "lora", "checkpoint_every_steps": 1000, "export": {"merged": False}}
    chats = _text_set(store, blobs, tmp_path, "sft.jsonl", [chat_line(f"Greet guest {i}", "Hello!") for i in range(8)])
    sft = CreateJobRequest(
        model=text,
        training_file=chats.id,
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 4}, "runtune": options},
        },
    )
    parent_job = _planned(store, sft, chats)
    assert run(parent_job.id, trainer_environment(store, blobs)) == 0
    parent_done = Job.model_validate(store.get(job_path(parent_job.id)))
    assert parent_done.status is JobStatus.succeeded and parent_done.fine_tuned_model
    parent = plan.Parent.of(parent_done, export_folder(UID, parent_job.id, "adapter"))

    pairs = [preference_line(f"Greet guest {i}", "Hello!", f"Go away, guest {i}.") for i in range(8)]
    preferences = _text_set(store, blobs, tmp_path, "pairs.jsonl", pairs)
    dpo = CreateJobRequest(
        model=parent_done.fine_tuned_model,
        training_file=preferences.id,
        method={"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}, "runtune": options}},
    )
    child = _planned(store, dpo, preferences, parent)
    assert child.plan is not None and child.plan.parent_adapter == parent.adapter
    assert run(child.id, trainer_environment(store, blobs)) == 0
    done = store.get(job_path(child.id))
    assert done["status"] == "succeeded", done.get("error")
    losses = [e["data"]["loss"] for _, e in store.query(f"{job_path(child.id)}/events") if e.get("type") == "metrics"]
    assert len(losses) == 2 and losses[0] == pytest.approx(0.6931, abs=1e-3)
    exported = [info.path for info in blobs.list(export_folder(UID, child.id, "adapter"))]
    assert any(path.endswith("/adapter/adapter_model.safetensors") for path in exported)
    assert not any("/reference/" in path for path in exported), exported
