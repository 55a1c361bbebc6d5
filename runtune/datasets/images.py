"""Safe image handling: every image is opened, checked and decoded before it reaches a shard.

What `normalize_image` does, in order:
1. refuse more than `max_pixels` pixels (read from the header, before any decoding: bombs stop here);
2. keep the original bytes when they already are what step 3-6 would aim for (`_keepable`): a
   baseline 8-bit YCbCr JPEG (not CMYK, greyscale, progressive or arithmetic-coded), upright (no
   EXIF/XMP orientation other than 1), longest side at most `max_side`. Only its metadata
   segments go (EXIF, XMP, ICC, comments: `strip_jpeg_metadata`); the compressed image data is
   copied as is, so it decodes to exactly the pixels the original does, with no second lossy pass.
   It is still decoded in full (at 1/2 to 1/8 scale, JPEG draft mode, for the thumbnail), so a
   truncated or corrupt file fails here, not in the trainer;
otherwise it is re-encoded:
3. apply the EXIF orientation, so the pixels are upright and the tag no longer matters;
4. convert to RGB (transparency is composited over white; palettes, greyscale and CMYK expanded);
5. scale down (never up) so the longest side is at most `max_side` (a JPEG is decoded at the
   smallest 1/2, 1/4 or 1/8 scale that keeps `max_side`, draft mode, and LANCZOS does the rest);
6. encode as baseline JPEG, quality 90, 4:2:0 chroma subsampling, no metadata.
Either way the trainer reads an upright RGB JPEG within the size rule, and the same input always
gives the same bytes, which is what content-hash de-duplication relies on.
"""

from __future__ import annotations

import base64
import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import ExifTags, Image, ImageOps

from runtune.datasets.problems import DataError, Location

# Formats worth decoding; anything else (EPS runs Ghostscript, for one) is refused outright.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
JPEG_QUALITY = 90
THUMBNAIL_SIDE = 160
THUMBNAIL_QUALITY = 70


@dataclass(frozen=True)
class NormalizedImage:
    data: bytes
    width: int
    height: int
    digest: bytes
    thumbnail: bytes
    resized: bool = False
    kept: bool = False  # the original bytes, metadata stripped (step 2)

    def thumbnail_data_url(self) -> str:
        return "data:image/jpeg;base64," + base64.b64encode(self.thumbnail).decode()


def normalize_image(data: bytes, where: Location, *, max_side: int | None, max_pixels: int) -> NormalizedImage:
    """Check one image and keep or re-encode it (see the module docstring); errors name `where`."""
    if not data:
        raise DataError("the image is empty (0 bytes)", where, code="invalid_image")
    image = _open(data, where, max_pixels)
    try:
        kept = strip_jpeg_metadata(data) if _keepable(image, max_side) else None
        if kept is not None:
            width, height = image.size
            image.draft("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            _load(image, where)
            return NormalizedImage(kept, width, height, hashlib.sha256(kept).digest(), _thumbnail(image), kept=True)
        image = _upright_rgb(image, where, max_side)
        resized = max_side is not None and max(image.size) > max_side
        if resized:
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        encoded = _jpeg(image, JPEG_QUALITY)
        width, height = image.size
        thumbnail = _thumbnail(image)
    finally:
        image.close()
    return NormalizedImage(encoded, width, height, hashlib.sha256(encoded).digest(), thumbnail, resized)


def _keepable(image: Image.Image, max_side: int | None) -> bool:
    """Whether the original bytes already meet the rule (step 2); the header says, nothing is decoded."""
    if image.format != "JPEG" or image.mode != "RGB" or image.info.get("progressive"):
        return False  # MPO, greyscale, CMYK and progressive files are re-encoded
    if max_side is not None and max(image.size) > max_side:
        return False
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # an unreadable EXIF block: the re-encode path decides (and drops it)
        return False
    return orientation not in range(2, 9)  # 2-8 flip or turn the pixels; other values are ignored


# JPEG markers (ITU T.81 table B.1): segments kept when metadata is stripped, and the frame types kept.
_SOI, _SOS = 0xD8, 0xDA
_KEPT_SEGMENTS = frozenset({0xC4, 0xDB, 0xDD, 0xE0, 0xEE})  # DHT, DQT, DRI, APP0 (JFIF), APP14 (Adobe colour)
_BASELINE_FRAMES = frozenset({0xC0, 0xC1})  # sequential Huffman; progressive, lossless, arithmetic are not kept


def strip_jpeg_metadata(data: bytes) -> bytes | None:
    """The JPEG without its metadata segments (EXIF, XMP, ICC, comments), the image data copied
    byte for byte; None when it is not one 8-bit, 3-component, baseline frame of well-formed segments."""
    if data[:2] != b"\xff\xd8":
        return None
    out = bytearray(data[:2])
    position, frame_ok = 2, False
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        end = position + 2 + length
        if length < 2 or end > len(data):
            return None
        if marker == _SOS:
            return bytes(out + data[position:]) if frame_ok else None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a frame header (SOFn)
            if marker not in _BASELINE_FRAMES or frame_ok:
                return None
            # The header: precision (1 byte), height, width (2 each), components (1).
            if length < 8 or data[position + 4] != 8 or data[position + 9] != 3:
                return None
            frame_ok = True
            out += data[position:end]
        elif marker in _KEPT_SEGMENTS:
            out += data[position:end]
        elif not (0xE1 <= marker <= 0xEF or marker == 0xFE):  # anything but APPn/COM: unexpected here
            return None
        position = end
    return None


def _open(data: bytes, where: Location, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its own limit and twice that; ours is checked just below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise DataError(f"the image is too large to decode safely ({exc})", where, code="image_too_large") from exc
    except Exception as exc:  # crafted files make Pillow's plugins raise almost anything
        raise DataError(
            f"not a readable image (supported: {', '.join(f.lower() for f in ALLOWED_FORMATS)})",
            where,
            code="invalid_image",
        ) from exc
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise DataError(
            f"the image is {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,} "
            "(a decompression bomb or an oversized scan)",
            where,
            code="image_too_large",
        )
    return image


def _load(image: Image.Image, where: Location) -> None:
    try:
        image.load()
    except Exception as exc:  # as in _open: a corrupt file is the user's problem, not a 500
        raise DataError(f"the image is truncated or corrupt ({exc})", where, code="invalid_image") from exc


def _upright_rgb(image: Image.Image, where: Location, max_side: int | None) -> Image.Image:
    if image.format == "JPEG" and max_side is not None:
        # The JPEG decoder may scale by 1/2, 1/4 or 1/8 while keeping both sides at least
        # `max_side`: far less work for large photos, and LANCZOS does the rest.
        image.draft("RGB", (max_side, max_side))
    _load(image, where)
    try:
        upright = ImageOps.exif_transpose(image) or image
    except Exception as exc:
        raise DataError(f"the image is truncated or corrupt ({exc})", where, code="invalid_image") from exc
    if upright.mode in ("RGBA", "LA") or (upright.mode == "P" and "transparency" in upright.info):
        rgba = upright.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return upright.convert("RGB") if upright.mode != "RGB" else upright


def _thumbnail(image: Image.Image) -> bytes:
    """The preview's thumbnail (longest side 160); `image` is shrunk in place."""
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
    return _jpeg(image if image.mode == "RGB" else image.convert("RGB"), THUMBNAIL_QUALITY)


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality, subsampling="4:2:0", optimize=False)
    return out.getvalue()
