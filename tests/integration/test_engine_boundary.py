"""The vLLM contract, pinned where vLLM cannot run: the real HTTP client against a local fake of
vLLM's OpenAI-compatible server that records every request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from runtune.adapters.firestore import FirestoreMetadataStore
from runtune.adapters.gcs import GcsBlobStore
from runtune.adapters.openai_engine import OpenAIEngine
from runtune.errors import InvalidRequest, NotFound, PermissionDenied
from runtune.inference.adapter_pool import AdapterPool
from runtune.inference.resolver import ModelResolver, Target, TunedAdapter
from runtune.inference.staging import AdapterStager
from runtune.models.registry import get
from runtune.ports.engine import EngineModelNotFound
from runtune.schemas.common import Deleted, new_id
from runtune.schemas.jobs import Job, JobStatus, job_path
from services.inference.service import InferenceService
from tests.support import JsonHandler, serve_in_thread

# What Gemma 3's template writes from the end of a user's text to the model's answer.
OPENING = "<end_of_turn>\n<start_of_turn>model\n"


class FakeVllm:
    """Answers like `vllm serve google/gemma-3-4b-it --enable-lora`, recording requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict | None]] = []
        self.adapters: set[str] = set()
        self.authorizations: list[str | None] = []
        fake = self

        class Handler(JsonHandler):
            protocol_version = "HTTP/1.1"

            def _body(self) -> dict | None:
                length = int(self.headers.get("content-length") or 0)
                return json.loads(self.rfile.read(length)) if length else None

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path, None))
                fake.authorizations.append(self.headers.get("authorization"))
                ids = ["google/gemma-3-4b-it", *sorted(fake.adapters)]
                self.send_json(200, {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]})

            def do_POST(self) -> None:
                body = self._body()
                fake.requests.append(("POST", self.path, body))
                assert body is not None
                if self.path == "/v1/load_lora_adapter":
                    if body["lora_name"] in fake.adapters:
                        return self.send_json(400, {"error": {"message": "already loaded", "type": "BadRequestError"}})
                    fake.adapters.add(body["lora_name"])
                    return self.send_json(200, {})
                if self.path == "/v1/unload_lora_adapter":
                    if body["lora_name"] not in fake.adapters:
                        message = f"The lora adapter '{body['lora_name']}' cannot be found."
                        return self.send_json(404, {"error": {"message": message, "type": "NotFoundError"}})
                    fake.adapters.discard(body["lora_name"])
                    return self.send_json(200, {})
                if self.path == "/tokenize":  # one token per character of the rendered conversation
                    tokens = [ord(c) for c in _render(body)]
                    return self.send_json(200, {"count": len(tokens), "max_model_len": 8192, "tokens": tokens})
                if self.path == "/detokenize":
                    return self.send_json(200, {"prompt": "".join(chr(t) for t in body["tokens"])})
                if self.path == "/v1/chat/completions":
                    if body["model"] not in {"google/gemma-3-4b-it", *fake.adapters}:
                        return self.send_json(404, {"error": {"message": f"model {body['model']} not found"}})
                    if body.get("prompt_logprobs") is not None:
                        # Prompt tokens: a shared prefix, then one token per character of the
                        # continuation; "dog" is the likely one.
                        text = body["messages"][-1]["content"][-1]["text"].removeprefix(OPENING)
                        logprob = -0.1 if text.startswith("dog") else -2.0
                        entries = [None, {"7": {"logprob": -0.5, "rank": 1}}, {"8": {"logprob": -0.5, "rank": 1}}]
                        entries += [{str(ord(c)): {"logprob": logprob, "rank": 1}} for c in text]
                        answer = {"object": "chat.completion", "choices": [], "prompt_logprobs": entries}
                        return self.send_json(200, answer)
                    if body.get("logprobs"):
                        return self.send_json(200, _top_logprobs(body))
                    if body.get("stream"):
                        self.send_response(200)
                        self.send_header("content-type", "text/event-stream")
                        self.end_headers()
                        for piece in ("Abys", "sinian"):
                            chunk = {
                                "object": "chat.completion.chunk",
                                "choices": [{"index": 0, "delta": {"content": piece}}],
                            }
                            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.write(b"data: [DONE]\n\n")
                        self.close_connection = True
                        return None
                    return self.send_json(
                        200,
                        {
                            "id": "chatcmpl-1",
                            "object": "chat.completion",
                            "model": body["model"],
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Abyssinian"}}],
                        },
                    )
                # vLLM is a FastAPI app: a route it does not have (Runtune's scoring extension) is FastAPI's 404.
                return self.send_json(404, {"detail": "Not Found"})

        self.server, self.url = serve_in_thread(Handler)


