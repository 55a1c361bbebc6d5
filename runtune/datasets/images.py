"""Safe image handling: every image is decoded, checked and re-encoded before it reaches a shard.

The documented re-encoding (what `normalize_image` does, in order):
1. refuse more than `max_pixels` pixels (read from the header, before any decoding: bombs stop here);
2. apply the EXIF orientation, so the pixels are upright and the tag no longer matters;
3. convert to RGB (transparency is composited over white; palettes, greyscale and CMYK expanded);
4. scale down (never up) so the longest side is at most `max_side` (LANCZOS);
5. encode as baseline JPEG, quality 90, 4:2:0 chroma subsampling, no metadata.
The same input always gives the same bytes, which is what content-hash de-duplication relies on.
"""

from __future__ import annotations

import base64
import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

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

    def thumbnail_data_url(self) -> str:
        return "data:image/jpeg;base64," + base64.b64encode(self.thumbnail).decode()


def normalize_image(data: bytes, where: Location, *, max_side: int | None, max_pixels: int) -> NormalizedImage:
    """Decode, check and re-encode one image (see the module docstring); errors name `where`."""
    if not data:
        raise DataError("the image is empty (0 bytes)", where, code="invalid_image")
    image = _open(data, where, max_pixels)
    try:
        image = _upright_rgb(image, where, max_side)
        resized = max_side is not None and max(image.size) > max_side
        if resized:
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        encoded = _jpeg(image, JPEG_QUALITY)
        width, height = image.size
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
        thumbnail = _jpeg(image, THUMBNAIL_QUALITY)
    finally:
        image.close()
    return NormalizedImage(encoded, width, height, hashlib.sha256(encoded).digest(), thumbnail, resized)


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


def _upright_rgb(image: Image.Image, where: Location, max_side: int | None) -> Image.Image:
    try:
        if image.format == "JPEG" and max_side is not None:
            # The JPEG decoder may scale by 1/2, 1/4 or 1/8 while keeping both sides at least
            # `max_side`: far less work for large photos, and LANCZOS does the rest.
            image.draft("RGB", (max_side, max_side))
        image.load()
        upright = ImageOps.exif_transpose(image) or image
    except Exception as exc:  # as in _open: a corrupt file is the user's problem, not a 500
        raise DataError(f"the image is truncated or corrupt ({exc})", where, code="invalid_image") from exc
    if upright.mode in ("RGBA", "LA") or (upright.mode == "P" and "transparency" in upright.info):
        rgba = upright.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return upright.convert("RGB") if upright.mode != "RGB" else upright


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality, subsampling="4:2:0", optimize=False)
    return out.getvalue()
