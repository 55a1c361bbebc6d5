"""Importing a dataset from the Hugging Face Hub, streamed (a `datasets` builder, `as_streaming_dataset`).

The repository is looked up first with `HfApi.dataset_info`: it answers quickly and tells a
missing or gated repository from an unreachable Hub, where `load_dataset` retries for half a
minute and then says little. The user's token is passed to the Hub calls and nowhere else: not
to logs, documents or error messages.

The dataset card is the repository owner's, not the caller's: its `configs[].data_files` and
`data_dir` are patterns `datasets` resolves and opens, and an absolute path or a URL there would
make the service list and read its own files or fetch any URL. So the card is read here first, at
the commit `dataset_info` names (`snapshot`), every pattern is checked to stay inside the
repository (`check_card`), and `datasets` then reads that same commit; the files it resolved are
checked again, and their total size bounded, before a byte of them is read. Reading is bounded
in time as well (`max_hub_seconds`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from runtune.datasets.limits import DatasetLimits
from runtune.datasets.problems import DataError, Location
from runtune.datasets.records import SPLIT_ALIASES
from runtune.datasets.tables import Table
from runtune.logging import scrub
from runtune.schemas.datasets import HubSource

log = logging.getLogger("runtune.datasets.hub")
SPLIT_COLUMN = "__split__"
CARD_FILES = ("README.md", ".huggingface.yaml")  # what `datasets` reads its configs from
_MAX_CARD_BYTES = 1024**2
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_REVISION = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class HubSnapshot:
    """One commit of a Hub dataset repository: its sha, its card's data (the YAML `datasets` reads:
    README.md's header merged with `.huggingface.yaml`) and the size of each file."""

    sha: str
    card: dict[str, Any]
    sizes: dict[str, int]


# (source, token) -> the snapshot; the tests' seam for a card without a Hub.
SnapshotLookup = Callable[[HubSource, str | None], HubSnapshot]


def _hub_error(source: HubSource, exc: Exception, token: str | None) -> DataError:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    where = Location(f"hf://datasets/{source.id}")
    if isinstance(exc, GatedRepoError):
        return DataError(
            "the dataset is gated: accept its terms on the Hub and store a token that may read it "
            f"(PUT /v1/secrets/{source.token_secret or 'hf_token'})",
            where,
            code="hub_gated",
        )
    if isinstance(exc, RepositoryNotFoundError):
        hint = "" if token else " (for a private set, store a token with PUT /v1/secrets/hf_token)"
        return DataError(f"no such dataset on the Hub, or it is private{hint}", where, code="hub_not_found")
    if isinstance(exc, RevisionNotFoundError):
        return DataError(f"no revision '{source.revision}'", where, code="hub_not_found")
    detail = scrub(str(exc))
    if token:
        detail = detail.replace(token, "[redacted]")
    return DataError(
        f"could not reach the Hugging Face Hub ({type(exc).__name__}: {detail[:200]})", where, code="hub_unreachable"
    )


def open_hub_dataset(
    source: HubSource, token: str | None, limits: DatasetLimits, lookup: SnapshotLookup | None = None
) -> Table:
    snapshot = (lookup or hub_snapshot)(source, token)
    check_card(snapshot.card, source.id)
    log.info("hub dataset found", extra={"hub_id": source.id, "config": source.config, "authenticated": bool(token)})
    return _stream(source, snapshot, token, limits)


def hub_snapshot(source: HubSource, token: str | None) -> HubSnapshot:
    from huggingface_hub import HfApi

    api = HfApi(token=token or False)
    try:
        info = api.dataset_info(source.id, revision=source.revision, timeout=20, files_metadata=True)
        sizes = {sibling.rfilename: sibling.size or 0 for sibling in info.siblings or []}
        card = _read_card(api, source.id, str(info.sha), sizes)
    except DataError:
        raise
    except Exception as exc:  # the Hub client raises network and HTTP errors of many types
        raise _hub_error(source, exc, token) from exc
    return HubSnapshot(str(info.sha), card, sizes)


