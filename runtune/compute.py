"""Where a run trains: one Cloud Run GPU, or a Vertex AI custom training machine of one to eight GPUs.

The Vertex machine table lives beside the Cloud Run GPU table in runtune/gpus.json (`vertex`), with
its prices' source and date; `RUNTUNE_VERTEX_PRICES` overrides them. `offers` prices a run on every
shape a deployment offers, each with its time and its cost on demand and on Spot, and says why a
shape does not fit; `choose` takes the one a job asked for (`runtune.compute`), or with `auto` the
cheapest that fits. A run too big for Cloud Run (its GPU memory, or more hours than the trainer job's
task timeout) is offered Vertex instead of being refused, where the deployment has Vertex machines.

On Vertex a machine of N GPUs trains data-parallel under torchrun (runtune/training/distributed.py):
every GPU holds the whole model and its share of each step, so a run fits where one process fits
one of its GPUs, and only the training phase is divided (rank 0 alone evaluates and exports).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from runtune.estimate import (
    GPU_TABLE_FILE,
    HEADROOM,
    TIMING,
    Backend,
    Estimate,
    Gpu,
    ModelFigures,
    Offer,
    RunShape,
    duration,
    gpu_from_row,
    gpu_table_data,
    host_memory_gib,
)

ComputeChoice = Literal["auto", "cloud_run", "vertex"]
BACKENDS: tuple[Backend, ...] = ("cloud_run", "vertex")


@dataclass(frozen=True)
class Machine:
    """One Vertex AI machine shape: `name` is its machine type, `accelerator` the API's
    AcceleratorType name, `gpu` one of its GPUs (figures per GPU; `usd_per_second` the machine's)."""

    name: str
    accelerator: str
    gpu_count: int
    gpu: Gpu
    usd_per_hour: float
    spot_usd_per_hour: float

    @property
    def label(self) -> str:
        return self.gpu.label


@dataclass(frozen=True)
class VertexTiming:
    provision_s: float
    data_parallel_efficiency: float


def load_machines(data: dict[str, Any] | None = None) -> tuple[Machine, ...]:
    """The Vertex machine table of runtune/gpus.json (or of `data`, the same JSON)."""
    rows = (data or gpu_table_data())["vertex"]["machines"]
    machines = tuple(
        Machine(
            name=row["name"],
            accelerator=row["accelerator"],
            gpu_count=row["gpu_count"],
            # The row the estimate's formulas take: figures per GPU, and the machine's vCPUs and memory
            # in the instance fields (which on Cloud Run are the trainer job's).
            gpu=gpu_from_row(
                row,
                name=row["gpu"],
                memory_gib=row["gpu_memory_gib"],
                min_cpu=row["vcpus"],
                min_memory_gib=row["memory_gib"],
                usd_per_second=row["usd_per_hour"] / 3600,
                cloud_run_cpu=row["vcpus"],
                cloud_run_memory_gib=row["memory_gib"],
            ),
            usd_per_hour=row["usd_per_hour"],
            spot_usd_per_hour=row["spot_usd_per_hour"],
        )
        for row in rows
    )
    if len({m.name for m in machines}) != len(machines):
        raise ValueError(f"{GPU_TABLE_FILE}: Vertex machine names must be unique")
    for machine in machines:
        if not 1 <= machine.gpu_count <= 8 or machine.spot_usd_per_hour > machine.usd_per_hour:
            raise ValueError(f"{GPU_TABLE_FILE}: {machine.name} needs 1-8 GPUs and a Spot price below its own")
    return machines


def load_vertex_timing(data: dict[str, Any] | None = None) -> VertexTiming:
    row = (data or gpu_table_data())["vertex"]["timing"]
    return VertexTiming(row["provision_s"], row["data_parallel_efficiency"])


VERTEX_MACHINES: tuple[Machine, ...] = load_machines()
VERTEX_MACHINE_NAMES: tuple[str, ...] = tuple(m.name for m in VERTEX_MACHINES)
VERTEX_TIMING: VertexTiming = load_vertex_timing()


def machine(name: str) -> Machine:
    for candidate in VERTEX_MACHINES:
        if candidate.name == name:
            return candidate
    raise ValueError(f"{name!r} is not a Vertex machine of {GPU_TABLE_FILE}: {', '.join(VERTEX_MACHINE_NAMES)}")


def vertex_prices() -> dict[str, tuple[float, float]]:
    """Each machine's (on-demand, Spot) USD per hour, `RUNTUNE_VERTEX_PRICES` overriding the table."""
    overrides = json.loads(os.environ.get("RUNTUNE_VERTEX_PRICES", "{}") or "{}")
    prices = {m.name: (m.usd_per_hour, m.spot_usd_per_hour) for m in VERTEX_MACHINES}
    for name, (on_demand, spot) in overrides.items():
        if name in prices:
            prices[name] = (float(on_demand), float(spot))
    return prices


def cloud_run_offer(fit: Estimate, *, task_timeout_s: int | None = None) -> Offer:
    """The Cloud Run estimate as an offer: it fits when a GPU holds the run and (given the trainer
    job's task timeout) the run's upper estimate ends within it."""
    if fit.gpu is None or fit.seconds is None:
        return Offer(
            backend="cloud_run",
            shape="cloud-run",
            label="Cloud Run",
            gpu="",
            gpu_count=1,
            fits=False,
            reason=fit.reason,
        )
    priced = Offer(
        backend="cloud_run",
        shape=fit.gpu,
        label=f"Cloud Run, {fit.gpu_label}",
        gpu=fit.gpu,
        gpu_count=1,
        fits=True,
        seconds=fit.seconds,
        usd=fit.usd,
    )
    longest = fit.seconds_high or fit.seconds
    if task_timeout_s is not None and longest > task_timeout_s:
        reason = (
            f"may take up to {longest / 3600:.1f} h; the Cloud Run trainer job stops after "
            f"{task_timeout_s / 3600:.1f} h"
        )
        return priced.model_copy(update={"fits": False, "reason": reason})
    return priced


def vertex_offer(model: ModelFigures, shape: RunShape, name: str, *, need_gib: float, tokens: int, steps: int) -> Offer:
    """The run on one Vertex machine: data-parallel over its GPUs, each holding one process's run."""
    m = machine(name)
    # The machine's offer before it is priced; what follows copies it, the shape's fields written once.
    unpriced = Offer(backend="vertex", shape=m.name, label=m.label, gpu=m.gpu.name, gpu_count=m.gpu_count, fits=False)
    if need_gib > m.gpu.memory_gib * HEADROOM:
        reason = f"needs about {need_gib:.0f} GiB a GPU; its GPUs have {m.gpu.memory_gib:.0f} GiB"
        return unpriced.model_copy(update={"reason": reason})
    # Host memory: every rank holds the encoded set; the base checkpoint sits on the boot disk (a real
    # disk on Vertex, so only page cache). More than the machine has is a warning, as on Cloud Run.
    host = m.gpu_count * host_memory_gib(model, shape, m.gpu, weights_on_mount=True)
    warning = None
    if host > m.gpu.cloud_run_memory_gib:
        warning = (
            f"needs about {host:.0f} GiB of host memory ({m.gpu_count} processes); the {m.name} machine has "
            f"{m.gpu.cloud_run_memory_gib} GiB, so the trainer may run out of memory: train on fewer examples"
        )
    phases = duration(model, shape, m.gpu, tokens=tokens, steps=steps, cloud=True)
    # Vertex provisions VMs and pulls the image before the trainer starts, instead of Cloud Run's pull.
    phases["startup"] += VERTEX_TIMING.provision_s - TIMING.image_pull_s
    phases["train"] /= m.gpu_count * (VERTEX_TIMING.data_parallel_efficiency if m.gpu_count > 1 else 1.0)
    seconds = round(sum(phases.values()))
    on_demand, spot = vertex_prices()[m.name]
    usd, spot_usd = round(seconds * on_demand / 3600, 2), round(seconds * spot / 3600, 2)
    priced = {"fits": True, "seconds": seconds, "usd": usd, "spot_usd": spot_usd, "warning": warning}
    return unpriced.model_copy(update=priced)


def offers(
    model: ModelFigures,
    shape: RunShape,
    cloud_run: Estimate,
    *,
    machines: Sequence[str] = (),
    task_timeout_s: int | None = None,
) -> list[Offer]:
    """The run on Cloud Run (`cloud_run`, the estimate of runtune/estimate.py) and on each Vertex
    machine of `machines` (a deployment's offered ones)."""
    return [cloud_run_offer(cloud_run, task_timeout_s=task_timeout_s)] + [
        vertex_offer(model, shape, name, need_gib=cloud_run.memory_gib, tokens=cloud_run.tokens, steps=cloud_run.steps)
        for name in machines
    ]


def choose(
    candidates: Sequence[Offer], compute: ComputeChoice, *, spot: bool = False, max_seconds: float | None = None
) -> Offer | None:
    """The offer a job runs on: among the fitting ones of the asked backend (both with `auto`) that
    end within `max_seconds` (the fastest of them when none does), the cheapest (at Spot prices where
    the job allows Spot), the faster of equals. None: nothing fits."""
    fitting = [o for o in candidates if o.fits and compute in ("auto", o.backend)]
    if not fitting:
        return None
    if max_seconds is not None:
        in_time = [o for o in fitting if (o.seconds or 0) <= max_seconds]
        if not in_time:
            return min(fitting, key=lambda o: (o.seconds or 0, o.cost(spot)))
        fitting = in_time
    return min(fitting, key=lambda o: (o.cost(spot), o.seconds or 0))


def _with(estimate: Estimate, **changes: Any) -> Estimate:
    """`estimate` with `changes` (a frozen pydantic model: the estimate is also an API body)."""
    return estimate.model_copy(update=changes)


def priced_as(fit: Estimate, offer: Offer, *, spot: bool) -> Estimate:
    """`fit` (the Cloud Run estimate) restated for a Vertex offer: its machine, time, cost and GPU
    seconds (the machine's GPUs together, what the owner's GPU budget counts)."""
    assert offer.backend == "vertex" and offer.seconds is not None
    low, high = TIMING.published_range
    price = offer.cost(spot) / max(offer.seconds, 1)
    return _with(
        fit,
        gpu=offer.gpu,
        gpu_label=offer.label,
        seconds=offer.seconds,
        usd=offer.cost(spot),
        reason=None,
        seconds_low=round(offer.seconds * low),
        seconds_high=round(offer.seconds * high),
        usd_low=round(offer.seconds * low * price, 2),
        usd_high=round(offer.seconds * high * price, 2),
        basis="from published throughput",
        calibrated_runs=0,
        machine=offer.shape,
        machine_label=offer.label,
        instance_cpu=machine(offer.shape).gpu.cloud_run_cpu,
        instance_memory_gib=machine(offer.shape).gpu.cloud_run_memory_gib,
        gpu_seconds=offer.seconds * offer.gpu_count,
        # The Cloud Run instance's host-memory warning is not the machine's: `vertex_offer` checked its own.
        warnings=[offer.warning] if offer.warning else [],
        breakdown={},
    )


def place(
    model: ModelFigures,
    shape: RunShape,
    fit: Estimate,
    *,
    machines: Sequence[str],
    task_timeout_s: int | None,
    choice: ComputeChoice,
    spot: bool = False,
    max_hours: float | None = None,
) -> Estimate:
    """`fit` (the run on Cloud Run) with every offered shape priced (`offers`), restated for the one
    `choose` takes: Cloud Run's GPU, or a Vertex machine (`priced_as`). No GPU (the plan's
    `does_not_fit`) when nothing holds the run."""
    candidates = offers(model, shape, fit, machines=machines, task_timeout_s=task_timeout_s)
    listed = list(candidates)
    max_seconds = max_hours * 3600 if max_hours is not None else None
    chosen = choose(candidates, choice, spot=spot, max_seconds=max_seconds)
    if chosen is None:
        return _unplaced(fit, candidates, choice, machines, listed)
    late = []
    if max_seconds is not None and (chosen.seconds or 0) > max_seconds:
        hours = (chosen.seconds or 0) / 3600
        late = [f"No shape finishes within {max_hours:g} h; the fastest, {chosen.label}, takes about {hours:.1f} h"]
    if chosen.backend == "cloud_run":
        return _with(fit, warnings=[*fit.warnings, *late], offers=listed)
    vertex = priced_as(fit, chosen, spot=spot)
    warnings = [*vertex.warnings, *late]
    return _with(vertex, compute="vertex", gpu_count=chosen.gpu_count, spot=spot, offers=listed, warnings=warnings)


def _unplaced(
    fit: Estimate, candidates: Sequence[Offer], choice: ComputeChoice, machines: Sequence[str], listed: list[Any]
) -> Estimate:
    if fit.gpu is not None and choice != "vertex":
        # Cloud Run holds it, but not within one task, and no Vertex machine does: it stays on Cloud
        # Run and resumes across tasks, as it would without Vertex.
        late = f"On Cloud Run this run {candidates[0].reason}; it resumes from a checkpoint in the next task"
        return _with(fit, warnings=[*fit.warnings, late], offers=listed)
    largest = max((machine(name).gpu.memory_gib for name in machines), default=0)
    vertex = (
        f"needs about {fit.memory_gib:.0f} GiB of GPU memory a GPU; the largest GPU of the Vertex AI "
        f"machines offered has {largest:.0f} GiB"
    )
    if choice == "cloud_run":
        reason = fit.reason or "does not fit a Cloud Run GPU"
    elif choice == "vertex" or fit.reason is None:
        reason = vertex
    else:
        reason = f"{fit.reason}. On Vertex AI it {vertex}"
    return _with(fit, gpu=None, gpu_label=None, seconds=None, usd=None, reason=reason, offers=listed)
