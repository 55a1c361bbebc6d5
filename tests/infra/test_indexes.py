"""Terraform declares exactly the library's Firestore indexes, TTL policies and temporary bucket prefixes,
and the index rule says what Firestore would say of the code's query shapes."""

from __future__ import annotations

import pytest

from runtune import indexes
from runtune.indexes import CompositeIndex, IndexField, QueryShape, covers, index_for, needs_composite, uncovered
from tests.infra.terraform import Config, blocks, dynamic_blocks


def declared_composites(tf: Config) -> set[CompositeIndex]:
    declared = set()
    for address, body in tf.instances("google_firestore_index"):
        assert body.get("query_scope", "COLLECTION") == "COLLECTION", address
        fields = tuple(
            IndexField(f["field_path"], f.get("order") or ("CONTAINS" if f.get("array_config") else "ASCENDING"))
            for f in blocks(body, "fields")
        )
        declared.add(CompositeIndex(body["collection"], fields))
    return declared


def test_terraform_declares_exactly_the_library_composite_indexes(tf: Config) -> None:
    assert declared_composites(tf) == set(indexes.COMPOSITE_INDEXES)
    assert len(set(indexes.COMPOSITE_INDEXES)) == len(indexes.COMPOSITE_INDEXES)


def test_owner_listed_collections_are_the_librarys(tf: Config) -> None:
    assert tf.locals["owner_listed_collections"] == list(indexes.OWNER_LISTED_COLLECTIONS)


def test_ttl_policies_are_the_librarys_and_their_fields_are_unindexed(tf: Config) -> None:
    ttl = {body["collection"]: body for _, body in tf.instances("google_firestore_field")}
    assert {c: body["field"] for c, body in ttl.items()} == indexes.TTL_POLICIES
    for body in ttl.values():
        assert blocks(body, "ttl_config") == [{}]
        # An empty index_config removes the field's automatic single-field indexes.
        assert blocks(body, "index_config") == [{}]
    assert set(indexes.TTL_POLICIES.items()) == indexes.SINGLE_FIELD_EXEMPTIONS


def test_temporary_prefixes_are_the_librarys_and_expire_after_uploads_do(tf: Config) -> None:
    assert tf.locals["temporary_prefixes"] == list(indexes.TEMPORARY_PREFIXES)
    bucket = tf.resource("google_storage_bucket", "data")
    deletes = [
        rule["content"][0]["condition"][0]
        for rule in dynamic_blocks(bucket, "lifecycle_rule")
        if rule["content"][0]["action"][0]["type"] == "Delete"
    ]
    assert [condition["age"] for condition in deletes] == [indexes.TEMPORARY_OBJECT_DAYS]


def test_uploads_live_under_a_temporary_prefix_and_expire_before_their_objects() -> None:
    from runtune.blob_layout import upload_prefix
    from services.preprocessing.service import UPLOAD_TTL_S

    assert any(upload_prefix("uid", "upload-1").startswith(prefix) for prefix in indexes.TEMPORARY_PREFIXES)
    assert UPLOAD_TTL_S < indexes.TEMPORARY_OBJECT_DAYS * 24 * 3600


OWNER_LIST = QueryShape("uploads", (("owner", "=="),), (("created_at", True),))


@pytest.mark.parametrize(
    ("shape", "needed"),
    [
        (QueryShape("jobs"), False),
        (QueryShape("evaluations", (("status", "in"),)), False),
        # Equality-only merges of single-field indexes.
        (QueryShape("jobs", (("owner", "=="), ("status", "in"))), False),
        (QueryShape("events", (("seq", "<"),), (("seq", True),)), False),
        (QueryShape("checkpoints", (), (("step_number", False),)), False),
        # An order on an equality field is a no-op.
        (QueryShape("jobs", (("owner", "=="),), (("owner", False),)), False),
        (OWNER_LIST, True),
        (QueryShape("jobs", (("status", "in"),), (("created_at", False),)), True),
        (QueryShape("jobs", (("owner", "=="), ("seq", ">"))), True),
        (QueryShape("jobs", (), (("a", False), ("b", False))), True),
        (QueryShape("jobs", (("a", ">"),), (("b", False),)), True),
    ],
)
def test_which_shapes_need_a_composite_index(shape: QueryShape, needed: bool) -> None:
    assert needs_composite(shape) is needed


def test_a_declared_index_covers_only_its_exact_shape() -> None:
    index = CompositeIndex("uploads", (IndexField("owner"), IndexField("created_at", "DESCENDING")))
    assert covers(index, OWNER_LIST)
    assert index_for(OWNER_LIST) == index
    assert not covers(index, QueryShape("uploads", (("owner", "=="),), (("created_at", False),)))
    assert not covers(index, QueryShape("datasets", (("owner", "=="),), (("created_at", True),)))
    assert not covers(index, QueryShape("uploads", (("owner", "=="), ("status", "==")), (("created_at", True),)))
    # Equality fields may come in any order.
    three = CompositeIndex("jobs", (IndexField("owner"), IndexField("status"), IndexField("created_at")))
    assert covers(three, QueryShape("jobs", (("status", "in"), ("owner", "==")), (("created_at", False),)))


def test_a_missing_index_is_caught() -> None:
    assert uncovered(OWNER_LIST) is None
    without_uploads = [index for index in indexes.COMPOSITE_INDEXES if index.collection != "uploads"]
    reason = uncovered(OWNER_LIST, without_uploads)
    assert reason is not None and "uploads(owner ASCENDING, created_at DESCENDING)" in reason


def test_a_query_on_a_ttl_field_is_caught() -> None:
    assert uncovered(QueryShape("idempotency_keys", (("expires_at", "<"),))) is not None
    assert uncovered(QueryShape("idempotency_keys", (("owner", "=="),))) is None


def test_shapes_round_trip_and_subcollections_map_to_their_id() -> None:
    shape = indexes.shape_of("jobs/ftjob-1/events", [("seq", "<")], [("seq", True)])
    assert shape.collection == "events"
    assert QueryShape.from_json(shape.to_json()) == shape
