"""Datasets end to end through the gateway: every input kind, samples, stats, download, the round trip."""

from __future__ import annotations

import io
import json

import datasets as hf
import httpx
import pytest
from PIL import Image

from runtune.datasets.images import normalize_image
from runtune.datasets.problems import Location
from tests.datasets.builders import (
    chat_line,
    image_folder_files,
    jpeg,
    preference_line,
    write_tar,
    write_zip,
)
from tests.datasets.client import api, bucket, ingest, upload, wait
from tests.support import sign_up

pytestmark = pytest.mark.platform


def test_image_folder_zip_round_trips_through_load_dataset(client, account, tmp_path) -> None:
    files = image_folder_files(12, ("cat", "dog", "fox"), size=(1200, 900))
    dataset = ingest(client, "pets.zip", write_zip(tmp_path / "pets.zip", files).read_bytes())
    assert dataset["status"] == "ready", dataset
    assert (dataset["task_kind"], dataset["modality"]) == ("classification", "vision")
    assert dataset["labels"] == ["cat", "dog", "fox"]
    assert dataset["label_counts"] == {"cat": 12, "dog": 12, "fox": 12}
    assert sum(dataset["splits"].values()) == 36 and dataset["splits"]["train"] >= 27

    listed = client.get(f"/v1/datasets/{dataset['id']}/download").json()
    assert (listed["object"], listed["has_more"]) == ("list", False)
    shards = listed["data"]
    assert shards and {frozenset(shard) for shard in shards} == {frozenset({"object", "split", "name", "bytes", "url"})}
    for shard in shards:
        (tmp_path / shard["name"]).write_bytes(httpx.get(shard["url"]).content)
    loaded = hf.load_dataset("parquet", data_files={"train": str(tmp_path / "train-*.parquet")}, split="train")
    assert len(loaded) == dataset["splits"]["train"]
    for row in loaded.cast_column("images", hf.Sequence(hf.Image(decode=False))):
        (image,) = row["images"]
        # Byte for byte what the documented re-encoding makes of the original file.
        expected = normalize_image(files[image["path"]], Location("x"), max_side=896, max_pixels=10**8)
        assert image["bytes"] == expected.data
        assert row["label"] == image["path"].split("/")[0]
        assert Image.open(io.BytesIO(image["bytes"])).size == (896, 672)
        assert row["messages"][-1]["content"][0]["text"] == row["label"]


def test_samples_pages_and_stats(client, tmp_path) -> None:
    data = write_tar(tmp_path / "s.tar.gz", image_folder_files(130, ("cat", "dog"))).read_bytes()
    dataset = ingest(client, "s.tar.gz", data, split={"validation": 0.1, "test": 0.0, "seed": 7})
    assert dataset["status"] == "ready", dataset
    pages = [client.get(f"/v1/datasets/{dataset['id']}/samples", params={"limit": 100}).json()]
    while pages[-1]["has_more"]:
        after = pages[-1]["last_id"]
        pages.append(client.get(f"/v1/datasets/{dataset['id']}/samples", params={"limit": 100, "after": after}).json())
    assert [len(page["data"]) for page in pages] == [100, 100, dataset["splits"]["train"] - 200]
    assert len({s["id"] for page in pages for s in page["data"]}) == dataset["splits"]["train"]
    sample = pages[1]["data"][0]
    assert sample["index"] == 100 and sample["images"][0]["thumbnail"].startswith("data:image/jpeg;base64,")
    assert sample["messages"][0]["content"][0] == {"type": "image", "image_index": 0}
    stats = client.get(f"/v1/datasets/{dataset['id']}/stats").json()
    assert stats["rows"] == 260 and stats["image_width"]["max"] == 64
    assert stats["label_counts"]["train"]["cat"] >= 110
    assert "no test examples: evaluation will have nothing to measure on that split" in stats["warnings"]


