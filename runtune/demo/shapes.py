"""Coloured shapes: a small image-classification set a tiny model can learn in minutes on a CPU.

Each class is a shape drawn in its own colour at a random size, position and rotation on a noisy
background, so the classes are visually distinct and a model that learns nothing scores near chance.
Written as canonical shards (train/validation/test) through `ShardWriter`, with one user turn (the
image + `PROMPT`) and one assistant turn (the label).
"""

from __future__ import annotations

import io
import math
import random
import zipfile
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, ImageDraw

from runtune.datasets.canonical import Example, ShardWriter
from runtune.ports.blobs import BlobStore

CLASSES = ("circle", "square", "triangle", "cross")
COLOURS = ("red", "blue", "green", "yellow")
_RGB = {"red": (220, 40, 40), "blue": (40, 70, 220), "green": (40, 180, 60), "yellow": (235, 215, 40)}
PROMPT = "What shape is in this image? Answer with one word."
SIZE = 32
DEFAULT_COUNTS = {"train": 240, "validation": 40, "test": 80}


@dataclass(frozen=True)
class DemoSet:
    counts: dict[str, int]
    labels: tuple[str, ...] = CLASSES


def draw(label: str, rng: random.Random, size: int = SIZE) -> bytes:
    background = tuple(rng.randint(200, 255) for _ in range(3))
    image = Image.new("RGB", (size, size), background)  # type: ignore[arg-type]
    pen = ImageDraw.Draw(image)
    colour = _RGB[COLOURS[CLASSES.index(label)]]
    radius = rng.uniform(0.28, 0.42) * size
    cx, cy = (rng.uniform(radius, size - radius) for _ in range(2))
    angle = rng.uniform(0, 2 * math.pi)
    if label == "circle":
        pen.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    elif label in ("square", "triangle"):
        corners = 4 if label == "square" else 3
        points = [
            (
                cx + radius * math.cos(angle + 2 * math.pi * k / corners),
                cy + radius * math.sin(angle + 2 * math.pi * k / corners),
            )
            for k in range(corners)
        ]
        pen.polygon(points, fill=colour)
    else:
        width = max(2, int(radius / 2.5))
        for turn in (0, math.pi / 2):
            dx, dy = radius * math.cos(angle + turn), radius * math.sin(angle + turn)
            pen.line((cx - dx, cy - dy, cx + dx, cy + dy), fill=colour, width=width)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def example(label: str, rng: random.Random) -> Example:
    return Example(
        messages=[
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]},
            {"role": "assistant", "content": [{"type": "text", "text": label}]},
        ],
        images=[draw(label, rng)],
        label=label,
    )


def examples(split: str, count: int, seed: int = 0) -> list[Example]:
    """`count` examples, classes balanced and interleaved; each split draws from its own stream."""
    rng = random.Random(f"{seed}-{split}")
    return [example(CLASSES[index % len(CLASSES)], rng) for index in range(count)]


def write_demo_dataset(
    blobs: BlobStore, uid: str, dataset_id: str, *, counts: dict[str, int] | None = None, seed: int = 0
) -> DemoSet:
    counts = counts or DEFAULT_COUNTS
    for split, count in counts.items():
        writer = ShardWriter(blobs, uid, dataset_id, split)
        for item in examples(split, count, seed):
            writer.add(item)
        writer.close()
    return DemoSet(counts=dict(counts))


def write_archive(
    out: BinaryIO, *, counts: dict[str, int] | None = None, seed: int = 0, folder: str = "shapes"
) -> dict[str, int]:
    """The same images as an image-folder zip (`shapes/{split}/{label}/NNNN.png`): what a user uploads.

    The split folders carry the demo's own train/validation/test, so a model trained on the upload
    is scored on the same held-out images as one trained on `write_demo_dataset`'s shards.
    """
    counts = counts or DEFAULT_COUNTS
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
        for split, count in counts.items():
            for index, item in enumerate(examples(split, count, seed)):
                archive.writestr(f"{folder}/{split}/{item.label}/{index:04d}.png", item.images[0])
    return dict(counts)
