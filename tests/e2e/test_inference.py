"""Inference through the gateway on the local platform (local engine server, tiny Gemma 3 vision):
a demo model tuned once by the real trainer, then chat (base and tuned, plain and streamed through
the `openai` SDK), a vibe check, an evaluation against the base, exports (the merged model reloaded
with transformers answers as base+adapter does), and the ownership rules."""

from __future__ import annotations

import base64
import io
import random
import tarfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import openai
import pytest

from runtune.demo.shapes import CLASSES, PROMPT, draw
from tests.e2e.jobs_support import put_demo_dataset, wait_for
from tests.support import sign_up

pytestmark = pytest.mark.platform

BASE = "tiny-gemma-3-vision"
DEMO = {"train": 240, "test": 40}
METHOD = {
    "type": "supervised",
    "supervised": {
        "hyperparameters": {"n_epochs": 3, "batch_size": 8, "learning_rate_multiplier": 5.0},
        "runtune": {"gradient_checkpointing": False, "warmup_ratio": 0.1, "checkpoint_every_steps": 1000},
    },
}


def _client(platform: Any) -> httpx.Client:
    user = sign_up(platform.auth_host)
    client = httpx.Client(
        base_url=platform.gateway_url, headers={"authorization": f"Bearer {user['id_token']}"}, timeout=120
    )
    client.uid = user["uid"]  # type: ignore[attr-defined]
    client.token = user["id_token"]  # type: ignore[attr-defined]
    return client


@pytest.fixture(scope="module")
def tuned(platform: Any) -> dict[str, Any]:
    """A user, the demo set, and a model the real trainer tuned on it."""
    client = _client(platform)
    dataset_id = put_demo_dataset(platform, client.uid, DEMO)
    job = client.post("/v1/fine_tuning/jobs", json={"model": BASE, "training_file": dataset_id, "method": METHOD})
    assert job.status_code == 200, job.text
    job_id = job.json()["id"]
    done = wait_for(
        lambda: (j := client.get(f"/v1/fine_tuning/jobs/{job_id}").json())["status"] in ("succeeded", "failed") and j,
        timeout_s=900,
        every_s=2,
    )
    assert done["status"] == "succeeded", done.get("error")
    return {"client": client, "dataset_id": dataset_id, "model": done["fine_tuned_model"], "job_id": job_id}


def _image(label: str, seed: int) -> str:
    return "data:image/png;base64," + base64.b64encode(draw(label, random.Random(seed))).decode()


def _messages(label: str, seed: int) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": _image(label, seed)}},
                {"type": "text", "text": PROMPT},
            ],
        }
    ]


