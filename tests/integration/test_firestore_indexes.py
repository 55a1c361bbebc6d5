"""The local Firestore adapter refuses what real Firestore refuses: a query no declared index serves."""

import uuid

import pytest
from google.api_core import exceptions as gexc

from runtune.adapters.firestore import FirestoreMetadataStore
from runtune.indexes import COMPOSITE_INDEXES, QueryShape
from runtune.ports.metadata import OrderBy, Where

pytestmark = pytest.mark.emulators


def test_an_undeclared_composite_query_fails_like_firestore(emulators, tmp_path) -> None:
    log = tmp_path / "shapes.jsonl"
    store = FirestoreMetadataStore.for_project(emulators.project_id, enforce_indexes=COMPOSITE_INDEXES, query_log=log)
    uid = f"u-{uuid.uuid4().hex[:8]}"
    store.set(f"uploads/{uid}-a", {"owner": uid, "created_at": 1, "status": "pending"})
    listed = store.query(
        "uploads", where=[Where("owner", "==", uid)], order_by=[OrderBy("created_at", descending=True)]
    )
    assert [doc_id for doc_id, _ in listed] == [f"{uid}-a"]
    # The emulator itself would answer this one; real Firestore wants an (owner, status, created_at) index.
    with pytest.raises(gexc.FailedPrecondition, match="requires the composite index"):
        store.query(
            "uploads",
            where=[Where("owner", "==", uid), Where("status", "==", "pending")],
            order_by=[OrderBy("created_at", descending=True)],
        )
    # A subcollection is indexed by its id; single-field shapes need nothing declared.
    store.query(f"jobs/{uid}/events", where=[Where("seq", "<", 5)], order_by=[OrderBy("seq", descending=True)])
    shapes = [QueryShape.from_json(line) for line in log.read_text().splitlines()]
    assert [shape.collection for shape in shapes] == ["uploads", "uploads", "events"]
    assert shapes[0] == QueryShape("uploads", (("owner", "=="),), (("created_at", True),))


def test_without_enforcement_the_emulator_answers(emulators) -> None:
    store = FirestoreMetadataStore.for_project(emulators.project_id)
    uid = f"u-{uuid.uuid4().hex[:8]}"
    rows = store.query(
        "uploads", where=[Where("owner", "==", uid), Where("status", "==", "x")], order_by=[OrderBy("n")]
    )
    assert rows == []
    assert len(store.query_shapes) == 1