def test_a_preference_csv_mapped_through_the_api_shows_its_pairs(client, tmp_path) -> None:
    rows = ["photo,ask,better,worse"] + [f"img/{i}.jpg,Colour of {i}?,red,green" for i in range(6)]
    files = {"pairs/data.csv": "\n".join(rows).encode()}
    files |= {f"pairs/img/{i}.jpg": jpeg((200, 0, 0), seed=i) for i in range(6)}
    mapping = {"image": "photo", "user": "{ask}", "chosen": "better", "rejected": "worse"}
    split = {"validation": 0.0, "test": 0.0}
    dataset = ingest(client, "p.zip", write_zip(tmp_path / "p.zip", files).read_bytes(), mapping=mapping, split=split)
    assert dataset["status"] == "ready", dataset
    assert (dataset["task_kind"], dataset["modality"], dataset["splits"]) == ("preference", "vision", {"train": 6})
    sample = client.get(f"/v1/datasets/{dataset['id']}/samples").json()["data"][0]
    assert sample["messages"][-1]["content"] == [{"type": "text", "text": "red"}]
    assert sample["rejected"] == [{"role": "assistant", "content": [{"type": "text", "text": "green"}]}]
    stats = client.get(f"/v1/datasets/{dataset['id']}/stats").json()
    assert (stats["pairs"], stats["chosen_longer_share"]) == (6, 0.0)
    # A bad pair fails the dataset naming the line and the field.
    bad = preference_line("q", "same", "same")
    failed = ingest(client, "bad.jsonl", (preference_line("q", "a", "b") + "\n" + bad + "\n").encode())
    assert failed["status"] == "failed"
    assert failed["error"]["message"] == (
        "bad.jsonl, line 2, field 'non_preferred_output': the preferred and non-preferred answers are identical: "
        "a pair must say which answer is better"
    )


def test_user_splits_from_folders(client, tmp_path) -> None:
    files = {f"train/{k}": v for k, v in image_folder_files(6).items()}
    files |= {f"val/{k}": v for k, v in image_folder_files(2, size=(80, 60)).items()}
    # The same image in two splits would leak the answer: the copy is removed, and said so.
    files["val/cat/copy.jpg"] = files["train/cat/0000.jpg"]
    dataset = ingest(client, "split.zip", write_zip(tmp_path / "split.zip", files).read_bytes())
    assert dataset["splits"] == {"train": 12, "validation": 4}, dataset
    assert "1 duplicate rows (same images, text and label) were removed" in dataset["warnings"]


def test_csv_with_mapping_and_images_inside_the_archive(client, tmp_path) -> None:
    rows = ["file,question,caption,split"] + [
        f"img/{i}.jpg,What colour?,a {'red' if i % 2 else 'green'} square {i},{'test' if i == 0 else 'train'}"
        for i in range(8)
    ]
    files = {"meta/data.csv": "\n".join(rows).encode()}
    files |= {f"meta/img/{i}.jpg": jpeg((200, 0, 0) if i % 2 else (0, 200, 0), seed=i) for i in range(8)}
    mapping = {"image": "file", "user": "{question}", "answer": "caption", "split": "split", "system": "Be brief."}
    dataset = ingest(client, "t.zip", write_zip(tmp_path / "t.zip", files).read_bytes(), mapping=mapping)
    assert dataset["status"] == "ready", dataset
    assert (dataset["task_kind"], dataset["splits"]) == ("generation", {"train": 7, "test": 1})
    sample = client.get(f"/v1/datasets/{dataset['id']}/samples", params={"split": "test"}).json()["data"][0]
    assert [m["role"] for m in sample["messages"]] == ["system", "user", "assistant"]
    assert sample["messages"][2]["content"][0]["text"] == "a green square 0"
    assert sample["images"][0]["path"] == "img/0.jpg"


