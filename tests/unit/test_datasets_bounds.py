"""Bounded parsing of untrusted dataset files (issue 13): every bomb fails as a data error that names
the file (and the row, line, entry or field), within a memory bound, never as a crash."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from runtune.datasets.archives import extract_archive
from runtune.datasets.hub import (
    HubSnapshot,
    check_card,
    check_pattern,
    check_resolved_files,
    hub_rows,
    open_hub_dataset,
)
from runtune.datasets.limits import DatasetLimits
from runtune.datasets.pipeline import BoundedSeen, IngestOptions, Ingestor
from runtune.datasets.problems import DataError
from runtune.schemas.datasets import ColumnMapping, HubSource
from runtune.settings import REPO_ROOT
from tests.datasets.bombs import (
    chat_jsonl_with_line,
    corrupt_deflate_zip,
    csv_with_field,
    deep_json_line,
    encrypted_zip,
    parquet_bomb,
    tar_header_bomb,
    zip_with_directory,
)
from tests.datasets.builders import MemoryBlobStore, chat_line, image_folder_files

LIMITS = DatasetLimits()
# What the ingesting process may grow by while refusing a 256 MiB long-name header: its peak
# without the bound is above 256 MiB (the payload is read whole, and copied once on the way).
TAR_BOMB_PAYLOAD = 256 << 20
PEAK_GROWTH_BOUND = 64 << 20

_MEASURE = """
import json, resource, sys
from pathlib import Path
from runtune.datasets.archives import extract_archive
from runtune.datasets.limits import DatasetLimits
from runtune.datasets.problems import DataError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    extract_archive(Path(sys.argv[1]), Path(sys.argv[2]), "bomb.tar.gz", DatasetLimits())
    outcome = {"code": None}