def _render(body: dict) -> str:
    """Gemma 3's template, for text parts: the generation prompt, or the final message continued."""
    turns = "".join(
        f"<start_of_turn>user\n{''.join(p.get('text', '') for p in m['content'] if p['type'] == 'text')}"
        for m in body["messages"]
    )
    return f"<bos>{turns}" + ("" if body.get("continue_final_message") else OPENING)


def _top_logprobs(body: dict) -> dict:
    """The next token after the answer so far (one character a token): "dog<end_of_turn>" is the
    likely answer (-0.1 a character on its way, -2.0 off it), as the `prompt_logprobs` above."""
    answer = _render(body).rsplit(OPENING, 1)[-1] if body.get("continue_final_message") else ""
    alphabet = sorted(set("catdog<end_of_turn>"))
    ranked = sorted(
        ((-0.1 if "dog<end_of_turn>".startswith(answer + c) else -2.0, c) for c in alphabet), key=lambda x: -x[0]
    )
    top = [{"token": f"token_id:{ord(c)}", "logprob": logprob} for logprob, c in ranked[: body["top_logprobs"]]]
    content = [{**top[0], "top_logprobs": top}]
    return {"object": "chat.completion", "choices": [{"index": 0, "logprobs": {"content": content}}]}


@pytest.fixture
def vllm() -> Iterator[FakeVllm]:
    fake = FakeVllm()
    yield fake
    fake.server.shutdown()


CHAT = {
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                {"type": "text", "text": "Which breed is this?"},
            ],
        }
    ],
    "temperature": 0,
}


def test_chat_sends_the_openai_request_as_given(vllm: FakeVllm) -> None:
    async def run() -> dict:
        engine = OpenAIEngine(vllm.url)
        try:
            return await engine.chat({"model": "google/gemma-3-4b-it", **CHAT})
        finally:
            await engine.aclose()

    answer = asyncio.run(run())
    assert answer["choices"][0]["message"]["content"] == "Abyssinian"
    method, path, body = vllm.requests[-1]
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert body == {"model": "google/gemma-3-4b-it", **CHAT, "stream": False}


def test_streaming_relays_the_engine_events(vllm: FakeVllm) -> None:
    async def run() -> bytes:
        engine = OpenAIEngine(vllm.url)
        try:
            return b"".join([chunk async for chunk in engine.chat_stream({"model": "google/gemma-3-4b-it", **CHAT})])
        finally:
            await engine.aclose()

    raw = asyncio.run(run()).decode()
    assert raw.count("chat.completion.chunk") == 2
    assert raw.rstrip().endswith("data: [DONE]")
    assert vllm.requests[-1][2]["stream"] is True


