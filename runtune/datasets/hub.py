"""Importing a dataset from the Hugging Face Hub, streamed (`datasets.load_dataset(streaming=True)`).

The repository is looked up first with `HfApi.dataset_info`: it answers quickly and tells a
missing or gated repository from an unreachable Hub, where `load_dataset` retries for half a
minute and then says little. The user's token is passed to both calls and nowhere else: not to
logs, documents or error messages.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from runtune.datasets.problems import DataError, Location
from runtune.datasets.records import SPLIT_ALIASES
from runtune.datasets.tables import Table
from runtune.logging import scrub
from runtune.schemas.datasets import HubSource

log = logging.getLogger("runtune.datasets.hub")
SPLIT_COLUMN = "__split__"


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


def open_hub_dataset(source: HubSource, token: str | None) -> Table:
    from huggingface_hub import HfApi

    try:
        HfApi(token=token or False).dataset_info(source.id, revision=source.revision, timeout=20)
    except Exception as exc:  # the Hub client raises network and HTTP errors of many types
        raise _hub_error(source, exc, token) from exc
    log.info("hub dataset found", extra={"hub_id": source.id, "config": source.config, "authenticated": bool(token)})
    return _stream(source, token)


def _stream(source: HubSource, token: str | None) -> Table:
    import datasets

    try:
        loaded = datasets.load_dataset(
            source.id, source.config, split=source.split, revision=source.revision, token=token or False, streaming=True
        )
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
    return Table(
        f"hf://datasets/{source.id}", columns, _rows(parts, source), row_word="row", label_names=label_names or None
    )


def _rows(parts: dict[str | None, Any], source: HubSource) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    number = 0
    for split, part in parts.items():
        if not source.split and str(split).lower() not in SPLIT_ALIASES:
            raise DataError(
                f"the Hub split '{split}' is not train, validation or test: name one with hub.split",
                Location(f"hf://datasets/{source.id}"),
                code="invalid_split",
            )
        for record in part:
            number += 1
            if source.max_rows is not None and number > source.max_rows:
                return
            yield number, ({**record, SPLIT_COLUMN: split} if not source.split else record)