except DataError as exc:
    outcome = {"code": exc.code, "message": str(exc)}
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({**outcome, "growth_kib": after - before}))
"""


def _ingest(tmp_path: Path, name: str, data: bytes, limits: DatasetLimits = LIMITS, **options):
    source = tmp_path / name
    source.write_bytes(data)
    if "mapping" in options:
        options["mapping"] = ColumnMapping(**options["mapping"])
    ingestor = Ingestor(MemoryBlobStore(), "u", "d", limits=limits, workdir=tmp_path / "work")
    return ingestor.ingest_file(source, name, IngestOptions(**options))


def _refused(tmp_path: Path, name: str, data: bytes, limits: DatasetLimits = LIMITS, **options) -> DataError:
    with pytest.raises(DataError) as caught:
        _ingest(tmp_path, name, data, limits, **options)
    return caught.value


# -- tar -------------------------------------------------------------------------------------------


def test_tar_long_name_bomb_is_refused_within_a_memory_bound(tmp_path) -> None:
    bomb = tar_header_bomb(tmp_path / "bomb.tar.gz", TAR_BOMB_PAYLOAD)
    assert bomb.stat().st_size < 2 << 20  # about 1.2 MB on disk
    run = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(bomb), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
        check=True,
    )
    outcome = json.loads(run.stdout)
    assert outcome["code"] == "archive_too_large", outcome
    assert "bomb.tar.gz: the archive has a long name header of 268,435,456 bytes" in outcome["message"]
    assert outcome["growth_kib"] * 1024 < PEAK_GROWTH_BOUND, outcome


@pytest.mark.parametrize(
    ("kind", "word"),
    [(tarfile.GNUTYPE_LONGNAME, "long name"), (tarfile.GNUTYPE_LONGLINK, "long name"), (tarfile.XHDTYPE, "pax")],
)
def test_tar_metadata_headers_over_the_limit_are_refused(tmp_path, kind, word) -> None:
    bomb = tar_header_bomb(tmp_path / "h.tgz", 4096, kind)
    with pytest.raises(DataError, match=f"h.tgz: the archive has a {word} header of 4,096 bytes") as caught:
        extract_archive(bomb, tmp_path / "out", "h.tgz", DatasetLimits(max_tar_header_bytes=1024))
    assert caught.value.code == "archive_too_large"


def test_sparse_tar_members_are_refused(tmp_path) -> None:
    archive = tmp_path / "s.tar"
    info = tarfile.TarInfo("cat/sparse.jpg")
    info.type = tarfile.GNUTYPE_SPARSE
    archive.write_bytes(info.tobuf(tarfile.GNU_FORMAT) + b"\0" * 1024)
    with pytest.raises(DataError, match="sparse file") as caught:
        extract_archive(archive, tmp_path / "out", "s.tar", LIMITS)
    assert caught.value.where.field == "cat/sparse.jpg"


# -- zip -------------------------------------------------------------------------------------------


def test_zip_directory_is_checked_before_it_is_parsed(tmp_path) -> None:
    files = image_folder_files(2)
    declared = tmp_path / "declared.zip"
    declared.write_bytes(zip_with_directory(files, entries=65_000))
    with pytest.raises(DataError, match=r"more than 1,000 entries \(its directory declares 65,000\)"):
        extract_archive(declared, tmp_path / "o1", "declared.zip", DatasetLimits(max_archive_entries=1000))
    huge = tmp_path / "huge.zip"
    huge.write_bytes(zip_with_directory(files, size=0xFFFF_FFF0))
    with pytest.raises(DataError, match="directory is 4,294,967,280 bytes, over the limit") as caught:
        extract_archive(huge, tmp_path / "o2", "huge.zip", LIMITS)
    assert caught.value.code == "archive_too_large"
    # A directory that understates its entries is counted by walking it.
    lying = tmp_path / "lying.zip"
    lying.write_bytes(zip_with_directory(files, entries=1))
    with pytest.raises(DataError, match="more than 2 entries"):
        extract_archive(lying, tmp_path / "o3", "lying.zip", DatasetLimits(max_archive_entries=2))


def test_encrypted_and_corrupt_zip_entries_are_data_errors_naming_the_entry(tmp_path) -> None:
    encrypted = _refused(tmp_path, "locked.zip", encrypted_zip(image_folder_files(2)))
    assert encrypted.code == "invalid_archive" and "password-protected" in str(encrypted)
    assert str(encrypted).startswith("locked.zip, field 'cat/")
    corrupt = _refused(tmp_path, "broken.zip", corrupt_deflate_zip("cat/notes.txt", b"hello " * 50_000))
    assert corrupt.code == "invalid_archive"
    assert str(corrupt).startswith("broken.zip, field 'cat/notes.txt': archive entry 'cat/notes.txt' is corrupt")


# -- JSON, JSONL, CSV ------------------------------------------------------------------------------


def test_deeply_nested_json_is_a_data_error_naming_the_line(tmp_path) -> None:
    error = _refused(tmp_path, "deep.jsonl", chat_jsonl_with_line(deep_json_line(200_000)))
    assert (error.code, str(error)) == ("invalid_json", "deep.jsonl, line 2: the JSON is nested too deeply")
    table = _refused(
        tmp_path,
        "deep-table.jsonl",
        chat_jsonl_with_line(deep_json_line(200_000)),
        mapping={"user": "{messages}", "answer": "messages"},
    )
    assert table.code == "invalid_json" and "line 2" in str(table)
    array = _refused(tmp_path, "deep.json", ("[" * 200_000 + "]" * 200_000).encode())
    assert (array.code, str(array)) == ("invalid_json", "deep.json: the JSON is nested too deeply")


def test_long_jsonl_line_is_a_bad_row_read_in_bounded_chunks(tmp_path) -> None:
    limits = DatasetLimits(max_line_bytes=4096)
    long_line = chat_line("q" * 10_000, "a")
    error = _refused(tmp_path, "long.jsonl", chat_jsonl_with_line(long_line), limits)
    assert (error.code, str(error)) == ("line_too_long", "long.jsonl, line 2: the line is longer than 4,096 bytes")
    # Skipped as asked, the next line is read from its start (line numbers stay right).
    result = _ingest(tmp_path, "skip.jsonl", chat_jsonl_with_line(long_line), limits, skip_bad_rows=True)
    assert result.stats["skipped_rows"] == 1 and sum(result.splits.values()) == 2
    assert any("skip.jsonl, line 2" in warning for warning in result.warnings)


def test_csv_field_over_128_kib_names_row_and_column(tmp_path) -> None:
    mapping = {"user": "{question}", "answer": "answer"}
    error = _refused(tmp_path, "t.csv", csv_with_field(200 * 1024), mapping=mapping)
    assert error.code == "field_too_long"
    assert str(error) == "t.csv, row 2, field 'answer': the field is longer than 131,072 characters"
    quoted = ('question,answer\nhi,there\n"' + "y" * (200 * 1024) + '",b\n').encode()
    error = _refused(tmp_path, "q.csv", quoted, mapping=mapping)
    assert str(error) == "q.csv, row 2, field 'question': the field is longer than 131,072 characters"
    assert _ingest(tmp_path, "ok.csv", csv_with_field(100 * 1024), mapping=mapping).splits


def test_csv_record_is_bounded_in_bytes(tmp_path) -> None:
    limits = DatasetLimits(max_csv_row_bytes=1024)
    many = ("question,answer\nhi,there\n" + "a," * 2000 + "b\n").encode()
    error = _refused(tmp_path, "wide.csv", many, limits, mapping={"user": "{question}", "answer": "answer"})
    assert (error.code, str(error)) == ("row_too_long", "wide.csv, row 2: the row is longer than 1,024 bytes")


def test_an_image_struct_whose_bytes_are_a_number_is_not_allocated(tmp_path) -> None:
    lines = [
        json.dumps({"image": {"bytes": 10**12}, "label": "cat"}),
        json.dumps({"image": {"bytes": "x"}, "label": "dog"}),
    ]
    error = _refused(tmp_path, "t.jsonl", "\n".join(lines).encode(), mapping={"image": "image", "label": "label"})
    assert str(error) == "t.jsonl, line 1, field 'image': the image struct's 'bytes' is not binary data"
    error = _refused(tmp_path, "u.jsonl", "\n".join(lines[1:]).encode(), mapping={"image": "image", "label": "label"})
    assert error.code == "invalid_image" and error.where.row == 1


# -- Parquet ---------------------------------------------------------------------------------------


def test_parquet_bomb_is_refused_from_its_footer(tmp_path) -> None:
    bomb = parquet_bomb(tmp_path / "bomb.parquet")
    assert bomb.stat().st_size < 64 * 1024
    mapping = {"user": "{question}", "answer": "answer"}
    error = _refused(tmp_path, "bomb.parquet", bomb.read_bytes(), mapping=mapping)
    assert error.code == "file_too_large"
    assert str(error).startswith("bomb.parquet, field 'row group 0': column 'question' expands more than 100x")
    big = DatasetLimits(max_parquet_row_group_bytes=1 << 20, max_expansion_ratio=1e9)
    error = _refused(tmp_path, "big.parquet", bomb.read_bytes(), big, mapping=mapping)
    assert "decompresses to 16,777," in str(error) and "over the limit of 1,048,576" in str(error)


# -- de-duplication --------------------------------------------------------------------------------


def test_deduplication_memory_is_capped() -> None:
    seen = BoundedSeen(cap=2)
    assert [seen.add(key) for key in (1, 2, 1, 3, 2, 3)] == [True, True, False, True, False, True]
    assert seen.unchecked == 2
    assert seen.warnings() == [
        "duplicates were looked for among the first 2 distinct rows only; 2 later rows were kept unchecked"
    ]
    assert BoundedSeen(cap=5).warnings() == []


# -- Hub cards -------------------------------------------------------------------------------------

OUTSIDE = [
    "/etc/passwd",
    "../x.csv",
    "data/../../x.csv",
    "https://evil/x.csv",
    "file:///etc/passwd",
    "hf://datasets/other/repo/x.csv",
    "hf://datasets/me/set-other/x.csv",
    "zip://*.csv::https://evil/x.zip",
    "~/.config/runtune/secrets",
    "C:\\x.csv",
    "data/%2e%2e/x.csv",
]


@pytest.mark.parametrize("pattern", OUTSIDE)
def test_patterns_outside_the_repository_are_refused(pattern) -> None:
    with pytest.raises(DataError) as caught:
        check_pattern(pattern, "me/set")
    assert caught.value.code == "hub_outside_repository"
    assert "outside the repository: only files of hf://datasets/me/set are read" in str(caught.value)


@pytest.mark.parametrize("pattern", ["data/train-*.parquet", "**/*.csv", "hf://datasets/me/set@main/a/b.jsonl"])
def test_patterns_inside_the_repository_pass(pattern) -> None:
    check_pattern(pattern, "me/set")


def test_every_form_of_data_files_is_checked() -> None:
    for data_files in (
        "/etc/passwd",
        ["ok.csv", "/etc/passwd"],
        [{"split": "train", "path": "ok.csv"}, {"split": "test", "path": ["ok2.csv", "https://evil/x.csv"]}],
        {"train": "../x.csv"},
    ):
        with pytest.raises(DataError, match="outside the repository"):
            check_card({"configs": [{"config_name": "default", "data_files": data_files}]}, "me/set")
    with pytest.raises(DataError, match=r"README.md configs\[1\].data_dir"):
        check_card({"configs": [{"config_name": "a"}, {"config_name": "b", "data_dir": "/"}]}, "me/set")
    check_card({"configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "d/*"}]}]}, "me/set")


@pytest.mark.parametrize("pattern", ["/etc/passwd", "../x", "https://evil/x.csv", "hf://datasets/other/repo/x.csv"])
def test_an_import_whose_card_names_files_outside_fails_before_anything_is_read(pattern) -> None:
    card = {"configs": [{"config_name": "default", "data_files": [{"split": "train", "path": pattern}]}]}

    def lookup(source: HubSource, token: str | None) -> HubSnapshot:
        return HubSnapshot("0" * 40, card, {"README.md": 100})

    # The snapshot is the only Hub call before the check: nothing is resolved, listed or fetched.
    with pytest.raises(DataError) as caught:
        open_hub_dataset(HubSource(id="me/set", split="train"), None, LIMITS, lookup)
    assert caught.value.code == "hub_outside_repository"
    assert str(caught.value).startswith(
        f"hf://datasets/me/set, field 'README.md configs[0].data_files': the card names '{pattern}'"
    )


def test_resolved_files_must_be_of_this_commit_and_bounded_in_bytes() -> None:
    sha = "a" * 40
    snapshot = HubSnapshot(sha, {}, {"data/train.csv": 600, "data/test.csv": 500})
    inside = {
        "train": [f"hf://datasets/me/set@{sha}/data/train.csv"],
        "test": [f"hf://datasets/me/set@{sha}/data/test.csv"],
    }
    check_resolved_files(inside, "me/set", snapshot, max_bytes=1100)
    with pytest.raises(DataError, match="1,100 bytes, over the limit of 1,000") as caught:
        check_resolved_files(inside, "me/set", snapshot, max_bytes=1000)
    assert caught.value.code == "hub_too_large"
    for url in (
        "/etc/passwd",
        f"hf://datasets/me/set@{sha}/../other/x.csv",
        "hf://datasets/me/set@main/data/train.csv",
    ):
        with pytest.raises(DataError, match="not a file of this commit"):
            check_resolved_files({"train": [url]}, "me/set", snapshot, max_bytes=10**9)


def test_hub_reading_stops_at_its_deadline() -> None:
    rows = hub_rows({"train": iter([{"q": "a"}])}, HubSource(id="me/set", split="train"), deadline=0.0, max_seconds=5)
    with pytest.raises(DataError, match="took more than 5s") as caught:
        next(rows)
    assert caught.value.code == "hub_timeout" and str(caught.value).startswith("hf://datasets/me/set, row 1:")
