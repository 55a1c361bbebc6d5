"""Preference tuning on the local platform with the real trainer, run on the model of
`test_jobs_real_trainer.test_real_job_streams_to_success` (its first job, a supervised run on the demo
shapes): OpenAI's recipe, a `dpo` job on that `ft:` model created through the unmodified `openai`
SDK, on generated pairs of demo shape images whose preferred answer is the right label and whose
non-preferred one a wrong label. On the held-out pairs the implicit reward accuracy goes from chance
(0.5: the parent is the reference, so policy and reference are one model at the start) to at least
0.9, and a label-scoring evaluation on a held-out classification split of the same kind of images
scores the DPO model at least as well as its supervised parent (here far better)."""

from __future__ import annotations

import math
import random

from openai import OpenAI

from runtune.demo.shapes import CLASSES, PROMPT, examples
from tests.datasets.builders import data_url, preference_line
from tests.datasets.client import api, ingest
from tests.e2e.jobs_support import put_demo_dataset, sdk_job_succeeded, wait_for

BASE = "tiny-gemma-3-vision"
# 200 pairs, a fifth held out (the datasets API's seeded split): 160 to train on, 40 to score.
# 5 epochs of batches of 8 (100 steps, about 15 s on an idle 2-core machine): the supervised parent
# (one epoch on 48 images) is at chance in label scoring (0.25), so the preference is learnt nearly
# from scratch. Seen with the demo's streams 1, 2 and 3: 0.925, 0.975 and 1.0 on the held-out
# pairs; label scoring 1.0, 0.94 and 0.97 against the parent's 0.25.
PAIRS, HELD_OUT = 200, 0.2
METHOD = {
    "type": "dpo",
    "dpo": {
        "hyperparameters": {"n_epochs": 5, "batch_size": 8, "learning_rate_multiplier": 5},
        # The baseline (the parent, which the rewards are relative to) and the final evaluation
        # score the held-out pairs; no validation split, so no evaluation at intervals.
        "runtune": {"evaluation": {"baseline": True}, "checkpoint_every_steps": 1000, "export": {"merged": False}},
    },
}
# The classification images the evaluation scores: the demo's test split, which neither job trained on.
EVALUATED = 32


def shape_pairs(count: int, seed: int = 1) -> bytes:
    """OpenAI's preference JSONL of demo shape images (a stream of the demo's generator the parent
    never saw): preferred the image's label, non-preferred another label (seeded)."""
    rng = random.Random(seed)
    lines = []
    for item in examples("train", count, seed):
        wrong = rng.choice([label for label in CLASSES if label != item.label])
        lines.append(preference_line(PROMPT, item.label, wrong, url=data_url(item.images[0], "image/png")))
    return ("\n".join(lines) + "\n").encode()


def check_prefers(platform, sdk: OpenAI, uid: str, parent: str) -> None:
    """A dpo job on `parent` (a supervised model of `uid`'s on the demo shapes) learns the preferences."""
    with api(platform.gateway_url, sdk.api_key) as client:
        split = {"validation": 0.0, "test": HELD_OUT, "seed": 5}
        dataset = ingest(client, "shape-pairs.jsonl", shape_pairs(PAIRS), split=split)
    assert dataset["status"] == "ready", dataset.get("error")
    assert dataset["task_kind"] == "preference" and dataset["modality"] == "vision"
    held_out = dataset["splits"]["test"]
    assert dataset["splits"]["train"] + held_out == PAIRS and held_out == PAIRS * HELD_OUT

    job = sdk.fine_tuning.jobs.create(model=parent, training_file=dataset["id"], method=METHOD)  # type: ignore[arg-type]
    assert job.method is not None and job.method.type == "dpo" and job.model == parent
    done = sdk_job_succeeded(sdk, job.id)
    assert done.fine_tuned_model == f"ft:{BASE}:{job.id}"

    # What the trainer recorded: the held-out pairs before (the parent: every reward 0, a tie each,
    # so exactly chance) and after; every step's metrics event carries the rewards, and the first
    # step's loss is log 2 (the parent is the reference, not the root base).
    metrics = done.model_extra["runtune"]["metrics"]
    before, after = metrics["baseline"]["preference"], metrics["final"]["preference"]
    assert before["samples"] == after["samples"] == held_out
    assert before["reward_accuracy"] == 0.5, before
    assert after["reward_accuracy"] >= 0.9, after
    assert after["chosen_reward"] > after["rejected_reward"] and after["loss"] < before["loss"]
    points = sdk.get(f"/fine_tuning/jobs/{job.id}/metrics", cast_to=object)["data"]  # type: ignore[index]
    assert len(points) == done.model_extra["total_steps"]
    assert all(0 <= point["reward_accuracy"] <= 1 for point in points)
    # (Not exactly: the policy's first pass trains, with the adapter's dropout; the reference's does not.)
    assert math.isclose(points[0]["loss"], math.log(2), abs_tol=0.02), points[0]

    # Label scoring on held-out classification images: the DPO model at least as good as its parent.
    images = put_demo_dataset(platform, uid, {"test": EVALUATED})
    models = [parent, done.fine_tuned_model]
    with api(platform.gateway_url, sdk.api_key) as client:
        created = client.post("/v1/evaluations", json={"dataset_id": images, "split": "test", "models": models})
        assert created.status_code == 202, created.text
        evaluation_id = created.json()["id"]
        evaluation = wait_for(
            lambda: (
                (e := client.get(f"/v1/evaluations/{evaluation_id}").json())["status"] in ("succeeded", "failed") and e
            ),
            timeout_s=300,
        )
    assert evaluation["status"] == "succeeded", evaluation.get("error")
    sft, dpo = (evaluation["metrics"][model] for model in models)
    assert sft["samples"] == dpo["samples"] == EVALUATED
    assert dpo["accuracy"] >= sft["accuracy"], (sft["accuracy"], dpo["accuracy"])