def _chat(client: httpx.Client, model: str, messages: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    return client.post(
        "/v1/chat/completions", json={"model": model, "messages": messages, "temperature": 0, "max_tokens": 8, **extra}
    )


def test_chat_with_the_base_and_the_tuned_model(tuned: dict[str, Any]) -> None:
    client = tuned["client"]
    base = _chat(client, BASE, _messages("circle", 1))
    assert base.status_code == 200, base.text
    assert base.json()["model"] == BASE and base.json()["object"] == "chat.completion"
    correct = 0
    for seed, label in enumerate(CLASSES * 2):
        answer = _chat(client, tuned["model"], _messages(label, 100 + seed))
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == tuned["model"]
        correct += answer.json()["choices"][0]["message"]["content"].strip() == label
    assert correct >= 6, f"the tuned model named {correct}/8 shapes"


def test_streamed_answers_parse_with_the_openai_sdk(platform: Any, tuned: dict[str, Any]) -> None:
    client = tuned["client"]
    sdk = openai.OpenAI(base_url=f"{platform.gateway_url}/v1", api_key=client.token)
    messages = _messages("triangle", 7)
    chunks = list(
        sdk.chat.completions.create(model=tuned["model"], messages=messages, stream=True, temperature=0, max_tokens=8)
    )
    assert len(chunks) >= 2 and all(chunk.model == tuned["model"] for chunk in chunks)
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    plain = _chat(client, tuned["model"], messages).json()["choices"][0]["message"]["content"]
    assert streamed == plain


def test_vibe_check_keeps_both_answers_per_prompt(platform: Any, tuned: dict[str, Any]) -> None:
    client = tuned["client"]
    prompts = [{"prompt": PROMPT, "image": _image("square", 3)}, {"prompt": PROMPT, "image": _image("cross", 4)}]
    created = client.post("/v1/vibe_checks", json={"model": tuned["model"], "prompts": prompts, "max_tokens": 8})
    assert created.status_code == 200, created.text
    check = created.json()
    assert check["base_model"] == BASE and len(check["results"]) == 2
    assert [r["tuned"].strip() for r in check["results"]] == ["square", "cross"]
    assert all(isinstance(r["base"], str) and r["image"] for r in check["results"])
    again = client.get(f"/v1/vibe_checks/{check['id']}").json()
    answers = ("prompt", "image", "base", "tuned")
    assert [{k: r[k] for k in answers} for r in again["results"]] == [
        {k: r[k] for k in answers} for r in check["results"]
    ]
    # The photos are kept (in the bucket, not in the document) and shown again through signed URLs.
    for sent, shown in zip(prompts, again["results"], strict=True):
        assert "image_path" not in shown and shown["image_url_expires_at"] <= time.time() + 3600 + 5
        photo = httpx.get(shown["image_url"], timeout=30)
        assert photo.status_code == 200
        assert photo.content == base64.b64decode(sent["image"].split(",", 1)[1])
    with pytest.MonkeyPatch.context() as patch:
        for name, value in platform.emulator_env.items():
            patch.setenv(name, value)
        from runtune.adapters.firestore import FirestoreMetadataStore

        stored = FirestoreMetadataStore.for_project(platform.project_id).get(f"vibe_checks/{check['id']}")
    assert stored is not None and "base64" not in str(stored)
    assert [r["image_path"] for r in stored["results"]] == [
        f"users/{client.uid}/vibe_checks/{check['id']}/prompt-{i}.png" for i in range(2)
    ]
    listed = client.get("/v1/vibe_checks").json()["data"]
    assert check["id"] in [c["id"] for c in listed]
    assert all(r["image_url"] for c in listed if c["id"] == check["id"] for r in c["results"])
    other = _client(platform)
    assert other.get(f"/v1/vibe_checks/{check['id']}").status_code == 404
    broken = [{"prompt": PROMPT, "image": "data:image/png;base64,@@@"}]
    refused = client.post("/v1/vibe_checks", json={"model": tuned["model"], "prompts": broken})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "prompts[0].image"


def test_evaluation_scores_the_tuned_model_far_above_its_base(tuned: dict[str, Any]) -> None:
    client = tuned["client"]
    created = client.post(
        "/v1/evaluations", json={"dataset_id": tuned["dataset_id"], "split": "test", "models": [BASE, tuned["model"]]}
    )
    assert created.status_code == 202, created.text
    evaluation_id = created.json()["id"]
    done = wait_for(
        lambda: (e := client.get(f"/v1/evaluations/{evaluation_id}").json())["status"] in ("succeeded", "failed") and e,
        timeout_s=300,
    )
    assert done["status"] == "succeeded", done.get("error")
    # The fastest exact method on the first samples: the local engine offers its extension and the
    # prefix search (per-label scoring is vLLM's).
    assert done["scoring_method"] in ("batched", "best_first", "prefix_search")
    base, tuned_metrics = done["metrics"][BASE], done["metrics"][tuned["model"]]
    assert tuned_metrics["samples"] == DEMO["test"]
    assert tuned_metrics["accuracy"] >= 0.8 and base["accuracy"] <= 0.5, (base["accuracy"], tuned_metrics["accuracy"])
    assert set(tuned_metrics["per_class"]) == set(CLASSES) and "macro_f1" in tuned_metrics
    assert set(tuned_metrics) == {
        *("accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1", "per_class"),
        *("confusion_matrix", "unmapped_rate", "samples"),
    }
    assert set(tuned_metrics["per_class"][CLASSES[0]]) == {"precision", "recall", "f1", "support", "unmapped"}
    matrix = tuned_metrics["confusion_matrix"]
    assert sum(sum(row["predicted"]) for row in matrix["rows"]) == DEMO["test"]
    rows = client.get(f"/v1/evaluations/{evaluation_id}/predictions").json()["data"]
    assert len(rows) == DEMO["test"] and set(rows[0]["predictions"]) == {BASE, tuned["model"]}
    assert set(rows[0]) == {"index", "expected", "predictions"}
    assert [row["index"] for row in rows] == list(range(len(rows)))


def test_generation_evaluation_maps_answers_to_labels(tuned: dict[str, Any]) -> None:
    client = tuned["client"]
    body = {"dataset_id": tuned["dataset_id"], "models": [tuned["model"]], "method": "generation", "max_samples": 8}
    evaluation_id = client.post("/v1/evaluations", json=body).json()["id"]
    done = wait_for(
        lambda: (e := client.get(f"/v1/evaluations/{evaluation_id}").json())["status"] in ("succeeded", "failed") and e,
        timeout_s=300,
    )
    assert done["status"] == "succeeded", done.get("error")
    assert done["metrics"][tuned["model"]]["samples"] == 8 and done["metrics"][tuned["model"]]["accuracy"] >= 0.6
    assert done["scoring_method"] is None  # no label scoring


def test_exported_merged_model_reloads_with_the_same_greedy_answers(tuned: dict[str, Any], tmp_path: Path) -> None:
    import torch
    from transformers import AutoProcessor, Gemma3ForConditionalGeneration

    client = tuned["client"]
    created = client.post("/v1/exports", json={"model": tuned["model"], "format": "merged"})
    assert created.status_code == 200, created.text
    export = created.json()
    names = {link["name"] for link in export["links"]}
    assert {"config.json", "model.safetensors", "chat_template.jinja"} <= names
    for link in export["links"]:
        query = parse_qs(urlparse(link["url"]).query)
        assert query["X-Goog-Expires"] == ["3600"]  # the URL stops working an hour after signing
        assert link["expires_at"] <= time.time() + 3600 + 5
        response = httpx.get(link["url"], timeout=60)
        assert response.status_code == 200
        target = tmp_path / link["name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(response.content)
    processor = AutoProcessor.from_pretrained(tmp_path)
    model = Gemma3ForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.float32).eval()
    for seed, label in enumerate(CLASSES):
        messages = _messages(label, 500 + seed)
        served = _chat(client, tuned["model"], messages).json()["choices"][0]["message"]["content"]
        from PIL import Image

        image = Image.open(io.BytesIO(draw(label, random.Random(500 + seed)))).convert("RGB")
        text = processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}],
            tokenize=False,
            add_generation_prompt=True,
        )
        inputs = processor(text=[text], images=[[image]], add_special_tokens=False, return_tensors="pt")
        stop = [processor.tokenizer.eos_token_id, processor.tokenizer.convert_tokens_to_ids("<end_of_turn>")]
        with torch.no_grad():
            out = model.generate(**inputs, do_sample=False, max_new_tokens=8, eos_token_id=stop)
        local = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        assert local.strip() == served.strip(), (label, local, served)