def test_parquet_with_embedded_images_and_class_labels(client, tmp_path) -> None:
    names = ["ant", "bee"]
    table = hf.Dataset.from_dict(
        {
            "image": [{"bytes": jpeg((i * 20, 0, 0), seed=i), "path": None} for i in range(10)],
            "label": [i % 2 for i in range(10)],
        },
        features=hf.Features({"image": hf.Image(), "label": hf.ClassLabel(names=names)}),
    )
    table.to_parquet(tmp_path / "hf.parquet")
    dataset = ingest(client, "hf.parquet", (tmp_path / "hf.parquet").read_bytes())
    assert dataset["status"] == "ready", dataset
    assert dataset["labels"] == names and dataset["label_counts"] == {"ant": 5, "bee": 5}


def test_json_array_text_only_generation(client) -> None:
    records = [{"prompt": f"Say {i}", "completion": f"{i}"} for i in range(12)]
    dataset = ingest(
        client, "t.json", json.dumps(records).encode(), mapping={"user": "{prompt}", "answer": "completion"}
    )
    assert (dataset["status"], dataset["modality"], dataset["task_kind"]) == ("ready", "text", "generation"), dataset


def test_chat_jsonl_with_duplicates_and_skipped_rows(client) -> None:
    lines = [chat_line("What is it?", "a square", jpeg((9, 9, 9), seed=i)) for i in range(6)]
    lines += [lines[0], "{not json"]
    dataset = ingest(client, "chat.jsonl", "\n".join(lines).encode(), skip_bad_rows=True)
    assert dataset["status"] == "ready", dataset
    stats = client.get(f"/v1/datasets/{dataset['id']}/stats").json()
    assert (stats["rows"], stats["duplicates_removed"], stats["skipped_rows"]) == (6, 1, 1)
    assert any("chat.jsonl, line 8" in warning for warning in dataset["warnings"])


def test_hub_import_without_network_fails_clearly(client, platform, monkeypatch) -> None:
    response = client.post("/v1/datasets", json={"hub": {"id": "ylecun/mnist", "split": "train"}})
    assert response.status_code == 202, response.text
    dataset = wait(client, response.json()["id"])
    assert dataset["status"] == "failed"
    assert dataset["error"]["code"] == "hub_unreachable"
    assert "hf://datasets/ylecun/mnist" in dataset["error"]["message"]
    assert not bucket(platform.emulator_env, monkeypatch).list(f"users/{dataset['id']}")


def test_delete_removes_documents_and_every_blob(client, account, platform, monkeypatch, tmp_path) -> None:
    made = upload(client, "d.zip", write_zip(tmp_path / "d.zip", image_folder_files(3)).read_bytes())
    dataset = wait(client, client.post("/v1/datasets", json={"upload_id": made["id"]}).json()["id"])
    blobs = bucket(platform.emulator_env, monkeypatch)
    assert blobs.list(f"users/{account['uid']}/datasets/{dataset['id']}/")
    assert client.delete(f"/v1/datasets/{dataset['id']}").json()["deleted"] is True
    assert client.get(f"/v1/datasets/{dataset['id']}").status_code == 404
    assert client.get(f"/v1/uploads/{made['id']}").status_code == 404
    assert not blobs.list(f"users/{account['uid']}/datasets/{dataset['id']}/")
    assert not blobs.list(f"uploads/{account['uid']}/{made['id']}/")


def test_list_is_paginated_newest_first(platform) -> None:
    account = sign_up(platform.auth_host)
    with api(platform.gateway_url, account["id_token"]) as http:
        ids = [ingest(http, f"{i}.jsonl", chat_line("q", "a").encode() + b"\n")["id"] for i in range(3)]
        first = http.get("/v1/datasets", params={"limit": 2}).json()
        assert len(first["data"]) == 2 and first["has_more"] is True
        rest = http.get("/v1/datasets", params={"limit": 2, "after": first["last_id"]}).json()
        assert len(rest["data"]) == 1 and rest["has_more"] is False
        listed = first["data"] + rest["data"]
        # Newest first (created_at is in seconds, so ties keep the store's order).
        assert sorted(d["id"] for d in listed) == sorted(ids)
        assert [d["created_at"] for d in listed] == sorted((d["created_at"] for d in listed), reverse=True)
