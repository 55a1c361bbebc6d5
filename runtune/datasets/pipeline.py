"""Ingestion, top to bottom: read -> check (keep or re-encode) images -> de-duplicate -> split -> write.

Everything streams, and the stages overlap: the reader yields one raw example at a time; a small
thread pool checks images (Pillow releases the GIL there; an acceptable JPEG is kept as it came,
`images.normalize_image`) with a bounded window in flight, in input order; each split's shards are
encoded a row group at a time into an upload that a background thread streams to the bucket
(`canonical.ShardWriter`). Memory is bounded by the window, one row group and a few upload chunks
per split, one preview page per split and the de-duplication keys (`BoundedSeen`, capped), not by
the size of the dataset (Python objects and Arrow buffers; glibc's heaps are kept from hoarding the
large freed buffers by `native_heap`, though peak RSS still grows slowly with the dataset: see
docs/performance.md). `IngestResult.timings` says where
the time went (`bench/ingest.py` prints it).
Failures raise `DataError` naming the file, row and field; the caller removes what was written.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from runtune.datasets.archives import extract_archive, is_archive_name
from runtune.datasets.canonical import SPLITS, Example, ShardWriter
from runtune.datasets.chat_jsonl import read_chat_jsonl
from runtune.datasets.detect import InputKind, guess_mapping, input_kind
from runtune.datasets.hub import SPLIT_COLUMN, open_hub_dataset
from runtune.datasets.image_folder import find_image_folder, read_image_folder
from runtune.datasets.images import NormalizedImage, normalize_image
from runtune.datasets.limits import DatasetLimits
from runtune.datasets.native_heap import bound_native_heap
from runtune.datasets.preference import read_preference_jsonl
from runtune.datasets.previews import PreviewWriter
from runtune.datasets.problems import DataError, Location
from runtune.datasets.records import RawExample, Rows
from runtune.datasets.resolve import ImageResolver
from runtune.datasets.splits import StratifiedSplitter
from runtune.datasets.stats import StatsCollector
from runtune.datasets.tables import TABLE_SUFFIXES, Table, open_table, table_rows
from runtune.datasets.task_kind import detect_chat_task
from runtune.ports.blobs import BlobStore
from runtune.schemas.datasets import DEFAULT_IMAGE_SIDE, ColumnMapping, HubSource, SplitOptions, TaskKind

T = TypeVar("T")
R = TypeVar("R")
ProgressFn = Callable[[str, int, int | None], None]
_PROGRESS_EVERY_S = 1.0
# Why a dataset has its task kind (its stats' `task_kind_reason`) when the request named it.
_GIVEN = "given in the request"


@dataclass(frozen=True)
class IngestOptions:
    mapping: ColumnMapping | None = None
    task_kind: TaskKind | None = None
    split: SplitOptions = field(default_factory=SplitOptions)
    max_image_side: int | None = DEFAULT_IMAGE_SIDE
    skip_bad_rows: bool = False


@dataclass
class IngestResult:
    kind: InputKind
    task_kind: TaskKind
    modality: str
    splits: dict[str, int]
    labels: list[str]
    label_counts: dict[str, int]
    stats: dict[str, Any]
    warnings: list[str]
    shards: list[str]
    # Images stored as they came (metadata stripped) rather than re-encoded, and seconds per phase.
    images_kept: int = 0
    timings: dict[str, float] = field(default_factory=dict)


class PhaseClock:
    """Seconds per phase of one ingestion. Phases on the thread pool (`images`) and the upload
    threads (`upload`) are summed over their threads and overlap the others, so the phases may add
    up to more than the wall time; the ones on the calling thread do not overlap each other."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}

    def add(self, phase: str, seconds: float) -> None:
        with self._lock:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    @contextmanager
    def measure(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - started)

    def timed(self, phase: str, items: Iterable[T]) -> Iterator[T]:
        """`items`, the time spent producing each one counted to `phase`."""
        iterator = iter(items)
        while True:
            with self.measure(phase):
                item = next(iterator, _END)
            if item is _END:
                return
            yield item  # type: ignore[misc]


_END = object()


@dataclass
class _Converted:
    example: Example
    images: list[NormalizedImage]
    resized: int
    kept: int
    split: str | None
    where: Location


