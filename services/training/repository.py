"""Jobs, their events and checkpoints in the metadata store, always read through their owner."""

from __future__ import annotations

from collections.abc import Callable

from runtune.errors import not_found
from runtune.ports.metadata import Document, MetadataStore, OrderBy, Where
from runtune.schemas.common import is_resource_id
from runtune.schemas.jobs import Checkpoint, Job, JobStatus, job_path
from runtune.webhooks.events import on_transition

JOBS = "jobs"
_SCAN_PAGE = 100


class JobRepository:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    def create(self, job: Job) -> None:
        self._store.create(job_path(job.id), job.to_document())

    def get_owned(self, uid: str, job_id: str) -> Job:
        """The job if the caller owns it; a foreign job is as missing as a nonexistent one."""
        document = self._store.get(job_path(job_id)) if is_resource_id(job_id) else None
        if document is None or document.get("owner") != uid:
            raise not_found("fine-tuning job", job_id)
        return Job.model_validate(document)

    def get(self, job_id: str) -> Job | None:
        document = self._store.get(job_path(job_id))
        return Job.model_validate(document) if document else None

    def update(self, job_id: str, mutate: Callable[[Job], Job | None]) -> Job | None:
        """Change a job atomically (its trainer writes it concurrently); a change into a terminal
        status writes its webhook event in the same transaction."""

        def apply(document: Document | None) -> Document | None:
            if document is None:
                return None
            changed = mutate(Job.model_validate(document))
            return changed.to_document() if changed is not None else None

        result = self._store.transact(job_path(job_id), apply, also=on_transition("job"))
        return Job.model_validate(result) if result else None

    def list_owned(
        self, uid: str, *, limit: int, after: str | None = None, metadata: dict[str, str] | None = None
    ) -> list[Job]:
        """The caller's jobs, newest first. Metadata filters are applied here, not in the query: keys
        are the user's own, and Firestore would need a composite index per key."""
        if after is not None:
            self.get_owned(uid, after)  # a foreign or unknown cursor is a 404, not an empty page
        wanted = (metadata or {}).items()
        found: list[Job] = []
        cursor = after
        while len(found) < limit:
            rows = self._store.query(
                JOBS,
                where=[Where("owner", "==", uid)],
                order_by=[OrderBy("created_at", descending=True)],
                limit=_SCAN_PAGE if wanted else limit - len(found),
                start_after=cursor,
            )
            jobs = [Job.model_validate(document) for _, document in rows]
            found += [job for job in jobs if all((job.metadata or {}).get(k) == v for k, v in wanted)]
            if len(rows) < (_SCAN_PAGE if wanted else 1) or not rows:
                break
            cursor = rows[-1][0]
        return found[:limit]

    def with_status(self, statuses: list[JobStatus], *, owner: str | None = None) -> list[Job]:
        where = [Where("status", "in", [status.value for status in statuses])]
        if owner is not None:
            where.append(Where("owner", "==", owner))
        rows = self._store.query(JOBS, where=where, order_by=[OrderBy("created_at")])
        return [Job.model_validate(document) for _, document in rows]

    def checkpoints(self, job_id: str) -> list[Checkpoint]:
        """The job's model checkpoints (runtune/training/model_checkpoints.py), oldest first; the
        resume states (`jobs/{id}/checkpoints`) are the trainer's own and never listed."""
        rows = self._store.query(f"{job_path(job_id)}/model_checkpoints", order_by=[OrderBy("step_number")])
        return [Checkpoint.model_validate({k: v for k, v in doc.items() if k != "adapter"}) for _, doc in rows]
