"""The ingestion library on its own: archives, images, readers, splits, the pipeline (in memory)."""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from runtune.datasets.archives import extract_archive
from runtune.datasets.canonical import decode_shard
from runtune.datasets.chat_jsonl import read_chat_jsonl
from runtune.datasets.images import normalize_image
from runtune.datasets.limits import DatasetLimits
from runtune.datasets.pipeline import IngestOptions, Ingestor
from runtune.datasets.problems import DataError, Location
from runtune.datasets.resolve import ImageResolver
from runtune.datasets.splits import StratifiedSplitter
from runtune.datasets.tables import check_mapping, open_table
from runtune.schemas.datasets import ColumnMapping, SplitOptions, TaskKind
from tests.datasets.builders import MemoryBlobStore, chat_line, image_folder_files, jpeg, png, write_tar, write_zip

LIMITS = DatasetLimits()
HERE = Location("x.jpg")


def _ingest(tmp_path: Path, name: str, data: bytes, **options) -> tuple[MemoryBlobStore, object]:
    source = tmp_path / name
    source.write_bytes(data)
    blobs = MemoryBlobStore()
    result = Ingestor(blobs, "u", "d", limits=LIMITS, workdir=tmp_path / "work").ingest_file(
        source, name, IngestOptions(**options)
    )
    return blobs, result


# -- archives --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../up.txt", "a/../../up.txt", "/etc/passwd", "C:\\win.txt"])
def test_escaping_zip_entries_are_refused(tmp_path, name) -> None:
    archive = write_zip(tmp_path / "a.zip", {"ok/1.txt": b"1", name: b"x"})
    with pytest.raises(DataError) as caught:
        extract_archive(archive, tmp_path / "out", "a.zip", LIMITS)
    assert caught.value.code == "unsafe_archive" and caught.value.where.field == name
    assert not (tmp_path / "up.txt").exists()


def test_tar_links_are_refused(tmp_path) -> None:
    archive = tmp_path / "l.tar"
    with tarfile.open(archive, "w") as tar:
        link = tarfile.TarInfo("cat/evil.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(DataError, match="is a link"):
        extract_archive(archive, tmp_path / "out", "l.tar", LIMITS)


def test_expansion_limits_count_written_bytes(tmp_path) -> None:
    bomb = write_zip(tmp_path / "b.zip", {"z.txt": b"\0" * (8 << 20)})
    with pytest.raises(DataError, match="expands more than 100x"):
        extract_archive(bomb, tmp_path / "out", "b.zip", LIMITS)
    small = DatasetLimits(max_extracted_bytes=1000, max_expansion_ratio=10_000)
    with pytest.raises(DataError, match="more than 1,000 bytes"):
        extract_archive(write_tar(tmp_path / "t.tgz", {"a": b"1" * 2000}), tmp_path / "o2", "t.tgz", small)
    with pytest.raises(DataError, match="more than 2 entries"):
        extract_archive(
            write_zip(tmp_path / "e.zip", {"a": b"", "b": b"", "c": b""}),
            tmp_path / "o3",
            "e.zip",
            DatasetLimits(max_archive_entries=2),
        )


def test_not_an_archive(tmp_path) -> None:
    (tmp_path / "x.zip").write_bytes(b"plain text")
    with pytest.raises(DataError, match="not a readable zip or tar"):
        extract_archive(tmp_path / "x.zip", tmp_path / "out", "x.zip", LIMITS)


# -- images ----------------------------------------------------------------------------------------


def test_normalisation_is_upright_rgb_resized_and_deterministic() -> None:
    image = Image.new("RGB", (2000, 1000), (10, 20, 30))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif.tobytes())
    first = normalize_image(out.getvalue(), HERE, max_side=896, max_pixels=10**8)
    assert (first.width, first.height) == (448, 896) and first.resized
    assert Image.open(io.BytesIO(first.data)).format == "JPEG"
    assert first.data == normalize_image(out.getvalue(), HERE, max_side=896, max_pixels=10**8).data
    rgba = normalize_image(png((255, 0, 0, 0)), HERE, max_side=None, max_pixels=10**8)
    assert Image.open(io.BytesIO(rgba.data)).getpixel((5, 5)) == (255, 255, 255)  # transparent over white


