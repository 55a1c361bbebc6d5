"""The keep-original path of `normalize_image`: an acceptable JPEG is stored as it came (metadata
stripped), and everything else is re-encoded, so the trainer always reads an upright RGB JPEG
within the size rule."""

from __future__ import annotations

import io
import zipfile
from functools import lru_cache
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageOps, ImageStat

from runtune.datasets.canonical import decode_shard
from runtune.datasets.images import THUMBNAIL_SIDE, normalize_image, strip_jpeg_metadata
from runtune.datasets.limits import DatasetLimits
from runtune.datasets.pipeline import IngestOptions, Ingestor
from runtune.datasets.problems import DataError, Location
from runtune.schemas.datasets import SplitOptions
from tests.datasets.builders import MemoryBlobStore, png

HERE = Location("x.jpg")
LIMIT = 10**8


@lru_cache
def _texture(size: tuple[int, int]) -> Image.Image:
    return Image.effect_noise(size, 30).convert("RGB")  # random once, then the same picture


def photo(size: tuple[int, int] = (320, 200), mode: str = "RGB", **save: object) -> bytes:
    """A textured picture with a red corner (top left), so orientation and colour are visible."""
    image = _texture(size).copy()
    image.paste((255, 0, 0), (0, 0, size[0] // 4, size[1] // 4))
    out = io.BytesIO()
    image.convert(mode).save(out, format="JPEG", quality=90, **save)
    return out.getvalue()


def with_orientation(orientation: int, **save: object) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return photo(exif=exif.tobytes(), **save)


def upright(data: bytes) -> Image.Image:
    """What the original shows: the pixels after its EXIF orientation, in RGB."""
    return ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")


def trainer_reads(data: bytes) -> Image.Image:
    """As `runtune/training/chat.py` reads a shard's image (no orientation applied there)."""
    return Image.open(io.BytesIO(data)).convert("RGB")


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def test_an_acceptable_jpeg_is_kept_with_the_same_pixels_and_no_metadata() -> None:
    exif = Image.Exif()
    exif[0x0112] = 1
    exif[0x010F] = "Camera maker"
    original = photo(exif=exif.tobytes(), icc_profile=b"\0" * 200, comment=b"a comment")
    image = normalize_image(original, HERE, max_side=896, max_pixels=LIMIT)
    assert image.kept and not image.resized
    assert (image.width, image.height) == (320, 200)
    assert len(image.data) < len(original)
    # The compressed image data is copied, so the pixels are exactly the original's.
    assert trainer_reads(image.data).tobytes() == upright(original).tobytes()
    stored = Image.open(io.BytesIO(image.data))
    assert not stored.getexif() and "icc_profile" not in stored.info and "comment" not in stored.info
    assert max(Image.open(io.BytesIO(image.thumbnail)).size) == THUMBNAIL_SIDE
    assert image.data == normalize_image(original, HERE, max_side=896, max_pixels=LIMIT).data


def test_the_same_photo_with_other_metadata_is_the_same_image() -> None:
    plain = normalize_image(photo(), HERE, max_side=896, max_pixels=LIMIT)
    tagged = normalize_image(photo(comment=b"holiday"), HERE, max_side=896, max_pixels=LIMIT)
    assert plain.kept and tagged.kept and plain.digest == tagged.digest  # so de-duplication sees one


@pytest.mark.parametrize("orientation", range(2, 9))
def test_a_turned_or_flipped_jpeg_is_re_encoded_upright(orientation: int) -> None:
    original = with_orientation(orientation)
    image = normalize_image(original, HERE, max_side=896, max_pixels=LIMIT)
    assert not image.kept
    expected = upright(original)
    stored = trainer_reads(image.data)
    assert stored.size == expected.size == ((200, 320) if orientation >= 5 else (320, 200))
    assert not Image.open(io.BytesIO(image.data)).getexif()  # the tag must not turn it a second time
    assert mean_difference(stored, expected) < 3  # one lossy pass at quality 90


def test_orientation_one_or_an_invalid_value_is_kept_as_is() -> None:
    for orientation in (1, 0, 9):
        original = with_orientation(orientation)
        image = normalize_image(original, HERE, max_side=896, max_pixels=LIMIT)
        assert image.kept, orientation
        assert trainer_reads(image.data).tobytes() == trainer_reads(original).tobytes()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (photo(mode="CMYK"), "CMYK"),
        (photo(mode="L"), "greyscale"),
        (photo(progressive=True), "progressive"),
        (png((10, 200, 30, 255), (64, 48)), "PNG"),
    ],
    ids=["cmyk", "greyscale", "progressive", "png"],
)
def test_other_inputs_are_re_encoded_as_baseline_rgb_jpeg(data: bytes, why: str) -> None:
    image = normalize_image(data, HERE, max_side=896, max_pixels=LIMIT)
    assert not image.kept, why
    stored = Image.open(io.BytesIO(image.data))
    assert stored.format == "JPEG" and stored.mode == "RGB" and not stored.info.get("progressive")
    assert mean_difference(stored.convert("RGB"), upright(data)) < 4


