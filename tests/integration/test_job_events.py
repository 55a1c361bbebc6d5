"""The job event log against the Firestore emulator: concurrent writers, one gap-free order."""

import threading
import uuid

import pytest

from runtune.adapters.firestore import FirestoreMetadataStore
from runtune.jobs.events import JobEventLog, NewEvent

pytestmark = pytest.mark.emulators


def test_concurrent_writers_get_unique_gap_free_numbers(emulators) -> None:
    store = FirestoreMetadataStore.for_project(emulators.project_id)
    job_id = f"ftjob-{uuid.uuid4().hex[:12]}"
    service, trainer = JobEventLog(store), JobEventLog(store)

    def write_metrics() -> None:
        for step in range(15):
            trainer.append(job_id, [NewEvent(f"step {step}", type="metrics", data={"step": step}), NewEvent("tick")])

    def write_messages() -> None:
        for i in range(10):
            service.add(job_id, f"service message {i}")

    threads = [threading.Thread(target=write_metrics), threading.Thread(target=write_messages)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    events = JobEventLog(store).read(job_id)
    assert [event.seq for event in events] == list(range(40))
    assert sum(event.type == "metrics" for event in events) == 15
    # Each writer's own events keep their order.
    steps = [event.data.step for event in events if event.type == "metrics"]
    assert steps == sorted(steps)
    assert events[0].id.endswith("-00000000")


def test_reading_pages_both_ways(emulators) -> None:
    store = FirestoreMetadataStore.for_project(emulators.project_id)
    job_id = f"ftjob-{uuid.uuid4().hex[:12]}"
    log = JobEventLog(store)
    log.append(job_id, [NewEvent(f"e{i}") for i in range(5)])
    assert [e.message for e in log.read(job_id, after_seq=2)] == ["e3", "e4"]
    assert [e.message for e in log.read(job_id, after_seq=2, newest_first=True)] == ["e1", "e0"]
    assert [e.message for e in log.read(job_id, limit=2, newest_first=True)] == ["e4", "e3"]


def test_metrics_are_read_a_page_at_a_time_in_step_order_with_no_composite_index(emulators) -> None:
    from runtune.indexes import uncovered

    store = FirestoreMetadataStore.for_project(emulators.project_id)
    job_id = f"ftjob-{uuid.uuid4().hex[:12]}"
    log = JobEventLog(store)
    for step in range(1, 26):  # messages between the metrics, as the trainer writes them
        log.append(job_id, [NewEvent(f"Step {step}", type="metrics", data={"step": step}), NewEvent("tick")])
    pages, after = [], None
    while True:
        page = log.metrics(job_id, after_step=after, limit=10)
        if not page:
            break
        pages.append([event.data.step for event in page])
        after = page[-1].data.step
    assert pages == [list(range(1, 11)), list(range(11, 21)), list(range(21, 26))]
    assert [e.data.step for e in log.metrics(job_id, after_step=4, to_step=7, limit=100)] == [5, 6, 7]
    shapes = [shape for shape in store.query_shapes if shape.collection == "events"]
    assert shapes and [uncovered(shape) for shape in shapes] == [None] * len(shapes)
