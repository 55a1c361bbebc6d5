"""Image-folder archives: `label/*.jpg`, or `train/label/*.jpg` (and validation/test) for the user's splits.

A single wrapping folder (`pets/label/*.jpg`, what zipping a folder gives) is looked through.
Files that are not images by name (a README, `.txt` notes) are counted and reported as a warning;
a file named like an image that does not decode fails the dataset, naming it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from runtune.datasets.images import IMAGE_SUFFIXES
from runtune.datasets.problems import DataError, Location
from runtune.datasets.records import IMAGE_PART, SPLIT_ALIASES, RawExample, RawImage, Rows, text_part
from runtune.schemas.datasets import ColumnMapping

DEFAULT_PROMPT = "What is shown in this image? Answer with one of: {labels}."


@dataclass
class ImageFolder:
    root: Path
    display: str
    # (split or None, label folder) in a stable order
    groups: list[tuple[str | None, Path]]
    ignored_files: int = 0

    @property
    def labels(self) -> list[str]:
        return sorted({folder.name for _, folder in self.groups})

    def count(self) -> int:
        return sum(1 for _, folder in self.groups for entry in _files(folder) if _is_image(entry))


def find_image_folder(root: Path, display: str) -> ImageFolder:
    top = _dirs(root)
    while len(top) == 1 and not _files_directly(root) and _dirs(top[0]) and top[0].name.lower() not in SPLIT_ALIASES:
        root, top = top[0], _dirs(top[0])
    if not top:
        raise DataError(
            "no label folders found: an image-folder archive holds one folder per label (cat/1.jpg, dog/2.jpg)",
            Location(display),
            code="no_examples",
        )
    if all(folder.name.lower() in SPLIT_ALIASES for folder in top):
        groups = [(SPLIT_ALIASES[split.name.lower()], label) for split in top for label in _dirs(split)]
    else:
        groups = [(None, label) for label in top]
    return ImageFolder(root, display, groups)


def read_image_folder(folder: ImageFolder, mapping: ColumnMapping | None, max_image_bytes: int) -> Rows:
    labels_text = ", ".join(folder.labels)
    prompt = (mapping.user if mapping and mapping.user else DEFAULT_PROMPT).replace("{labels}", labels_text)
    system = mapping.system if mapping else None
    for split, label_dir in folder.groups:
        for entry in _files(label_dir):
            relative = entry.relative_to(folder.root).as_posix()
            where = Location(folder.display, field=relative)
            if not _is_image(entry):
                folder.ignored_files += 1
                continue
            size = entry.stat().st_size
            if size > max_image_bytes:
                yield DataError(f"{size:,} bytes, over the limit of {max_image_bytes:,}", where, code="image_too_large")
                continue
            messages = [{"role": "system", "content": [text_part(system)]}] if system else []
            messages += [
                {"role": "user", "content": [dict(IMAGE_PART), text_part(prompt)]},
                {"role": "assistant", "content": [text_part(label_dir.name)]},
            ]
            image = RawImage(entry.read_bytes(), relative, where)
            yield RawExample(messages=messages, where=where, images=[image], label=label_dir.name, split=split)


def _dirs(path: Path) -> list[Path]:
    return sorted(Path(entry.path) for entry in os.scandir(path) if entry.is_dir(follow_symlinks=False))


def _files_directly(path: Path) -> list[Path]:
    return [Path(entry.path) for entry in os.scandir(path) if entry.is_file(follow_symlinks=False)]


def _files(folder: Path) -> Iterator[Path]:
    """Files under a label folder, nested ones included, in a stable order."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES
