"""The Firestore indexes the code's queries need, and the rule that says whether a query is served.

One declaration: `infra/firestore.tf` must declare exactly `COMPOSITE_INDEXES` (tests/infra/test_indexes.py),
the local metadata adapter refuses a query none of them serves (as real Firestore does, with
FAILED_PRECONDITION), and `runtune doctor` compares a deployment's indexes with them.

The rule (Firestore's documented index behaviour, applied conservatively):

- Equality filters (`==`, `in`, `array-contains`, `array-contains-any`) on any number of fields with no
  ordering are served by merging the automatic single-field indexes: no composite index.
- The query's ordering is its `order_by` fields (an order on a field that also has an equality filter is a
  no-op and dropped) followed by every inequality field (`<`, `<=`, `>`, `>=`, `!=`, `not-in`) not already
  ordered, ascending, as Firestore orders implicitly.
- One ordering field and no equality filter: a single-field index. Anything else with an ordering
  (an equality plus an ordering on another field, or two ordering fields) needs a composite index.
- A composite index serves the query when its fields are the equality fields first (in any order and
  direction; `array-contains` ones as CONTAINS) and then exactly the query's ordering, directions
  included. Conservative: no index merging of composites, no reversed scans, no extra fields.
- A field exempted from single-field indexing (the TTL fields: `index_config {}` in Terraform) serves
  no query on its own.
Cursors (`start_after` a document) add only `__name__`, which every index ends with implicitly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

IndexOrder = Literal["ASCENDING", "DESCENDING", "CONTAINS"]

EQUALITY_OPS = frozenset({"==", "in", "array-contains", "array-contains-any"})
ARRAY_OPS = frozenset({"array-contains", "array-contains-any"})
INEQUALITY_OPS = frozenset({"<", "<=", ">", ">=", "!=", "not-in"})


@dataclass(frozen=True)
class IndexField:
    path: str
    order: IndexOrder = "ASCENDING"


@dataclass(frozen=True)
class CompositeIndex:
    """A collection-scoped composite index, as `google_firestore_index` declares it."""

    collection: str
    fields: tuple[IndexField, ...]

    def describe(self) -> str:
        return f"{self.collection}({', '.join(f'{f.path} {f.order}' for f in self.fields)})"


@dataclass(frozen=True)
class QueryShape:
    """What a query asks of the indexes: its collection id, filters (field, op) and orders (field, descending)."""

    collection: str
    filters: tuple[tuple[str, str], ...] = ()
    orders: tuple[tuple[str, bool], ...] = ()

    def to_json(self) -> str:
        return json.dumps({"collection": self.collection, "filters": self.filters, "orders": self.orders})

    @classmethod
    def from_json(cls, line: str) -> QueryShape:
        data: dict[str, Any] = json.loads(line)
        return cls(
            collection=data["collection"],
            filters=tuple((field, op) for field, op in data["filters"]),
            orders=tuple((field, bool(descending)) for field, descending in data["orders"]),
        )

    def describe(self) -> str:
        where = " AND ".join(f"{field} {op}" for field, op in self.filters) or "-"
        order = ", ".join(f"{field} {'DESC' if desc else 'ASC'}" for field, desc in self.orders) or "-"
        return f"{self.collection} WHERE {where} ORDER BY {order}"


def collection_id(collection_path: str) -> str:
    """`jobs/{id}/events` -> `events`: Firestore indexes a subcollection by its id, whatever its parent."""
    return collection_path.strip("/").rsplit("/", 1)[-1]


def shape_of(
    collection_path: str, filters: Iterable[tuple[str, str]], orders: Iterable[tuple[str, bool]]
) -> QueryShape:
    return QueryShape(collection_id(collection_path), tuple(filters), tuple(orders))


def _ordering(shape: QueryShape) -> list[IndexField]:
    equality = {field for field, op in shape.filters if op in EQUALITY_OPS}
    ordering: list[IndexField] = []
    for field, descending in shape.orders:
        if field not in equality and field not in {f.path for f in ordering}:
            ordering.append(IndexField(field, "DESCENDING" if descending else "ASCENDING"))
    inequality = sorted({field for field, op in shape.filters if op in INEQUALITY_OPS})
    ordering += [IndexField(field) for field in inequality if field not in {f.path for f in ordering}]
    return ordering


def _equality_fields(shape: QueryShape) -> dict[str, IndexOrder]:
    fields: dict[str, IndexOrder] = {}
    for field, op in shape.filters:
        if op in EQUALITY_OPS:
            fields[field] = "CONTAINS" if op in ARRAY_OPS else fields.get(field, "ASCENDING")
    return fields


def needs_composite(shape: QueryShape) -> bool:
    ordering = _ordering(shape)
    if not ordering:
        return False
    return len(ordering) > 1 or bool(_equality_fields(shape))


def index_for(shape: QueryShape) -> CompositeIndex:
    """The composite index that serves the shape (what Firestore's error message offers to create)."""
    equality = _equality_fields(shape)
    fields = tuple(IndexField(path, order) for path, order in equality.items()) + tuple(_ordering(shape))
    return CompositeIndex(shape.collection, fields)


def covers(index: CompositeIndex, shape: QueryShape) -> bool:
    if index.collection != shape.collection:
        return False
    equality, ordering = _equality_fields(shape), _ordering(shape)
    if len(index.fields) != len(equality) + len(ordering):
        return False
    head, tail = index.fields[: len(equality)], index.fields[len(equality) :]
    if {f.path for f in head} != set(equality):
        return False
    for index_field in head:
        wants_contains = equality[index_field.path] == "CONTAINS"
        if wants_contains != (index_field.order == "CONTAINS"):
            return False
    return list(tail) == ordering


def uncovered(
    shape: QueryShape,
    declared: Sequence[CompositeIndex] | None = None,
    exempt: Iterable[tuple[str, str]] | None = None,
) -> str | None:
    """Why the declared indexes cannot serve the shape, or None when they can."""
    declared = COMPOSITE_INDEXES if declared is None else declared
    exempt = set(SINGLE_FIELD_EXEMPTIONS if exempt is None else exempt)
    if needs_composite(shape):
        if any(covers(index, shape) for index in declared):
            return None
        return f"the query {shape.describe()} requires the composite index {index_for(shape).describe()}"
    for field in sorted(_fields(shape)):
        if (shape.collection, field) in exempt:
            return f"the query {shape.describe()} uses {shape.collection}.{field}, which has no single-field index"
    return None


def _fields(shape: QueryShape) -> set[str]:
    return {field for field, _ in shape.filters} | {field for field, _ in shape.orders}


# -- the declaration ------------------------------------------------------------------------------

# Every list endpoint reads `owner == uid ORDER BY created_at DESC` (cursor pagination, newest first).
OWNER_LISTED_COLLECTIONS = ("datasets", "uploads", "jobs", "evaluations", "exports", "vibe_checks")


def _owner_created(collection: str) -> CompositeIndex:
    return CompositeIndex(collection, (IndexField("owner"), IndexField("created_at", "DESCENDING")))


COMPOSITE_INDEXES: tuple[CompositeIndex, ...] = (
    *(_owner_created(collection) for collection in OWNER_LISTED_COLLECTIONS),
    # The job dispatcher and reconciler: `status IN (...) ORDER BY created_at` (all users) ...
    CompositeIndex("jobs", (IndexField("status"), IndexField("created_at"))),
    # ... and `owner == uid AND status IN (...) ORDER BY created_at` (one user's active jobs).
    CompositeIndex("jobs", (IndexField("owner"), IndexField("status"), IndexField("created_at"))),
)

# Firestore TTL policies: collection -> the Timestamp field after which a document is deleted (within
# about a day; readers still check it). Documents whose field is missing, null or not a Timestamp stay.
TTL_POLICIES: dict[str, str] = {
    # A job's `Idempotency-Key` claim (written by the training service).
    "idempotency_keys": "expires_at",
    # An upload session: `delete_after` is the Timestamp twin of the API's integer `expires_at`.
    "uploads": "delete_after",
}

# TTL fields are exempted from single-field indexing (nothing queries them; TTL deletes would churn it).
SINGLE_FIELD_EXEMPTIONS: frozenset[tuple[str, str]] = frozenset(TTL_POLICIES.items())

# Top-level bucket prefixes whose objects are temporary: the bucket deletes them `TEMPORARY_OBJECT_DAYS`
# after creation (uploads: a day after the upload expires; a dataset keeps its own copy of its source).
TEMPORARY_PREFIXES = ("uploads/",)
TEMPORARY_OBJECT_DAYS = 8
