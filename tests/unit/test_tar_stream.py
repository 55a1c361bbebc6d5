"""runtune/tar_stream.py: a streamed archive that tarfile reads back, of the length announced."""

from __future__ import annotations

import io
import tarfile

import pytest

from runtune.tar_stream import Entry, archive_size, stream


def _entry(name: str, data: bytes, chunk: int = 7) -> Entry:
    return Entry(name, len(data), lambda: (data[i : i + chunk] for i in range(0, len(data), chunk)))


def test_the_archive_reads_back_with_tarfile_and_has_its_announced_length() -> None:
    files = {"merged/model.safetensors": bytes(range(256)) * 5, "merged/config.json": b"{}", "x/" + "n" * 150: b"long"}
    entries = [_entry(name, data) for name, data in files.items()] + [_entry("empty.txt", b"")]
    body = b"".join(stream(entries, mtime=1_700_000_000))
    assert len(body) == archive_size(entries, mtime=1_700_000_000)
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        names = archive.getnames()
        assert names == [*files, "empty.txt"]
        for name, data in files.items():
            member = archive.extractfile(name)
            assert member is not None and member.read() == data


@pytest.mark.parametrize("claimed", [3, 5])
def test_a_source_of_another_length_stops_the_archive(claimed: int) -> None:
    entry = Entry("a.bin", claimed, lambda: [b"abcd"])
    with pytest.raises(ValueError, match=r"a\.bin"):
        b"".join(stream([entry]))