def test_adapter_pool_loads_once_and_evicts_the_least_recently_used(vllm: FakeVllm) -> None:
    async def run() -> list[str]:
        engine = OpenAIEngine(vllm.url)
        pool = AdapterPool(engine, capacity=2)
        try:
            await pool.ensure("ftjob-a", "/mnt/runtune/users/u1/jobs/ftjob-a/adapter")
            await pool.ensure("ftjob-b", "/mnt/runtune/users/u1/jobs/ftjob-b/adapter")
            await pool.ensure("ftjob-a", "/mnt/runtune/users/u1/jobs/ftjob-a/adapter")  # warm: no request
            await pool.ensure("ftjob-c", "/mnt/runtune/users/u2/jobs/ftjob-c/adapter")  # evicts b
            await engine.chat({"model": "ftjob-c", **CHAT})
            return pool.loaded
        finally:
            await engine.aclose()

    assert asyncio.run(run()) == ["ftjob-a", "ftjob-c"]
    adapter_calls = [(path, body) for method, path, body in vllm.requests if "lora" in path]
    assert adapter_calls == [
        ("/v1/load_lora_adapter", {"lora_name": "ftjob-a", "lora_path": "/mnt/runtune/users/u1/jobs/ftjob-a/adapter"}),
        ("/v1/load_lora_adapter", {"lora_name": "ftjob-b", "lora_path": "/mnt/runtune/users/u1/jobs/ftjob-b/adapter"}),
        ("/v1/unload_lora_adapter", {"lora_name": "ftjob-b"}),
        ("/v1/load_lora_adapter", {"lora_name": "ftjob-c", "lora_path": "/mnt/runtune/users/u2/jobs/ftjob-c/adapter"}),
    ]
    assert vllm.adapters == {"ftjob-a", "ftjob-c"}


def test_engine_refusals_become_4xx_errors(vllm: FakeVllm) -> None:
    async def run() -> None:
        engine = OpenAIEngine(vllm.url)
        try:
            await engine.chat({"model": "ftjob-never-loaded", **CHAT})
        finally:
            await engine.aclose()

    with pytest.raises(InvalidRequest, match="not found"):
        asyncio.run(run())


def test_models_lists_base_and_adapters(vllm: FakeVllm) -> None:
    async def run() -> list[str]:
        engine = OpenAIEngine(vllm.url)
        try:
            await engine.load_adapter("ftjob-a", "/tmp/a")
            return await engine.models()
        finally:
            await engine.aclose()

    assert asyncio.run(run()) == ["google/gemma-3-4b-it", "ftjob-a"]


def test_label_scoring_asks_for_prompt_logprobs_of_each_continuation(vllm: FakeVllm) -> None:
    async def run() -> list[float]:
        engine = OpenAIEngine(vllm.url)
        try:
            first = await engine.score(
                "google/gemma-3-4b-it", CHAT["messages"], ["cat<end_of_turn>", "dog<end_of_turn>"]
            )
            vllm.requests.clear()
            again = await engine.score(
                "google/gemma-3-4b-it", CHAT["messages"], ["cat<end_of_turn>", "dog<end_of_turn>"]
            )
            assert again == first
            return first
        finally:
            await engine.aclose()

    cat, dog = asyncio.run(run())
    assert dog > cat
    # vLLM lacks Runtune's scoring extension: asked on the first call only (the requests of the second
    # are all that is recorded), then per-label chat completions.
    assert "/v1/runtune/score" not in [path for _, path, _ in vllm.requests]
    assert "/tokenize" not in [path for _, path, _ in vllm.requests]
    # Only what follows the shared prefix counts: the three letters of each label and the end of turn.
    assert dog == pytest.approx(-0.1 * 16) and cat == pytest.approx(-2.0 * 16)
    # Sent together: they may arrive in either order.
    sent = sorted(
        (body for _, path, body in vllm.requests if path == "/v1/chat/completions"),
        key=lambda body: body["messages"][-1]["content"][-1]["text"],
    )
    assert len(sent) == 2
    # The label ends the user's turn after the template's own opening of the model's turn (learnt
    # from the engine once: the second call asked nothing more), so the scored prefix is the
    # template's generation prompt, the one training put before the answer.
    question = CHAT["messages"][0]
    for body, label in zip(sent, ["cat", "dog"], strict=True):
        assert body == {
            "model": "google/gemma-3-4b-it",
            "messages": [
                {
                    **question,
                    "content": [*question["content"], {"type": "text", "text": f"{OPENING}{label}<end_of_turn>"}],
                }
            ],
            "add_generation_prompt": False,
            "continue_final_message": True,
            "max_tokens": 1,
            "temperature": 0,
            "prompt_logprobs": 0,
        }