def test_adapter_export_is_one_archive(tuned: dict[str, Any]) -> None:
    client = tuned["client"]
    export = client.post("/v1/exports", json={"model": tuned["model"], "format": "adapter"}).json()
    assert [link["name"] for link in export["links"]] == ["adapter.tar.gz"]
    archive = httpx.get(export["links"][0]["url"], timeout=60).content
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        names = set(tar.getnames())
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= names
    again = client.get(f"/v1/exports/{export['id']}").json()
    assert again["links"][0]["url"] != "" and again["status"] == "succeeded"
    quantized = client.post("/v1/exports", json={"model": tuned["model"], "format": "adapter", "quantization": "q8_0"})
    assert quantized.status_code == 400 and quantized.json()["error"]["param"] == "quantization"


def test_gguf_export_is_converted_by_an_execution_of_its_own(tuned: dict[str, Any], tmp_path: Path) -> None:
    from gguf import GGUFReader

    client = tuned["client"]
    body = {"model": tuned["model"], "format": "gguf", "quantization": "q8_0"}
    created = client.post("/v1/exports", json=body)
    assert created.status_code == 200, created.text
    assert created.json()["status"] in ("queued", "running") and created.json()["links"] == []
    export_id = created.json()["id"]
    done = wait_for(
        lambda: (e := client.get(f"/v1/exports/{export_id}").json())["status"] in ("succeeded", "failed") and e,
        timeout_s=300,
    )
    assert done["status"] == "succeeded", done.get("error")
    assert done["quantization"] == "q8_0" and done["phase"] is None
    links = {link["name"]: link["url"] for link in done["links"]}
    assert set(links) == {"model-q8_0.gguf", "mmproj-f16.gguf"}
    for name, url in links.items():
        (tmp_path / name).write_bytes(httpx.get(url, timeout=60).content)
    model = GGUFReader(tmp_path / "model-q8_0.gguf")
    kind = model.fields["general.file_type"]
    assert kind.parts[kind.data[0]].tolist() == [7]  # LLAMA_FTYPE_MOSTLY_Q8_0
    assert any(t.name.startswith("v.") for t in GGUFReader(tmp_path / "mmproj-f16.gguf").tensors)
    # The same conversion again: the files are reused, no second execution.
    again = client.post("/v1/exports", json=body).json()
    assert again["status"] == "succeeded" and {link["name"] for link in again["links"]} == set(links)
    bad = client.post("/v1/exports", json={**body, "quantization": "q3_k"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "quantization"


@pytest.mark.parametrize(
    "model",
    [
        "gs://runtune-local/users/someone/jobs/ftjob-x/export/adapter",
        "/etc/passwd",
        "ft:tiny-gemma-3-vision:../../datasets/x",
        "ft:tiny-gemma-3-vision:ftjob-doesnotexist",
    ],
)
def test_paths_and_unknown_models_are_not_found(tuned: dict[str, Any], model: str) -> None:
    answer = _chat(tuned["client"], model, _messages("circle", 0))
    assert answer.status_code == 404 and answer.json()["error"]["param"] == "model"


def test_another_users_tuned_model_is_not_found(platform: Any, tuned: dict[str, Any]) -> None:
    other = _client(platform)
    model = tuned["model"]
    assert _chat(other, model, _messages("circle", 0)).status_code == 404
    vibe = other.post("/v1/vibe_checks", json={"model": model, "prompts": [{"prompt": "hi"}]})
    assert vibe.status_code == 404
    export = other.post("/v1/exports", json={"model": model, "format": "adapter"})
    assert export.status_code == 404
    evaluation = other.post("/v1/evaluations", json={"dataset_id": tuned["dataset_id"], "models": [BASE]})
    assert evaluation.status_code == 404  # the dataset is not theirs either


def test_bad_requests_name_the_field(tuned: dict[str, Any]) -> None:
    client = tuned["client"]
    remote = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}]
    answer = _chat(client, BASE, remote)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "messages[0].content[0].image_url.url"
    missing = client.post("/v1/chat/completions", json={"model": BASE})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "messages"
    too_long = _chat(client, BASE, _messages("circle", 0), max_tokens=100_000)
    assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "max_tokens"
