"""Pieces every resource shares: ownership, timestamps, the list page, the error object."""

from __future__ import annotations

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


class ApiError(BaseModel):
    """The error carried by a failed resource (and the body of the REST error envelope)."""

    code: str
    message: str
    param: str | None = None


class OwnedResource(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    owner: str = Field(exclude=True)
    created_at: int = Field(default_factory=now_ts)

    def to_document(self) -> dict[str, Any]:
        """What Firestore stores: everything, owner included."""
        document = self.model_dump(mode="json")
        document["owner"] = self.owner
        return document


class ListPage(BaseModel, Generic[T]):
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
