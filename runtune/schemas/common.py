"""Pieces every resource shares: ownership, timestamps, the list page, the error object."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


def now_ts() -> int:
    """Unix seconds, the timestamp unit of the OpenAI objects."""
    return int(time.time())


def new_id(prefix: str) -> str:
    # 24 url-safe characters: unguessable, so ids leak nothing and cannot be enumerated.
    return f"{prefix}-{secrets.token_hex(12)}"


# Every id and cursor the platform issues (new_id, event, checkpoint and sample ids) is ASCII
# letters, digits, '-' and '_', starting with a letter or digit. Anything else names nothing of ours,
# and this alphabet excludes what Firestore reserves or refuses ('.', '..', '/', `__x__`, over 1500
# bytes), so such an id never reaches the store.
_RESOURCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def is_resource_id(value: str) -> bool:
    """Whether `value` could be an id (or cursor) the platform issued: checked wherever one enters."""
    return _RESOURCE_ID.fullmatch(value) is not None


def ascii_number(text: str) -> int | None:
    """The number a cursor's digits spell, or None: `str.isdigit` alone accepts '²', which `int` refuses."""
    return int(text) if text.isascii() and text.isdigit() else None


class ApiModel(BaseModel):
    """The base of every schema here. A field with a default is still always in the JSON the API
    answers (FastAPI serializes whole models), so the OpenAPI document marks it required on the
    response side, and the web UI's generated types (`make openapi`) need no `?` for it."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class ApiError(ApiModel):
    """The error carried by a failed resource (and the body of the REST error envelope)."""

    code: str
    message: str
    param: str | None = None


class WholeList(ApiModel, Generic[T]):
    """A list never paged, every item in one answer (a handful: the GPUs, the secrets, a dataset's
    shards): the list page's shape, `has_more` always false."""

    object: Literal["list"] = "list"
    data: list[T]
    has_more: Literal[False] = False


class Deleted(ApiModel):
    """What a `DELETE` answers, as OpenAI's deletions do: the id, the object kind (`dataset.deleted`,
    `file`, `model`, ...) and `deleted`."""

    id: str
    object: str
    deleted: Literal[True] = True


class OwnedResource(ApiModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    owner: str = Field(exclude=True)
    created_at: int = Field(default_factory=now_ts)

    def to_document(self) -> dict[str, Any]:
        """What Firestore stores: everything, owner included."""
        document = self.model_dump(mode="json")
        document["owner"] = self.owner
        return document


class ListPage(ApiModel, Generic[T]):
    """Cursor pagination as the OpenAI API does it: `after` an id, `limit`, `has_more`."""

    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None

    @classmethod
    def from_overfetch(cls, items: list[T], limit: int, id_of: Any = lambda item: item.id) -> ListPage[T]:
        """Build a page from a query that asked for `limit + 1` items: the extra one means more exist."""
        page = items[:limit]
        return cls(
            data=page,
            has_more=len(items) > limit,
            first_id=id_of(page[0]) if page else None,
            last_id=id_of(page[-1]) if page else None,
        )