def test_prefix_search_reads_the_prefix_cache_one_request_at_a_time(vllm: FakeVllm) -> None:
    """vLLM's prefix cache serves requests without `prompt_logprobs`: the sample's plain generation
    prompt with `max_tokens=1` and the top log-probabilities by token id, then the winning label's
    prefixes continued (the request shape of per-label scoring), never a per-label prompt."""
    from runtune.ports.engine import ScoringMethod

    labels = ["cat<end_of_turn>", "dog<end_of_turn>"]
    model = "google/gemma-3-4b-it"

    async def run() -> tuple[list[ScoringMethod], int, list[float], list[float]]:
        engine = OpenAIEngine(vllm.url)
        try:
            methods = await engine.scoring_methods()
            await engine.best(model, CHAT["messages"], labels, ScoringMethod.prefix_search)  # learns the labels
            vllm.requests.clear()
            best = await engine.best(model, CHAT["messages"], labels, ScoringMethod.prefix_search)
            searched = list(vllm.requests)
            exhaustive = await engine.score(model, CHAT["messages"], labels, ScoringMethod.prefix_search)
            per_label = await engine.score(model, CHAT["messages"], labels, ScoringMethod.per_label)
            vllm.requests[:] = searched
            return methods, best, exhaustive, per_label
        finally:
            await engine.aclose()

    methods, best, exhaustive, per_label = asyncio.run(run())
    assert methods == [ScoringMethod.per_label, ScoringMethod.prefix_search]  # vLLM has no extension
    assert best == 1 and exhaustive == pytest.approx(per_label)
    sent = [body for _, path, body in vllm.requests]
    assert all(path == "/v1/chat/completions" for _, path, _ in vllm.requests)
    assert not any("prompt_logprobs" in body for body in sent)
    search = {
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 20,
        "return_tokens_as_token_ids": True,
    }
    # First: the sample's own generation prompt, as any chat request (what the prefix cache holds).
    assert sent[0] == {"model": model, "messages": CHAT["messages"], **search}
    # Then one request per prefix of the winner only ("d", "do", ... up to before its last token):
    # "cat" is never continued, its first token already scores below the finished "dog".
    question = CHAT["messages"][0]
    answer = "dog<end_of_turn>"
    assert len(sent) == len(answer)
    for body, end in zip(sent[1:], range(1, len(answer)), strict=True):
        text = {"type": "text", "text": OPENING + answer[:end]}
        assert body == {
            "model": model,
            "messages": [{**question, "content": [*question["content"], text]}],
            "add_generation_prompt": False,
            "continue_final_message": True,
            **search,
        }


def test_id_token_authorization_is_sent_on_every_request(vllm: FakeVllm) -> None:
    headers: list[str] = []
    calls = iter(["Bearer one", "Bearer two"])

    async def authorization() -> str:
        value = next(calls)
        headers.append(value)
        return value

    async def run() -> None:
        engine = OpenAIEngine(vllm.url, authorization=authorization)
        try:
            await engine.models()
            await engine.models()
        finally:
            await engine.aclose()

    asyncio.run(run())
    assert vllm.authorizations == headers == ["Bearer one", "Bearer two"]


def test_an_adapter_the_engine_lost_in_a_restart_is_loaded_again(vllm: FakeVllm) -> None:
    """The service keeps running while the engine restarts: its pool still counts the adapter loaded,
    the engine answers 404 for it; the service loads it again and retries, once."""
    spec = get("google/gemma-3-4b-it")
    tuned = Target("ft:google/gemma-3-4b-it:ftjob-a", spec, TunedAdapter("ftjob-a", "users/u1/jobs/ftjob-a/adapter/"))

    async def run() -> tuple[str, str, list[float], list[str]]:
        engine = OpenAIEngine(vllm.url)
        pool = AdapterPool(engine, capacity=2)
        service = InferenceService(None, None, engine, AdapterStager(pool, None, root="/mnt/data", download=False))  # type: ignore[arg-type]
        try:
            before = await service.answer(tuned, CHAT["messages"], 8, 0.0)
            vllm.adapters.clear()  # the engine restarted: it serves its base model only
            after = await service.answer(tuned, CHAT["messages"], 8, 0.0)
            vllm.adapters.clear()
            scores = await service.score(tuned, CHAT["messages"], ["cat<end_of_turn>", "dog<end_of_turn>"])
            return before, after, scores, pool.loaded
        finally:
            await engine.aclose()

    before, after, scores, loaded = asyncio.run(run())
    assert before == after == "Abyssinian" and scores[1] > scores[0] and loaded == ["ftjob-a"]
    loads = [body for _, path, body in vllm.requests if path == "/v1/load_lora_adapter"]
    assert loads == [{"lora_name": "ftjob-a", "lora_path": "/mnt/data/users/u1/jobs/ftjob-a/adapter"}] * 3
    chats = [body["model"] for _, path, body in vllm.requests if path == "/v1/chat/completions"]
    # answer; 404 + retry; two labels (one 404 at least, so both again)
    assert chats == ["ftjob-a"] * 7
    assert vllm.adapters == {"ftjob-a"}

    # A base model the engine does not serve is not an adapter to reload: the 4xx stands.
    vllm.requests.clear()

    async def missing_base() -> None:
        engine = OpenAIEngine(vllm.url)
        pool = AdapterPool(engine, capacity=2)
        service = InferenceService(None, None, engine, AdapterStager(pool, None, root="/mnt/data", download=False))  # type: ignore[arg-type]
        try:
            await service.answer(
                Target("google/gemma-3-12b-it", get("google/gemma-3-12b-it")), CHAT["messages"], 8, 0.0
            )
        finally:
            await engine.aclose()

    with pytest.raises(EngineModelNotFound):
        asyncio.run(missing_base())
    assert [path for _, path, _ in vllm.requests] == ["/v1/chat/completions"]


def test_pools_of_several_processes_share_one_engine(vllm: FakeVllm) -> None:
    """The inference service and an evaluation execution each keep a pool on the same engine: the
    second adopts what the first loaded (vLLM refuses a second load of one name), unloads only what it
    loaded itself, and no pool evicts an adapter one of its own calls is using."""

    async def run() -> None:
        engine = OpenAIEngine(vllm.url)
        service, execution = AdapterPool(engine, capacity=2), AdapterPool(engine, capacity=2)
        try:
            await service.ensure("ftjob-a", "/mnt/a")
            await execution.ensure("ftjob-a", "/mnt/a")  # adopted: the engine has it already
            await execution.ensure("ftjob-b", "/mnt/b")  # loaded by the execution
            assert execution.loaded == ["ftjob-a", "ftjob-b"]
            await execution.release()
            assert vllm.adapters == {"ftjob-a"}, "only what the execution loaded itself is unloaded"
            # Unloading what another user already unloaded is not an error.
            await service.ensure("ftjob-b", "/mnt/b")
            vllm.adapters.discard("ftjob-b")
            await service.forget("ftjob-b")
            # A call in flight keeps its adapter loaded: the least recently used idle one goes instead.
            await service.ensure("ftjob-c", "/mnt/c")  # loaded: a, c (a least recently used)
            async with service.using("ftjob-a"):
                await service.ensure("ftjob-d", "/mnt/d")
                assert "ftjob-a" in vllm.adapters and "ftjob-c" not in vllm.adapters
                async with service.using("ftjob-d"):
                    await service.ensure("ftjob-e", "/mnt/e")  # all busy: the engine holds one more
            assert service.loaded == ["ftjob-a", "ftjob-d", "ftjob-e"]
            assert vllm.adapters == {"ftjob-a", "ftjob-d", "ftjob-e"}
        finally:
            await engine.aclose()

    asyncio.run(run())
    refused = [
        body for _, path, body in vllm.requests if path == "/v1/load_lora_adapter" and body["lora_name"] == "ftjob-a"
    ]
    assert len(refused) == 2  # the second answered "already loaded", and was adopted