def bounded_map(fn: Callable[[T], R], items: Iterable[T], pool: ThreadPoolExecutor, window: int) -> Iterator[R]:
    """`map` over a thread pool, in order, with at most `window` items in flight (bounded memory)."""
    pending: deque[Future[R]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class Ingestor:
    """Converts one input into the canonical shards of one dataset (`users/{uid}/datasets/{id}/`)."""

    def __init__(
        self,
        blobs: BlobStore,
        uid: str,
        dataset_id: str,
        *,
        limits: DatasetLimits,
        workdir: Path,
        progress: ProgressFn | None = None,
    ) -> None:
        self._blobs, self._uid, self._dataset_id = blobs, uid, dataset_id
        self._limits = limits
        self._workdir = workdir
        self._progress = progress or (lambda phase, done, total: None)
        self._clock = PhaseClock()
        bound_native_heap()  # else glibc's heaps keep growing with the dataset (native_heap.py)

    # -- sources ----------------------------------------------------------------------------------

    def ingest_file(self, path: Path, display: str, options: IngestOptions) -> IngestResult:
        kind = input_kind(path, display, options.mapping, self._limits.max_line_bytes)
        if is_archive_name(display):
            self._progress("extracting", 0, None)
            root = self._workdir / "extracted"
            with self._clock.measure("extract"):
                extract_archive(path, root, display, self._limits)
            return self._ingest_extracted(root, display, options)
        resolver = ImageResolver(None, max_bytes=self._limits.max_image_file_bytes)
        if kind is InputKind.chat_jsonl:
            return self._chat(path, display, resolver, options)
        if kind is InputKind.preference_jsonl:
            return self._preference(path, display, resolver, options)
        table = open_table(path, display, self._limits)
        return self._table(table, resolver, options)

    def ingest_hub(self, source: HubSource, token: str | None, options: IngestOptions) -> IngestResult:
        self._progress("connecting", 0, None)
        table = open_hub_dataset(source, token, self._limits)
        mapping = options.mapping
        if mapping is not None and mapping.split is None and not source.split:
            mapping = mapping.model_copy(update={"split": SPLIT_COLUMN})
        return self._table(
            table,
            ImageResolver(None, max_bytes=self._limits.max_image_file_bytes),
            _with_mapping(options, mapping),
            kind=InputKind.hub,
            default_split=None if source.split else SPLIT_COLUMN,
        )

    def _ingest_extracted(self, root: Path, display: str, options: IngestOptions) -> IngestResult:
        tables = sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(TABLE_SUFFIXES))
        if len(tables) > 1:
            names = ", ".join(p.relative_to(root).as_posix() for p in tables[:5])
            raise DataError(
                f"the archive holds several tables ({names}): keep one", Location(display), code="ambiguous_archive"
            )
        if tables:
            inner = tables[0]
            inner_name = f"{display}!{inner.relative_to(root).as_posix()}"
            base = PurePosixPath(inner.parent.relative_to(root).as_posix())
            resolver = ImageResolver(root, max_bytes=self._limits.max_image_file_bytes, base=base)
            inner_kind = input_kind(inner, inner_name, options.mapping, self._limits.max_line_bytes)
            if inner_kind is InputKind.chat_jsonl:
                return self._chat(inner, inner_name, resolver, options)
            if inner_kind is InputKind.preference_jsonl:
                return self._preference(inner, inner_name, resolver, options)
            return self._table(open_table(inner, inner_name, self._limits), resolver, options)
        _not_preference(options.task_kind, "an image folder")
        folder = find_image_folder(root, display)
        total = folder.count()
        rows = read_image_folder(folder, options.mapping, self._limits.max_image_file_bytes)
        reason = _GIVEN if options.task_kind else "an image folder: one folder per label"
        options = _with_task(options, TaskKind.classification)
        return self._run(
            InputKind.image_folder, rows, options, total, ignored=lambda: folder.ignored_files, task_reason=reason
        )

    def _chat(self, path: Path, display: str, resolver: ImageResolver, options: IngestOptions) -> IngestResult:
        """A chat JSONL: its task kind detected first (runtune/datasets/task_kind.py) unless given."""
        _not_preference(options.task_kind, "a chat JSONL")
        reason = _GIVEN
        if options.task_kind is None:
            detection = detect_chat_task(path, display, self._limits.max_line_bytes)
            options, reason = _with_task(options, detection.kind), detection.reason
        classification = options.task_kind is TaskKind.classification
        rows = read_chat_jsonl(
            path, display, resolver, labels_from_answer=classification, max_line_bytes=self._limits.max_line_bytes
        )
        return self._run(InputKind.chat_jsonl, rows, options, None, task_reason=reason)

    def _preference(self, path: Path, display: str, resolver: ImageResolver, options: IngestOptions) -> IngestResult:
        """An OpenAI preference JSONL (runtune/datasets/preference.py): pairs, whatever the request says."""
        reason = _preference_task(options.task_kind, "a preference JSONL (input, preferred and non-preferred output)")
        rows = read_preference_jsonl(path, display, resolver, max_line_bytes=self._limits.max_line_bytes)
        options = _with_task(options, TaskKind.preference)
        return self._run(InputKind.preference_jsonl, rows, options, None, task_reason=reason)

    def _table(
        self,
        table: Table,
        resolver: ImageResolver,
        options: IngestOptions,
        *,
        kind: InputKind = InputKind.table,
        default_split: str | None = None,
    ) -> IngestResult:
        mapping = options.mapping
        if mapping is None:
            mapping = guess_mapping(
                [c for c in table.columns if c != SPLIT_COLUMN], table.display, set(table.label_names or {})
            )
            if default_split:
                mapping = mapping.model_copy(update={"split": default_split})
        if mapping.user is None and mapping.label is not None and mapping.image is not None:
            mapping = mapping.model_copy(update={"user": "What is shown in this image? Answer with one label."})
        if mapping.chosen is not None:
            task, reason = TaskKind.preference, _preference_task(options.task_kind, "chosen and rejected columns")
        else:
            _not_preference(options.task_kind, "a table without 'chosen' and 'rejected' columns in its mapping")
            task = options.task_kind or (TaskKind.classification if mapping.label else TaskKind.generation)
            reason = _GIVEN if options.task_kind else ("a label column" if mapping.label else "no label column")
        options = _with_task(_with_mapping(options, mapping), task)
        return self._run(kind, table_rows(table, mapping, resolver), options, None, task_reason=reason)

    # -- the conversion loop -------------------------------------------------------------------

    def _run(
        self,
        kind: InputKind,
        rows: Rows,
        options: IngestOptions,
        total: int | None,
        ignored: Callable[[], int] = lambda: 0,
        task_reason: str = _GIVEN,
    ) -> IngestResult:
        started = time.perf_counter()
        clock = self._clock
        classification = options.task_kind is TaskKind.classification
        stats = StatsCollector(seed=options.split.seed)
        splitter = StratifiedSplitter(options.split.validation, options.split.test, options.split.seed)
        writers = {s: ShardWriter(self._blobs, self._uid, self._dataset_id, s) for s in SPLITS}
        previews = {s: PreviewWriter(self._blobs, self._uid, self._dataset_id, s) for s in SPLITS}
        seen = BoundedSeen(self._limits.max_dedup_rows)
        labels: set[str] = set()
        kept = 0
        last_report = 0.0

        def convert(row: RawExample | DataError) -> _Converted | DataError:
            if isinstance(row, DataError):
                return row
            with clock.measure("images"):
                return self._convert(row, options.max_image_side)

        self._progress("converting", 0, total)
        workers = self._limits.workers
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest") as pool:
                converted = bounded_map(convert, clock.timed("read", rows), pool, window=4 * workers)
                for item in clock.timed("read + wait for images", converted):
                    if isinstance(item, DataError):
                        if not options.skip_bad_rows:
                            raise item
                        stats.skip(item)
                        continue
                    if not seen.add(_row_key(item)):
                        stats.duplicates += 1
                        continue
                    label = item.example.label if classification else None
                    if classification:
                        labels.add(item.example.label or "")
                        if len(labels) > self._limits.max_labels:
                            raise DataError(
                                f"more than {self._limits.max_labels} distinct labels: this looks like a "
                                "generation set (map the column as 'answer')",
                                item.where,
                                code="too_many_labels",
                            )
                    split = item.split or splitter.assign(label)
                    example = item.example if classification else _without_label(item.example)
                    with clock.measure("write shards"):
                        writers[split].add(example)
                    with clock.measure("write previews"):
                        previews[split].add(example, item.images)
                    stats.add(split, example, item.images, item.resized)
                    kept += item.kept
                    now = time.monotonic()
                    if now - last_report >= _PROGRESS_EVERY_S:
                        self._progress("converting", stats.total + stats.duplicates + stats.skipped, total)
                        last_report = now
            stats.ignored_files = ignored()
            self._check_result(stats, labels, classification, options)
            self._progress("writing", stats.total, total)
            with clock.measure("finish uploads"):
                for split in SPLITS:
                    writers[split].close()
                    previews[split].close()
        except BaseException:
            for split in SPLITS:  # no upload thread outlives a failed ingestion
                writers[split].abort()
                previews[split].abort()
            raise
        clock.add("upload (background)", sum(writer.upload_seconds for writer in writers.values()))
        clock.add("total", time.perf_counter() - started)
        modality = "vision" if stats.images else "text"
        return IngestResult(
            kind=kind,
            task_kind=options.task_kind or TaskKind.generation,
            modality=modality,
            splits={split: count for split, count in stats.rows.items() if count},
            labels=sorted(labels) if classification else [],
            label_counts=stats.label_counts() if classification else {},
            stats={**stats.summary(), "task_kind_reason": task_reason},
            warnings=stats.warnings(classification) + seen.warnings(),
            shards=[path for writer in writers.values() for path in writer.paths],
            images_kept=kept,
            timings=dict(clock.seconds),
        )

    def _check_result(
        self, stats: StatsCollector, labels: set[str], classification: bool, options: IngestOptions
    ) -> None:
        if stats.total == 0:
            detail = f" ({stats.skipped} bad rows skipped; first: {stats.problems[0]})" if stats.skipped else ""
            raise DataError(f"the input has no usable examples{detail}", None, code="no_examples")
        if classification and len(labels) < 2:
            only = next(iter(labels), "")
            raise DataError(
                f"a classification set needs at least two labels; every example is labelled '{only}'",
                None,
                code="single_label",
            )

    def _convert(self, row: RawExample, max_side: int | None) -> _Converted | DataError:
        images: list[NormalizedImage] = []
        try:
            for raw in row.images:
                images.append(
                    normalize_image(raw.data, raw.where, max_side=max_side, max_pixels=self._limits.max_image_pixels)
                )
        except DataError as exc:
            return exc
        example = Example(
            messages=row.messages,
            images=[image.data for image in images],
            image_paths=[raw.path for raw in row.images] if any(raw.path for raw in row.images) else [],
            label=row.label,
            rejected=row.rejected,
        )
        resized, kept = sum(image.resized for image in images), sum(image.kept for image in images)
        return _Converted(example, images, resized, kept, row.split, row.where)