def _read_card(api: Any, repo_id: str, sha: str, sizes: dict[str, int]) -> dict[str, Any]:
    """The card's YAML as `datasets` merges it (README.md's header, updated by `.huggingface.yaml`).
    Both are asked for whatever the file list says: a card that escaped this check would still be
    read by `datasets`."""
    import yaml
    from huggingface_hub import DatasetCard
    from huggingface_hub.errors import RemoteEntryNotFoundError

    where = Location(f"hf://datasets/{repo_id}")
    card: dict[str, Any] = {}
    for name in CARD_FILES:
        if sizes.get(name, 0) > _MAX_CARD_BYTES:
            raise DataError(
                f"{name} is {sizes[name]:,} bytes, over the limit of {_MAX_CARD_BYTES:,}",
                where,
                code="hub_invalid_card",
            )
        try:
            path = api.hf_hub_download(repo_id, name, repo_type="dataset", revision=sha)
        except RemoteEntryNotFoundError:  # absent from the repository (never a failed download)
            continue
        try:
            if name == "README.md":
                card = DatasetCard.load(path).data.to_dict()
            else:
                with open(path, encoding="utf-8") as handle:
                    extra = yaml.safe_load(handle.read())
                card.update(extra if isinstance(extra, dict) else {})
        except (yaml.YAMLError, ValueError) as exc:
            raise DataError(f"{name} is not a readable dataset card ({exc})", where, code="hub_invalid_card") from exc
    return card


def check_card(card: dict[str, Any], repo_id: str) -> None:
    """Every `data_files` pattern and `data_dir` of every config must name files inside the repository."""
    configs = card.get("configs") or []
    if not isinstance(configs, list):
        raise DataError("the card's 'configs' is not a list", _card_where(repo_id, "configs"), code="hub_invalid_card")
    for index, config in enumerate(configs):
        if not isinstance(config, dict):
            raise DataError(
                "a config is not a mapping", _card_where(repo_id, f"configs[{index}]"), code="hub_invalid_card"
            )
        field = f"configs[{index}]"
        if config.get("data_dir") is not None:
            check_pattern(config["data_dir"], repo_id, f"{field}.data_dir")
        for pattern in _patterns(config.get("data_files"), repo_id, f"{field}.data_files"):
            check_pattern(pattern, repo_id, f"{field}.data_files")


def _patterns(value: Any, repo_id: str, field: str) -> Iterator[Any]:
    """Every path in a `data_files` value (a pattern, a list, `{split, path}` items, `{split: ...}`)."""
    if value is None:
        return
    if isinstance(value, list):
        for item in value:
            yield from _patterns(item, repo_id, field)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key != "split":
                yield from _patterns(item, repo_id, field)
    else:
        yield value


def check_pattern(pattern: Any, repo_id: str, field: str = "data_files") -> None:
    """A pattern `datasets` may resolve: relative to the repository (globs allowed, no `..`), or an
    `hf://datasets/{repo_id}@{revision}/` URL of this repository. Anything else (absolute or home
    paths, other schemes, chained fsspec URLs, other repositories) is refused."""
    where = _card_where(repo_id, field)
    if not isinstance(pattern, str) or not pattern.strip():
        raise DataError(f"{pattern!r} is not a file pattern", where, code="hub_invalid_card")
    shown = pattern if len(pattern) <= 120 else pattern[:117] + "..."
    relative = pattern
    own = f"hf://datasets/{repo_id}@"
    if pattern.startswith(own):
        revision, slash, relative = pattern[len(own) :].partition("/")
        if not slash or not _REVISION.match(revision):
            relative = pattern  # refused below as a URL
    if (
        _SCHEME.match(relative)
        or relative.startswith(("/", "~"))
        or any(mark in relative for mark in ("\\", "::", "%", "\0"))
        or ".." in relative.split("/")
    ):
        raise DataError(
            f"the card names '{shown}', which is outside the repository: only files of "
            f"hf://datasets/{repo_id} are read (relative paths, no '..', no URLs or absolute paths)",
            where,
            code="hub_outside_repository",
        )


def _card_where(repo_id: str, field: str) -> Location:
    return Location(f"hf://datasets/{repo_id}", field=f"README.md {field}")


def _stream(source: HubSource, snapshot: HubSnapshot, token: str | None, limits: DatasetLimits) -> Table:
    import datasets

    try:
        # `hf://datasets/...`: never a packaged builder (`json`, `csv`) or a local folder of that name.
        builder = datasets.load_dataset_builder(
            f"hf://datasets/{source.id}", source.config, revision=snapshot.sha, token=token or False
        )
        check_resolved_files(builder.config.data_files, source.id, snapshot, limits.max_hub_bytes)
        loaded = builder.as_streaming_dataset(split=source.split)
    except DataError:
        raise
    except Exception as exc:  # as above: network, HTTP, and builder errors
        raise _hub_error(source, exc, token) from exc
    parts = {source.split: loaded} if source.split else dict(loaded)
    first = next(iter(parts.values()))
    features = first.features or {}
    label_names = {name: list(f.names) for name, f in features.items() if isinstance(f, datasets.ClassLabel)}
    for name, feature in features.items():
        if isinstance(feature, datasets.Image):
            # Undecoded: the raw bytes go through Runtune's own safe image handling.
            parts = {split: part.cast_column(name, datasets.Image(decode=False)) for split, part in parts.items()}
    columns = list(features) + ([SPLIT_COLUMN] if not source.split else [])
    deadline = time.monotonic() + limits.max_hub_seconds
    return Table(
        f"hf://datasets/{source.id}",
        columns,
        hub_rows(parts, source, deadline, limits.max_hub_seconds),
        row_word="row",
        label_names=label_names or None,
    )


def check_resolved_files(data_files: Any, repo_id: str, snapshot: HubSnapshot, max_bytes: int) -> None:
    """What `datasets` resolved the patterns to: files of this commit only, at most `max_bytes` in all."""
    prefix = f"hf://datasets/{repo_id}@{snapshot.sha}/"
    where = Location(f"hf://datasets/{repo_id}")
    total = 0
    for files in (data_files or {}).values():
        for url in files:
            path = str(url)[len(prefix) :] if str(url).startswith(prefix) else None
            if path is None or ".." in path.split("/") or path not in snapshot.sizes:
                raise DataError(
                    f"the card's patterns resolve to '{str(url)[:120]}', which is not a file of this commit "
                    f"of hf://datasets/{repo_id}",
                    where,
                    code="hub_outside_repository",
                )
            total += snapshot.sizes[path]
    if total > max_bytes:
        raise DataError(
            f"the data files are {total:,} bytes, over the limit of {max_bytes:,}: import one config or split",
            where,
            code="hub_too_large",
        )


def hub_rows(
    parts: dict[str | None, Any], source: HubSource, deadline: float, max_seconds: float
) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    number = 0
    for split, part in parts.items():
        if not source.split and str(split).lower() not in SPLIT_ALIASES:
            raise DataError(
                f"the Hub split '{split}' is not train, validation or test: name one with hub.split",
                Location(f"hf://datasets/{source.id}"),
                code="invalid_split",
            )
        for record in part:
            if time.monotonic() > deadline:
                raise DataError(
                    f"reading from the Hub took more than {max_seconds:g}s: import fewer rows (hub.max_rows)",
                    Location(f"hf://datasets/{source.id}", number + 1),
                    code="hub_timeout",
                )
            number += 1
            if source.max_rows is not None and number > source.max_rows:
                return
            yield number, ({**record, SPLIT_COLUMN: split} if not source.split else record)