def test_a_deleted_models_adapter_leaves_the_engine_whoever_loaded_it(vllm: FakeVllm) -> None:
    """The engine is shared: the instance that handles `DELETE /v1/models/{id}` frees the slot even
    when another instance (or an evaluation execution) loaded the adapter; the loader's stale entry
    is then evicted without error."""

    async def run() -> None:
        engine = OpenAIEngine(vllm.url)
        loader, deleter = AdapterPool(engine, capacity=1), AdapterPool(engine, capacity=1)
        try:
            await loader.ensure("ftjob-a", "/mnt/a")
            await deleter.forget("ftjob-a")
            assert "ftjob-a" not in vllm.adapters
            await deleter.forget("ftjob-a")  # again: nothing left to unload, not an error
            await loader.ensure("ftjob-b", "/mnt/b")  # evicts its stale ftjob-a: already gone
            assert vllm.adapters == {"ftjob-b"} and loader.loaded == ["ftjob-b"]
        finally:
            await engine.aclose()

    asyncio.run(run())


def test_deleting_a_tuned_model_frees_its_slot_and_its_files(vllm: FakeVllm, emulators, tmp_path) -> None:
    """`InferenceService.delete_model` on the real Firestore and bucket emulators: the adapter the
    service staged (downloaded) and loaded leaves the engine and the disk, its export folder and the
    exports made from it leave the bucket, the job stays with `model_deleted_at`, and the id is a 404."""

    store = FirestoreMetadataStore.for_project(emulators.project_id)
    blobs = GcsBlobStore.for_bucket(emulators.project_id, emulators.bucket)
    uid, job_id, base = "u-del", new_id("ftjob"), "google/gemma-3-4b-it"
    model, folder = f"ft:{base}:{job_id}", f"users/u-del/jobs/{job_id}/export/"
    blobs.upload_bytes(f"{folder}adapter/adapter_config.json", b"{}")
    blobs.upload_bytes(f"{folder}merged/model.safetensors", b"weights")
    blobs.upload_bytes(f"users/{uid}/exports/export-1/adapter.tar.gz", b"archive")
    blobs.upload_bytes(f"users/{uid}/jobs/{job_id}/config.json", b"{}")  # not the model's: stays
    store.set("exports/export-1", {"id": "export-1", "owner": uid, "job_id": job_id, "model": model})
    store.set("exports/export-2", {"id": "export-2", "owner": uid, "job_id": "ftjob-other", "model": "x"})
    job = Job(id=job_id, owner=uid, model=base, training_file="file-1", status=JobStatus.succeeded)
    job.fine_tuned_model, job.runtune = model, {"export": {"adapter": f"{folder}adapter/"}}
    store.set(job_path(job_id), job.to_document())

    async def run() -> Deleted:
        engine = OpenAIEngine(vllm.url)
        stager = AdapterStager(AdapterPool(engine, capacity=2), blobs, root=str(tmp_path), download=True)
        service = InferenceService(store, blobs, engine, stager)
        try:
            assert await service.answer(service.resolver.resolve(uid, model), CHAT["messages"], 8, 0.0)
            assert job_id in vllm.adapters and (tmp_path / job_id / "adapter_config.json").is_file()
            with pytest.raises(NotFound):
                await service.delete_model("someone-else", model)
            with pytest.raises(PermissionDenied):
                await service.delete_model(uid, base)
            assert job_id in vllm.adapters, "refused deletes touch nothing"
            return await service.delete_model(uid, model)
        finally:
            await engine.aclose()

    assert asyncio.run(run()).model_dump(mode="json") == {"id": model, "object": "model", "deleted": True}
    assert job_id not in vllm.adapters and not (tmp_path / job_id).exists()
    assert blobs.list(folder) == [] and blobs.list(f"users/{uid}/exports/export-1/") == []
    assert [b.path for b in blobs.list(f"users/{uid}/jobs/{job_id}/")] == [f"users/{uid}/jobs/{job_id}/config.json"]
    assert store.get("exports/export-1") is None and store.get("exports/export-2") is not None
    kept = Job.model_validate(store.get(job_path(job_id)))
    assert kept.status is JobStatus.succeeded and kept.fine_tuned_model == model and kept.model_deleted_at
    with pytest.raises(NotFound):
        ModelResolver(store).resolve(uid, model)