class BoundedSeen:
    """The rows seen so far, for de-duplication in bounded memory: an 8-byte hash per row (a
    Python int in a set, about 66 bytes each: 66 MiB at the default cap) for the first `cap`
    distinct rows; later rows are kept without a check, and a warning says so. With 64-bit keys,
    two different rows of a million collide with a probability of about 3e-8."""

    def __init__(self, cap: int) -> None:
        self._keys: set[int] = set()
        self._cap = cap
        self.unchecked = 0

    def add(self, key: int) -> bool:
        """True when `key` is new (the row is kept), False for a duplicate."""
        if key in self._keys:
            return False
        if len(self._keys) < self._cap:
            self._keys.add(key)
        else:
            self.unchecked += 1
        return True

    def warnings(self) -> list[str]:
        if not self.unchecked:
            return []
        return [
            f"duplicates were looked for among the first {self._cap:,} distinct rows only; "
            f"{self.unchecked:,} later rows were kept unchecked"
        ]


def _row_key(item: _Converted) -> int:
    digest = hashlib.blake2b(json.dumps(item.example.messages, sort_keys=True).encode(), digest_size=8)
    for image in item.images:
        digest.update(image.digest)
    digest.update((item.example.label or "").encode())
    if item.example.rejected is not None:  # a pair is the same pair only with the same other answer
        digest.update(json.dumps(item.example.rejected, sort_keys=True).encode())
    return int.from_bytes(digest.digest(), "big")


