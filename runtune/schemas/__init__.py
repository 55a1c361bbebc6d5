"""The domain schemas, defined once: what Firestore stores and what the REST API returns.

Shapes follow the OpenAI objects where one exists (`file`, `fine_tuning.job`, its events and
checkpoints) so the unmodified `openai` SDK parses them; Runtune's extra fields ride alongside.
`owner` is stored with every resource and never serialised to clients.
"""

from runtune.schemas.common import ApiError, ListPage, OwnedResource, now_ts
from runtune.schemas.datasets import Dataset, DatasetStatus, FileObject, TaskKind
from runtune.schemas.inference import Evaluation, EvaluationStatus, Export, ExportFormat, ExportStatus
from runtune.schemas.jobs import Checkpoint, Hyperparameters, Job, JobEvent, JobPhase, JobStatus

__all__ = [
    "ApiError",
    "Checkpoint",
    "Dataset",
    "DatasetStatus",
    "Evaluation",
    "EvaluationStatus",
    "Export",
    "ExportFormat",
    "ExportStatus",
    "FileObject",
    "Hyperparameters",
    "Job",
    "JobEvent",
    "JobPhase",
    "JobStatus",
    "ListPage",
    "OwnedResource",
    "TaskKind",
    "now_ts",
]
