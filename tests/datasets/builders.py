"""Generated inputs for the dataset tests and the bench: images, archives, tables, a blob store double."""

from __future__ import annotations

import base64
import io
import json
import random
import tarfile
import zipfile
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from runtune.errors import NotFound
from runtune.ports.blobs import BlobInfo


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (64, 48), *, seed: int = 0, quality: int = 90) -> bytes:
    """A JPEG with a little texture, so different seeds give different bytes."""
    image = Image.new("RGB", size, color)
    pixels = image.load()
    # The seed's bits as black and white 4x4 blocks along the top: distinct seeds, distinct images.
    for bit in range(min(16, size[0] // 4)):
        value = 255 if seed >> bit & 1 else 0
        for dx in range(4):
            for dy in range(4):
                pixels[bit * 4 + dx, dy] = (value, value, value)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def png(color: tuple[int, int, int, int], size: tuple[int, int] = (32, 32)) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", size, color).save(out, format="PNG")
    return out.getvalue()


def data_url(data: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


COLORS = {"cat": (200, 40, 40), "dog": (40, 200, 40), "fox": (40, 40, 200)}


def image_folder_files(per_label: int, labels: Iterable[str] = ("cat", "dog"), size=(64, 48)) -> dict[str, bytes]:
    files = {}
    for li, label in enumerate(labels):
        color = COLORS.get(label, (li * 60 % 256, 120, 200))
        for i in range(per_label):
            files[f"{label}/{i:04d}.jpg"] = jpeg(color, size, seed=i + 1000 * li)
    return files


def write_zip(path: Path, files: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def write_tar(path: Path, files: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def chat_line(question: str, answer: str, image: bytes | None = None, *, url: str | None = None) -> str:
    content: list[dict] = []
    if image is not None or url is not None:
        content.append({"type": "image_url", "image_url": {"url": url or data_url(image or b"")}})
    content.append({"type": "text", "text": question})
    return json.dumps({"messages": [{"role": "user", "content": content}, {"role": "assistant", "content": answer}]})


class MemoryBlobStore:
    """An in-memory BlobStore for unit tests of the library (the e2e tests use the GCS emulator)."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str | None]] = {}

    def upload_bytes(self, path: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        self.objects[path] = (bytes(data), content_type)

    def upload_stream(self, path: str, stream: BinaryIO, *, content_type: str = "application/octet-stream") -> None:
        self.objects[path] = (stream.read(), content_type)

    def upload_file(self, path: str, local_path: Path, *, content_type: str | None = None) -> None:
        self.objects[path] = (local_path.read_bytes(), content_type)

    def download_bytes(self, path: str) -> bytes:
        if path not in self.objects:
            raise NotFound(f"object '{path}' does not exist")
        return self.objects[path][0]

    def download_file(self, path: str, local_path: Path) -> None:
        local_path.write_bytes(self.download_bytes(path))

    def iter_chunks(self, path: str, chunk_size: int = 1 << 20):
        data = self.download_bytes(path)
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]

    def info(self, path: str) -> BlobInfo | None:
        if path not in self.objects:
            return None
        data, content_type = self.objects[path]
        return BlobInfo(path, len(data), content_type)

    def list(self, prefix: str) -> list[BlobInfo]:
        return [BlobInfo(p, len(d), t) for p, (d, t) in sorted(self.objects.items()) if p.startswith(prefix)]

    def delete(self, path: str) -> None:
        self.objects.pop(path, None)

    def delete_prefix(self, prefix: str) -> int:
        doomed = [p for p in self.objects if p.startswith(prefix)]
        for p in doomed:
            del self.objects[p]
        return len(doomed)

    def signed_download_url(self, path: str, *, expires: timedelta, filename: str | None = None) -> str:
        return f"memory://{path}"

    def signed_upload_url(self, path: str, *, content_type: str, expires: timedelta) -> str:
        return f"memory://{path}"

    def resumable_upload_url(self, path: str, *, content_type: str, size: int | None, origin: str | None) -> str:
        return f"memory://{path}"


def noisy_jpeg(seed: int, size: tuple[int, int] = (300, 200)) -> bytes:
    """A photo-like JPEG (noise does not compress): for tests that need real upload sizes."""
    image = Image.effect_noise(size, 60 + seed % 40).convert("RGB")
    image.paste((seed % 256, seed // 256 % 256, 0), (0, 0, 8, 8))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


SOLID_COLOURS = {"red": (220, 30, 30), "green": (30, 190, 40), "blue": (30, 50, 220)}
COLOUR_PROMPTS = ("What colour is this image? Answer with one word.", "Name the colour of this picture in one word.")


def _jittered_squares(per_colour: int, rng: random.Random) -> Iterator[tuple[str, str, bytes]]:
    """(prompt, colour name, 32x32 PNG) for `per_colour` squares of each solid colour in turn, each
    shade jittered by `rng`; drawn lazily, so a caller may draw from `rng` between two squares."""
    for i in range(per_colour):
        for name, rgb in SOLID_COLOURS.items():
            shade = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in rgb)
            out = io.BytesIO()
            Image.new("RGB", (32, 32), shade).save(out, format="PNG")  # type: ignore[arg-type]
            yield COLOUR_PROMPTS[i % len(COLOUR_PROMPTS)], name, out.getvalue()


def colour_chat_jsonl(per_colour: int = 12, seed: int = 0) -> bytes:
    """An OpenAI chat JSONL of solid red, green and blue squares answered in one word (a closed set
    of three answers), each shade jittered (seeded) so that no two examples are the same image."""
    lines = []
    for prompt, name, png in _jittered_squares(per_colour, random.Random(seed)):
        content = [
            {"type": "image_url", "image_url": {"url": data_url(png, "image/png")}},
            {"type": "text", "text": prompt},
        ]
        messages = [{"role": "user", "content": content}, {"role": "assistant", "content": name}]
        lines.append(json.dumps({"messages": messages}))
    return ("\n".join(lines) + "\n").encode()


def preference_line(
    question: str, chosen: str | None, rejected: str | None, image: bytes | None = None, *, url: str | None = None
) -> str:
    """One line of OpenAI's preference JSONL; an answer given as None is left out of the line."""
    content: list[dict] = []
    if image is not None or url is not None:
        content.append({"type": "image_url", "image_url": {"url": url or data_url(image or b"")}})
    content.append({"type": "text", "text": question})
    record: dict = {"input": {"messages": [{"role": "user", "content": content}]}}
    if chosen is not None:
        record["preferred_output"] = [{"role": "assistant", "content": chosen}]
    if rejected is not None:
        record["non_preferred_output"] = [{"role": "assistant", "content": rejected}]
    return json.dumps(record)


def colour_preference_jsonl(per_colour: int = 12, seed: int = 0) -> bytes:
    """An OpenAI preference JSONL of jittered solid red, green and blue squares: the preferred answer
    names the square's colour, the non-preferred one another colour (seeded)."""
    rng = random.Random(seed)
    lines = []
    for prompt, name, png in _jittered_squares(per_colour, rng):
        # Drawn after the square's shade, from the same stream: the set is one seeded sequence.
        wrong = rng.choice([other for other in SOLID_COLOURS if other != name])
        lines.append(preference_line(prompt, name, wrong, png))
    return ("\n".join(lines) + "\n").encode()
