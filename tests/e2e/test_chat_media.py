"""Chat and vibe checks take text and inline images only, through the gateway with a real user: any
other part, or an image by URL, is a 400 naming it, before a model is resolved or the engine asked
(vLLM would fetch http(s) media from inside the platform's network)."""

from __future__ import annotations

import httpx
import pytest

from tests.support import sign_up

pytestmark = pytest.mark.platform

BASE = "tiny-gemma-3-vision"
TEXT = {"type": "text", "text": "What is in the picture?"}
PNG = "data:image/png;base64,iVBORw0KGgo="
METADATA = "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token"

REFUSED_PARTS = [
    ({"text": "no type"}, ""),
    ({"type": "input_image", "image_url": METADATA}, ""),
    ({"type": "input_image", "image_url": {"url": PNG}}, ""),
    ({"type": "image", "image": METADATA}, ""),
    ({"type": "video_url", "video_url": {"url": "https://example.com/v.mp4"}}, ""),
    ({"type": "audio_url", "audio_url": {"url": "https://example.com/a.wav"}}, ""),
    ({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}, ""),
    ({"type": "file", "file": {"file_id": "file-x"}}, ""),
    ({"type": "image_url", "image_url": {"url": METADATA}}, ".image_url.url"),
    ({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}, ".image_url.url"),
    ({"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}, ".image_url.url"),
    ({"type": "image_url", "image_url": {"url": "gs://runtune-data/users/x/a.png"}}, ".image_url.url"),
    ({"type": "image_url", "image_url": PNG}, ".image_url.url"),
    ({"type": "text", "text": {"url": METADATA}}, ".text"),
    ("just a string", ""),
]


@pytest.fixture(scope="module")
def client(platform) -> httpx.Client:
    token = sign_up(platform.auth_host)["id_token"]
    with httpx.Client(base_url=platform.gateway_url, headers={"authorization": f"Bearer {token}"}, timeout=60) as c:
        yield c


@pytest.mark.parametrize(("part", "suffix"), REFUSED_PARTS, ids=lambda value: str(value)[:30])
def test_only_text_and_inline_image_parts_reach_the_engine(client, part, suffix: str) -> None:
    messages = [{"role": "user", "content": [TEXT, part]}]
    # A tuned model that does not exist: the parts are refused before the model is even looked up.
    for model, stream in [(BASE, False), (BASE, True), (f"ft:{BASE}:ftjob-doesnotexist", False)]:
        response = client.post("/v1/chat/completions", json={"model": model, "messages": messages, "stream": stream})
        assert response.status_code == 400, (model, stream, response.text[:300])
        error = response.json()["error"]
        assert error["param"] == f"messages[0].content[1]{suffix}", error
        assert error["type"] == "invalid_request_error"


def test_a_vibe_check_image_must_be_inline(client) -> None:
    for image in (METADATA, "file:///etc/passwd", "https://example.com/a.png"):
        response = client.post(
            "/v1/vibe_checks", json={"model": f"ft:{BASE}:ftjob-x", "prompts": [{"prompt": "hi", "image": image}]}
        )
        assert response.status_code == 400, response.text[:300]
        assert response.json()["error"]["param"] == "prompts[0].image"
