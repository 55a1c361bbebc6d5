"""The Firestore adapter against the real Firestore emulator."""

import threading
import uuid

import pytest

from runtune.adapters.firestore import FirestoreMetadataStore
from runtune.errors import Conflict, InvalidRequest, NotFound
from runtune.ports.metadata import OrderBy, Where

pytestmark = pytest.mark.emulators


@pytest.fixture
def store(emulators) -> FirestoreMetadataStore:
    return FirestoreMetadataStore.for_project(emulators.project_id)


@pytest.fixture
def collection() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def test_create_get_update_delete(store: FirestoreMetadataStore, collection: str) -> None:
    path = f"{collection}/doc-1"
    store.create(path, {"owner": "u1", "n": 1})
    assert store.get(path) == {"owner": "u1", "n": 1}
    with pytest.raises(Conflict):
        store.create(path, {"owner": "u2"})
    store.update(path, {"n": 2})
    assert store.get(path) == {"owner": "u1", "n": 2}
    store.delete(path)
    assert store.get(path) is None
    with pytest.raises(NotFound):
        store.update(path, {"n": 3})


@pytest.mark.parametrize("reserved", [".", "..", "__x__", "__name__", "a" * 1501])
def test_ids_firestore_reserves_are_never_read_or_written(
    store: FirestoreMetadataStore, collection: str, reserved: str
) -> None:
    # Unchecked, the emulator answers these with INVALID_ARGUMENT (a 500 to the caller).
    path = f"{collection}/{reserved}"
    assert store.get(path) is None
    assert store.query(collection, start_after=reserved) == []
    for write in (
        lambda: store.create(path, {"n": 1}),
        lambda: store.set(path, {"n": 1}),
        lambda: store.update(path, {"n": 1}),
        lambda: store.delete(path),
        lambda: store.set_many([(path, {"n": 1})]),
        lambda: store.create_many([(path, {"n": 1})]),
        lambda: store.transact(path, lambda _: {"n": 1}),
        lambda: store.set(f"{reserved}/doc", {"n": 1}),
    ):
        with pytest.raises(InvalidRequest):
            write()


def test_query_filters_orders_and_pages(store: FirestoreMetadataStore, collection: str) -> None:
    store.set_many([(f"{collection}/d{i:02d}", {"owner": "a" if i % 2 else "b", "rank": i}) for i in range(10)])
    owned = store.query(
        collection, where=[Where("owner", "==", "a")], order_by=[OrderBy("rank", descending=True)], limit=3
    )
    assert [doc["rank"] for _, doc in owned] == [9, 7, 5]
    after = store.query(
        collection,
        where=[Where("owner", "==", "a")],
        order_by=[OrderBy("rank", descending=True)],
        limit=3,
        start_after=owned[-1][0],
    )
    assert [doc["rank"] for _, doc in after] == [3, 1]
    assert store.query(collection, start_after="no-such-doc") == []


def test_transaction_serialises_concurrent_increments(store: FirestoreMetadataStore, collection: str) -> None:
    path = f"{collection}/counter"
    store.set(path, {"value": 0})

    def increment() -> None:
        for _ in range(5):
            store.transact(path, lambda doc: {"value": (doc or {"value": 0})["value"] + 1})

    threads = [threading.Thread(target=increment) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get(path) == {"value": 15}


def test_transaction_that_returns_none_writes_nothing(store: FirestoreMetadataStore, collection: str) -> None:
    path = f"{collection}/untouched"
    assert store.transact(path, lambda doc: None) is None
    assert store.get(path) is None


def test_delete_tree_removes_subcollections(store: FirestoreMetadataStore, collection: str) -> None:
    store.set(f"{collection}/job", {"status": "running"})
    store.set_many([(f"{collection}/job/events/{i:06d}", {"seq": i}) for i in range(3)])
    store.delete_tree(f"{collection}/job")
    assert store.get(f"{collection}/job") is None
    assert store.query(f"{collection}/job/events") == []


def test_set_many_writes_more_than_one_batch(store: FirestoreMetadataStore, collection: str) -> None:
    store.set_many([(f"{collection}/e{i:04d}", {"i": i}) for i in range(620)])
    assert len(store.query(collection)) == 620