@pytest.mark.parametrize(
    ("data", "code"),
    [(b"", "invalid_image"), (b"GIF89a nope", "invalid_image"), (jpeg((1, 1, 1), (200, 200))[:300], "invalid_image")],
    ids=["empty", "garbage", "truncated"],
)
def test_unreadable_images_name_the_file(data, code) -> None:
    with pytest.raises(DataError) as caught:
        normalize_image(data, HERE, max_side=896, max_pixels=10**8)
    assert caught.value.code == code and caught.value.message.startswith("x.jpg: ")


def test_pixel_limit_is_checked_before_decoding() -> None:
    out = io.BytesIO()
    Image.new("1", (5000, 5000)).save(out, format="PNG")
    with pytest.raises(DataError, match="5000x5000 = 25,000,000 pixels"):
        normalize_image(out.getvalue(), HERE, max_side=896, max_pixels=1_000_000)


# -- readers ---------------------------------------------------------------------------------------


def _rows(path: Path, **kw):
    return list(
        read_chat_jsonl(
            path,
            path.name,
            ImageResolver(None, max_bytes=10**7),
            labels_from_answer=False,
            max_line_bytes=LIMITS.max_line_bytes,
            **kw,
        )
    )


def test_chat_jsonl_problems_carry_line_and_field(tmp_path) -> None:
    path = tmp_path / "c.jsonl"
    lines = [
        chat_line("q", "a", jpeg((1, 2, 3))),
        "",
        "{broken",
        json.dumps({"messages": [{"role": "user", "content": "no answer"}]}),
        chat_line("q", "a", url="http://169.254.169.254/latest"),
        chat_line("q", "a", url="data:image/png;base64,@@@"),
    ]
    path.write_bytes("\n".join(lines).encode() + b"\n\xff\xfe\n")
    rows = _rows(path)
    assert not isinstance(rows[0], DataError) and len(rows[0].images) == 1
    problems = [(r.where.row, r.code) for r in rows[1:]]
    assert problems == [
        (3, "invalid_json"),
        (4, "no_answer"),
        (5, "image_outside_upload"),
        (6, "invalid_image"),
        (7, "invalid_encoding"),
    ]
    assert rows[3].where.field == "messages[0].content[0].image_url.url"


def test_empty_jsonl_fails(tmp_path) -> None:
    (tmp_path / "e.jsonl").write_bytes(b"\n\n")
    with pytest.raises(DataError, match="empty"):
        _rows(tmp_path / "e.jsonl")


def test_mapping_names_missing_columns(tmp_path) -> None:
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    table = open_table(tmp_path / "t.csv", "t.csv", LIMITS)
    with pytest.raises(DataError, match=r"column 'c' \(mapping.user\) does not exist; the columns are: a, b"):
        check_mapping(ColumnMapping(user="{c}", answer="a"), table.columns, "t.csv")


def test_relative_image_paths_stay_inside_the_archive(tmp_path) -> None:
    (tmp_path / "root" / "img").mkdir(parents=True)
    (tmp_path / "root" / "img" / "a.jpg").write_bytes(b"jpeg")
    (tmp_path / "secret.jpg").write_bytes(b"secret")
    resolver = ImageResolver(tmp_path / "root", max_bytes=100)
    assert resolver.resolve("img/a.jpg", HERE).data == b"jpeg"
    for bad, code in [
        ("../secret.jpg", "image_outside_upload"),
        ("/etc/hosts", "image_outside_upload"),
        ("file:///etc/hosts", "image_outside_upload"),
        ("gs://bucket/x.jpg", "image_outside_upload"),
        ("img/missing.jpg", "image_not_found"),
    ]:
        with pytest.raises(DataError) as caught:
            resolver.resolve(bad, HERE)
        assert caught.value.code == code, bad


# -- splits ----------------------------------------------------------------------------------------


