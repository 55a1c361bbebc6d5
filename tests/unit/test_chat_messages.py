"""What may reach an inference engine (runtune/schemas/chat.py); the refusals are tested through the
gateway in tests/e2e/test_chat_media.py."""

from __future__ import annotations

import pytest

from runtune.errors import InvalidRequest
from runtune.schemas.chat import check_messages

PNG = "data:image/png;base64,iVBORw0KGgo="
USER_PARTS = [{"type": "text", "text": "And this?"}, {"type": "image_url", "image_url": {"url": PNG}}]


def test_text_and_inline_images_pass() -> None:
    check_messages(
        [
            {"role": "system", "content": "Answer with one word."},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG, "detail": "low"}}]},
            {"role": "assistant", "content": [{"type": "text", "text": "circle"}]},
            {"role": "user", "content": USER_PARTS},
        ]
    )


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([], "messages"),
        ("hi", "messages"),
        ([{"role": "tool", "content": "x"}], "messages[0].role"),
        ([{"role": "user"}], "messages[0].content"),
        ([{"role": "user", "content": [*USER_PARTS, {"type": "video_url"}]}], "messages[0].content[2]"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:text/html;base64,PGI+"}}]}],
            "messages[0].content[0].image_url.url",
        ),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]}],
            "messages[0].content[0].image_url.url",
        ),
    ],
)
def test_anything_else_is_refused_naming_it(messages, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_messages(messages)
    assert info.value.param == param
