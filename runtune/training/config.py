"""The trainer's config: the job's plan, read verbatim. The plan (a `TrainConfig`) was computed once,
validated, when the job's files were ready (runtune/jobs/plan.py) and stored on the job; nothing is
resolved here, so the trainer runs with exactly the numbers the job shows. The recipe saves it next
to the checkpoints, so a run can be read back exactly as it was trained."""

from __future__ import annotations

from runtune.models.registry import lookup
from runtune.schemas import Job
from runtune.schemas.jobs import TrainConfig


class ConfigError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def read(job: Job) -> TrainConfig:
    """The job's plan, or a `ConfigError` when it has none (the training service plans every job
    before it launches it) or names a model this trainer does not have."""
    config = job.plan
    if config is None:
        # The training service plans every job before it launches it: this one came another way.
        raise ConfigError([f"Job '{job.id}' has no training plan; create it again through the jobs API"])
    if lookup(config.model) is None:
        raise ConfigError([f"Model '{config.model}' is not in this trainer's registry"])
    return config