def _without_label(example: Example) -> Example:
    return replace(example, label=None) if example.label else example


def _not_preference(given: TaskKind | None, what: str) -> None:
    if given is TaskKind.preference:
        raise DataError(
            f"task_kind 'preference' needs pairs (a preference JSONL, or a table mapped to 'chosen' and "
            f"'rejected'); the input is {what}",
            None,
            code="task_kind_mismatch",
        )


def _preference_task(given: TaskKind | None, what: str) -> str:
    """Why a set of pairs is a preference set; a request that named another task kind is refused."""
    if given is not None and given is not TaskKind.preference:
        raise DataError(
            f"the input is {what}, a preference set; task_kind '{given.value}' does not apply (use 'preference' "
            "or leave it unset)",
            None,
            code="task_kind_mismatch",
        )
    return f"{what}: pairs of a preferred and a non-preferred answer"


def _with_mapping(options: IngestOptions, mapping: ColumnMapping | None) -> IngestOptions:
    return IngestOptions(mapping, options.task_kind, options.split, options.max_image_side, options.skip_bad_rows)


def _with_task(options: IngestOptions, task: TaskKind) -> IngestOptions:
    return IngestOptions(
        options.mapping, options.task_kind or task, options.split, options.max_image_side, options.skip_bad_rows
    )