def test_stratified_split_is_seeded_and_proportional() -> None:
    labels = ["a"] * 100 + ["b"] * 30 + ["c"] * 3
    splitter, again = StratifiedSplitter(0.1, 0.1, seed=1), StratifiedSplitter(0.1, 0.1, seed=1)
    first = [splitter.assign(label) for label in labels]
    assert [again.assign(label) for label in labels] == first
    per_label = Counter(zip(labels, first, strict=True))
    assert (per_label["a", "train"], per_label["a", "validation"], per_label["a", "test"]) == (80, 10, 10)
    assert (per_label["b", "train"], per_label["b", "validation"], per_label["b", "test"]) == (24, 3, 3)
    assert first[130] == "train"  # the first example of a rare class trains


# -- the pipeline ----------------------------------------------------------------------------------


def test_pipeline_writes_canonical_shards_and_previews(tmp_path) -> None:
    data = write_zip(tmp_path / "p.zip", image_folder_files(10, ("cat", "dog", "fox"))).read_bytes()
    blobs, result = _ingest(tmp_path, "p.zip", data, split=SplitOptions(validation=0.2, test=0.0))
    assert result.task_kind is TaskKind.classification and result.splits == {"train": 24, "validation": 6}
    train = list(decode_shard(blobs.download_bytes("users/u/datasets/d/train-00000.parquet")))
    assert len(train) == 24 and {example.label for example in train} == {"cat", "dog", "fox"}
    assert train[0].messages[0]["content"][0] == {"type": "image"}
    assert "users/u/datasets/d/preview/validation-00000.jsonl" in blobs.objects
    assert not any("test" in path for path in blobs.objects)


def test_single_label_and_all_bad_rows_fail(tmp_path) -> None:
    with pytest.raises(DataError) as caught:
        _ingest(tmp_path, "one.zip", write_zip(tmp_path / "o.zip", image_folder_files(3, ("cat",))).read_bytes())
    assert caught.value.code == "single_label"
    with pytest.raises(DataError, match="no usable examples"):
        _ingest(tmp_path, "bad.jsonl", b"{x\n{y\n", skip_bad_rows=True)


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_malformed_json_names_the_column_on_its_own_line(tmp_path, newline: str) -> None:
    # Line 2 stops after its 15th character; the line break must not move the error to line 3.
    path = tmp_path / "c.jsonl"
    path.write_bytes(newline.join([chat_line("q", "a"), '{"messages": [', '{"a" 1}', ""]).encode())
    errors = [row for row in _rows(path) if isinstance(row, DataError)]
    assert [(e.where.row, e.message) for e in errors] == [
        (2, "c.jsonl, line 2: malformed JSON (Expecting value at column 15)"),
        (3, "c.jsonl, line 3: malformed JSON (Expecting ':' delimiter at column 6)"),
    ]


def test_bad_rows_fail_unless_skipping_was_asked(tmp_path) -> None:
    body = (chat_line("q", "a") + "\n{oops\n" + chat_line("q", "b") + "\n").encode()
    with pytest.raises(DataError, match=r"c\.jsonl, line 2: malformed JSON"):
        _ingest(tmp_path, "c.jsonl", body)
    _, result = _ingest(tmp_path, "c.jsonl", body, skip_bad_rows=True)
    assert result.stats["skipped_rows"] == 1 and result.stats["rows"] == 2
    assert any("1 bad rows were skipped" in warning for warning in result.warnings)


def test_hugging_face_class_label_names_are_used(tmp_path) -> None:
    import datasets as hf

    table = hf.Dataset.from_dict(
        {"text": [f"t{i}" for i in range(6)], "label": [0, 1, 0, 1, 0, 1]},
        features=hf.Features({"text": hf.Value("string"), "label": hf.ClassLabel(names=["neg", "pos"])}),
    )
    table.to_parquet(tmp_path / "s.parquet")
    _, result = _ingest(tmp_path, "s.parquet", (tmp_path / "s.parquet").read_bytes())
    assert result.labels == ["neg", "pos"] and result.modality == "text"
