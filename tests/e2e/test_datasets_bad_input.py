"""Every bad input of issue 3, through the gateway: a 4xx, or a `failed` dataset whose error names
what and where, never a 500, and no blobs left behind."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from PIL import Image

from tests.datasets.bombs import (
    chat_jsonl_with_line,
    corrupt_deflate_zip,
    csv_with_field,
    deep_json_line,
    encrypted_zip,
    parquet_bomb_bytes,
    tar_header_bomb_bytes,
    zip_with_directory,
)
from tests.datasets.builders import chat_line, image_folder_files, jpeg
from tests.datasets.client import bucket, ingest

pytestmark = pytest.mark.platform


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return out.getvalue()


def _bomb_png() -> bytes:
    out = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(out, format="PNG")  # 144 Mpx of zeros: a few hundred KB
    return out.getvalue()


GOOD = image_folder_files(3)
CASES = {
    "malformed-jsonl": (
        "bad.jsonl",
        (chat_line("q", "a") + "\n" + chat_line("q2", "b") + '\n{"messages": [\n').encode(),
        {},
        "invalid_json",
        "bad.jsonl, line 3: malformed JSON",
    ),
    "missing-column": (
        "t.csv",
        b"question,answer\nhi,there\n",
        {"mapping": {"user": "{question}", "answer": "reply"}},
        "unknown_column",
        "column 'reply' (mapping.answer) does not exist; the columns are: answer, question",
    ),
    "non-utf8": (
        "latin.jsonl",
        chat_line("q", "a").encode() + b"\n" + chat_line("cafe", "b").encode().replace(b"cafe", b"caf\xe9") + b"\n",
        {},
        "invalid_encoding",
        "latin.jsonl, line 2: not valid UTF-8",
    ),
    "escaping-entry": (
        "evil.zip",
        _zip({**GOOD, "../../etc/cron.d/x": b"boom"}),
        {},
        "unsafe_archive",
        "escapes the archive's folder",
    ),
    "expansion-ratio": (
        "bomb.zip",
        _zip({**GOOD, "cat/zeros.txt": b"\0" * (64 << 20)}),
        {},
        "archive_too_large",
        "expands more than 100x",
    ),
    "pixel-bomb": (
        "pixels.zip",
        _zip({**GOOD, "dog/huge.png": _bomb_png()}),
        {},
        "image_too_large",
        "pixels.zip, field 'dog/huge.png': the image is 12000x12000",
    ),
    "truncated-jpeg": (
        "trunc.zip",
        _zip({**GOOD, "cat/cut.jpg": jpeg((1, 2, 3), (300, 300))[:700]}),
        {},
        "invalid_image",
        "trunc.zip, field 'cat/cut.jpg': the image is truncated or corrupt",
    ),
    "not-an-image": (
        "fake.zip",
        _zip({**GOOD, "dog/notes.jpg": b"these are my notes, not a picture"}),
        {},
        "invalid_image",
        "fake.zip, field 'dog/notes.jpg': not a readable image",
    ),
    "one-label": (
        "one.zip",
        _zip(image_folder_files(4, ("cat",))),
        {},
        "single_label",
        "needs at least two labels; every example is labelled 'cat'",
    ),
    "url-outside-upload": (
        "remote.jsonl",
        (chat_line("q", "a", url="https://example.com/cat.jpg") + "\n").encode(),
        {},
        "image_outside_upload",
        "remote.jsonl, line 1, field 'messages[0].content[0].image_url.url': image URL 'https://example.com/cat.jpg' "
        "points outside the upload",
    ),
    "path-outside-upload": (
        "paths.zip",
        _zip({"data.csv": b"image,label\n/etc/passwd,a\n../secret.jpg,b\n", "x.jpg": jpeg((0, 0, 0))}),
        {},
        "image_outside_upload",
        "paths.zip!data.csv, row 1, field 'image': image path '/etc/passwd' points outside the upload",
    ),
    # Issue 13: bombs, each refused before it costs more than a bounded amount of memory.
    "tar-long-name-header": (
        "bomb.tar.gz",
        tar_header_bomb_bytes(64 << 20),
        {},
        "archive_too_large",
        "bomb.tar.gz: the archive has a long name header of 67,108,864 bytes, over the limit of 65,536",
    ),
    "zip-huge-directory": (
        "huge-dir.zip",
        zip_with_directory(GOOD, size=0xFFFF_FFF0),
        {},
        "archive_too_large",
        "huge-dir.zip: the archive's directory is 4,294,967,280 bytes, over the limit",
    ),
    "encrypted-zip": (
        "locked.zip",
        encrypted_zip(GOOD),
        {},
        "invalid_archive",
        "is encrypted: password-protected zips are not supported",
    ),
    "corrupt-deflate": (
        "broken.zip",
        corrupt_deflate_zip("cat/notes.txt", b"hello " * 50_000),
        {},
        "invalid_archive",
        "broken.zip, field 'cat/notes.txt': archive entry 'cat/notes.txt' is corrupt",
    ),
    "deep-json": (
        "deep.jsonl",
        chat_jsonl_with_line(deep_json_line(200_000)),
        {},
        "invalid_json",
        "deep.jsonl, line 2: the JSON is nested too deeply",
    ),
    "long-csv-row": (
        "long.csv",
        b"question,answer\nhi,there\n" + b"y," * (5 << 19) + b"z\n",
        {"mapping": {"user": "{question}", "answer": "answer"}},
        "row_too_long",
        "long.csv, row 2: the row is longer than 4,194,304 bytes",
    ),
    "csv-200-kib-field": (
        "wide.csv",
        csv_with_field(200 * 1024),
        {"mapping": {"user": "{question}", "answer": "answer"}},
        "field_too_long",
        "wide.csv, row 2, field 'answer': the field is longer than 131,072 characters",
    ),
    "parquet-ratio": (
        "bomb.parquet",
        parquet_bomb_bytes(),
        {"mapping": {"user": "{question}", "answer": "answer"}},
        "file_too_large",
        "bomb.parquet, field 'row group 0': column 'question' expands more than 100x",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_naming_what_and_where(client, account, platform, monkeypatch, case) -> None:
    filename, data, options, code, message = CASES[case]
    dataset = ingest(client, filename, data, **options)
    assert dataset["status"] == "failed", dataset
    assert dataset["error"]["code"] == code
    assert message in dataset["error"]["message"]
    # A failed dataset leaves no blobs.
    assert not bucket(platform.emulator_env, monkeypatch).list(f"users/{account['uid']}/datasets/{dataset['id']}/")
    # It is a file in the `error` state on the OpenAI surface too.
    file = client.get(f"/v1/files/{dataset['id']}").json()
    assert (file["status"], file["status_details"]) == ("error", dataset["error"]["message"])


def test_empty_file_is_refused_at_once(client) -> None:
    response = client.post("/v1/uploads", json={"filename": "empty.jsonl", "bytes": 0})
    assert response.status_code == 400 and response.json()["error"]["code"] == "empty_file"
    response = client.post("/v1/files", files={"file": ("empty.jsonl", b"")}, data={"purpose": "fine-tune"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "empty_file"


def test_file_over_the_size_limit_is_413(client) -> None:
    response = client.post("/v1/uploads", json={"filename": "huge.zip", "bytes": 11 * 1024**3})
    assert response.status_code == 413
    assert "over the limit" in response.json()["error"]["message"]


def test_unsupported_type_is_415(client) -> None:
    for call in (
        lambda: client.post("/v1/uploads", json={"filename": "report.pdf", "bytes": 10}),
        lambda: client.post("/v1/files", files={"file": ("report.pdf", b"%PDF-1.7")}, data={"purpose": "fine-tune"}),
    ):
        response = call()
        assert response.status_code == 415, response.text
        assert response.json()["error"]["param"] == "filename"


def test_invalid_requests_are_400_not_500(client) -> None:
    for body in ({}, {"upload_id": "x", "hub": {"id": "a/b"}}, {"hub": {"id": "../../etc"}}, {"upload_id": "a/b"}):
        response = client.post("/v1/datasets", json=body)
        assert response.status_code in (400, 404), (body, response.text)
        assert set(response.json()) == {"error"}


def test_incomplete_upload_cannot_become_a_dataset(client) -> None:
    session = client.post("/v1/uploads", json={"filename": "a.jsonl", "bytes": 100}).json()
    response = client.post(f"/v1/uploads/{session['id']}/complete")
    assert response.status_code == 400 and response.json()["error"]["code"] == "upload_incomplete"
    response = client.post("/v1/datasets", json={"upload_id": session["id"]})
    assert response.status_code == 409


def test_direct_upload_path_for_small_files(client) -> None:
    body = (chat_line("q", "a") + "\n" + chat_line("q", "b") + "\n").encode()
    session = client.post("/v1/uploads", json={"filename": "small.jsonl", "bytes": len(body)}).json()
    sent = client.post(f"/v1/uploads/{session['id']}/content", files={"file": ("small.jsonl", body)})
    assert sent.status_code == 200 and sent.json()["status"] == "completed", sent.text
    response = client.post("/v1/datasets", json={"upload_id": session["id"], "name": "small"})
    dataset = response.json()
    assert dataset["name"] == "small"
    assert json.loads(json.dumps(dataset))["source"] == {"kind": "upload", "upload_id": session["id"]}