def test_an_oversized_jpeg_is_shrunk_and_one_within_no_limit_is_kept() -> None:
    original = photo((1800, 1000))
    shrunk = normalize_image(original, HERE, max_side=896, max_pixels=LIMIT)
    assert not shrunk.kept and shrunk.resized and (shrunk.width, shrunk.height) == (896, 498)
    expected = upright(original).resize((896, 498), Image.Resampling.LANCZOS)
    assert mean_difference(trainer_reads(shrunk.data), expected) < 4  # draft decoding, then LANCZOS
    assert normalize_image(original, HERE, max_side=None, max_pixels=LIMIT).kept
    assert normalize_image(original, HERE, max_side=1800, max_pixels=LIMIT).kept


def test_the_pixel_limit_and_corruption_still_apply_to_kept_jpegs() -> None:
    original = photo((400, 300))
    with pytest.raises(DataError) as caught:
        normalize_image(original, HERE, max_side=896, max_pixels=400 * 300 - 1)
    assert caught.value.code == "image_too_large"
    with pytest.raises(DataError) as caught:
        normalize_image(original[: len(original) * 2 // 3], HERE, max_side=896, max_pixels=LIMIT)
    assert caught.value.code == "invalid_image"  # decoded in full (at draft scale) before it is kept


def test_stripping_refuses_what_it_does_not_understand() -> None:
    assert strip_jpeg_metadata(b"") is None
    assert strip_jpeg_metadata(png((1, 2, 3, 255))) is None
    assert strip_jpeg_metadata(b"\xff\xd8\x00\x01garbage") is None
    assert strip_jpeg_metadata(photo(progressive=True)) is None
    assert strip_jpeg_metadata(photo(mode="L")) is None
    assert strip_jpeg_metadata(photo()[:200]) is None  # no image data before the end


def test_ingestion_stores_kept_jpegs_and_counts_them(tmp_path: Path) -> None:
    files = {f"{label}/{i}.jpg": photo((96 + i, 64)) for label in ("cat", "dog") for i in range(4)}
    files["cat/turned.jpg"] = with_orientation(6)
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    blobs = MemoryBlobStore()
    work = tmp_path / "work"
    work.mkdir()
    result = Ingestor(blobs, "u", "d", limits=DatasetLimits(), workdir=work).ingest_file(
        archive, "in.zip", IngestOptions(split=SplitOptions(validation=0.0, test=0.0))
    )
    assert result.images_kept == 8 and result.stats["images"] == 9
    assert {"images", "write shards", "total"} <= result.timings.keys()
    stored = {
        example.image_paths[0]: example.images[0]
        for path in result.shards
        for example in decode_shard(blobs.download_bytes(path))
    }
    for name, data in files.items():
        assert trainer_reads(stored[name]).size == upright(data).size
        if name != "cat/turned.jpg":
            assert stored[name] == strip_jpeg_metadata(data)
