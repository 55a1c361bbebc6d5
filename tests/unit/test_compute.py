"""Choosing where a run trains (runtune/compute.py and the plan): Cloud Run's GPUs and the deployment's
Vertex AI machines each priced with time and cost (on demand and Spot); a run too big or too long for
Cloud Run offered Vertex instead of being refused; `auto` the cheapest that fits; `cloud_run` and
`vertex` insisted on; the plan carrying the machine, its GPU count and Spot to the launcher."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from google.cloud.aiplatform_v1 import AcceleratorType

from runtune import compute
from runtune.errors import InvalidRequest
from runtune.estimate import GPU_NAMES
from runtune.jobs import plan
from runtune.schemas import Dataset, DatasetStatus, Job
from runtune.schemas.jobs import Hyperparameters, RuntuneOptions

ALL = compute.VERTEX_MACHINE_NAMES
# bf16 LoRA of Gemma 3 27B at batch 4 x 4096 tokens: about 100 GiB a GPU, more than the RTX PRO
# 6000's 96 (90% usable) and less than an H200's 141.
BIG = {"model": "google/gemma-3-27b-it", "method": "lora", "max_length": 4096}


def _dataset(train: int = 500) -> Dataset:
    return Dataset(id="ds-1", owner="u", name="set", status=DatasetStatus.ready, splits={"train": train})


def _job(model: str = "google/gemma-4-E4B-it", batch_size: int | str = "auto", **options: object) -> Job:
    return Job(
        id="ftjob-1",
        owner="u",
        model=model,
        training_file="ds-1",
        options=RuntuneOptions(**options),
        hyperparameters=Hyperparameters(batch_size=batch_size),
    )


def _big(**options: object) -> Job:
    fields = {**BIG, **options}
    return _job(str(fields.pop("model")), batch_size=4, **fields)


def _estimator(machines: tuple[str, ...] = ALL, timeout_s: int | None = None) -> plan.Estimator:
    return plan.Estimator(machines=machines, cloud_run_timeout_s=timeout_s)


def test_the_machine_table_is_complete_and_names_real_accelerators() -> None:
    data = json.loads(resources.files("runtune").joinpath("gpus.json").read_text(encoding="utf-8"))["vertex"]
    assert data["prices"]["source"] and data["prices"]["read_on"]
    for machine in compute.VERTEX_MACHINES:
        assert machine.accelerator in AcceleratorType.__members__
        assert 0 < machine.spot_usd_per_hour < machine.usd_per_hour
        assert machine.gpu.memory_gib > 0 and machine.gpu.bf16_tflops > 0
    # The shapes a run outgrows Cloud Run into: eight GPUs, and a GPU larger than Cloud Run's largest.
    assert max(m.gpu_count for m in compute.VERTEX_MACHINES) == 8
    assert max(m.gpu.memory_gib for m in compute.VERTEX_MACHINES) > 96


def test_a_run_too_big_for_cloud_run_is_planned_on_vertex_instead_of_refused() -> None:
    with pytest.raises(InvalidRequest) as refused:
        plan.plan_job(_big(), _dataset(), offered=GPU_NAMES)
    assert refused.value.code == "does_not_fit"

    planned = plan.plan_job(_big(), _dataset(), offered=GPU_NAMES, estimator=_estimator())

    config, fit = planned.plan, planned.estimate
    assert (config.compute, config.machine, config.gpu_count, config.gpu) == (
        "vertex",
        "a3-ultragpu-8g",
        8,
        "nvidia-h200-141gb",
    )
    assert fit.seconds and fit.usd and fit.gpu_seconds == fit.seconds * 8
    offers = {offer.shape: offer.model_dump() for offer in fit.offers}
    assert offers["cloud-run"]["fits"] is False and "GiB" in offers["cloud-run"]["reason"]
    assert offers["a3-highgpu-8g"]["fits"] is False  # 80 GiB GPUs
    assert offers["a3-ultragpu-8g"]["fits"] is True and offers["a3-ultragpu-8g"]["spot_usd"] < fit.usd
    # The job shows where it trains.
    job = plan.with_plan(_big(), planned)
    assert (job.gpu, job.machine, job.estimate.compute) == ("nvidia-h200-141gb", "a3-ultragpu-8g", "vertex")


def test_spot_when_allowed_is_priced_and_planned_at_the_spot_rate() -> None:
    on_demand = plan.plan_job(_big(), _dataset(), offered=GPU_NAMES, estimator=_estimator())
    spot = plan.plan_job(_big(spot=True), _dataset(), offered=GPU_NAMES, estimator=_estimator())

    assert (on_demand.plan.spot, spot.plan.spot) == (False, True)
    assert spot.estimate.usd < on_demand.estimate.usd
    [offer] = [o for o in spot.estimate.offers if o.shape == spot.plan.machine]
    assert spot.estimate.usd == offer.spot_usd


def test_auto_picks_the_cheapest_shape_that_fits() -> None:
    planned = plan.plan_job(_job(), _dataset(50_000), offered=GPU_NAMES, estimator=_estimator())
    fitting = [o for o in planned.estimate.offers if o.fits]
    assert {o.backend for o in fitting} == {"cloud_run", "vertex"}
    cheapest = min(fitting, key=lambda o: (o.usd, o.seconds))
    chosen = planned.plan.machine or planned.plan.gpu
    assert chosen == cheapest.shape and planned.estimate.usd == cheapest.usd


def test_a_small_run_stays_on_cloud_run_where_vertex_would_cost_its_provisioning() -> None:
    planned = plan.plan_job(_job("tiny-gemma-3-text"), _dataset(20), offered=GPU_NAMES, estimator=_estimator())
    assert (planned.plan.compute, planned.plan.machine, planned.plan.gpu_count) == ("cloud_run", None, 1)


def test_the_job_may_insist_on_a_backend() -> None:
    cloud_run = plan.plan_job(_job(compute="cloud_run"), _dataset(50_000), offered=GPU_NAMES, estimator=_estimator())
    assert cloud_run.plan.compute == "cloud_run" and cloud_run.plan.gpu in GPU_NAMES
    vertex = plan.plan_job(
        _job("tiny-gemma-3-text", compute="vertex"), _dataset(20), offered=GPU_NAMES, estimator=_estimator()
    )
    assert vertex.plan.compute == "vertex" and vertex.plan.machine in ALL
    # Too big for Cloud Run and held there: refused, with Cloud Run's reason.
    with pytest.raises(InvalidRequest, match="largest GPU allowed here") as refused:
        plan.plan_job(_big(compute="cloud_run"), _dataset(), offered=GPU_NAMES, estimator=_estimator())
    assert refused.value.code == "does_not_fit"


def test_vertex_on_a_deployment_without_vertex_machines_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidRequest) as refused:
        plan.plan_job(_job(compute="vertex"), _dataset(), offered=GPU_NAMES)
    assert (refused.value.code, refused.value.param) == ("compute_not_offered", "method.supervised.runtune.compute")


def test_a_run_longer_than_the_cloud_run_task_is_offered_vertex() -> None:
    job, dataset = _job(), _dataset(50_000)
    on_cloud_run = plan.plan_job(job, dataset, offered=GPU_NAMES, estimator=_estimator(machines=()))
    timeout = on_cloud_run.estimate.seconds_high // 2

    planned = plan.plan_job(job, dataset, offered=GPU_NAMES, estimator=_estimator(timeout_s=timeout))

    assert planned.plan.compute == "vertex"
    [offer] = [o for o in planned.estimate.offers if o.backend == "cloud_run"]
    assert offer.fits is False and "stops after" in offer.reason
    # No Vertex machine offered holds it (40 GiB on 24 GiB L4s): it stays on Cloud Run, warned that
    # it resumes across tasks.
    qlora_27b = _job("google/gemma-3-27b-it", batch_size=4, method="qlora", max_length=2048)
    only_l4 = _estimator(machines=("g2-standard-12",), timeout_s=3600)
    kept = plan.plan_job(qlora_27b, dataset, offered=GPU_NAMES, estimator=only_l4)
    assert (kept.plan.compute, kept.plan.gpu) == ("cloud_run", "nvidia-rtx-pro-6000")
    assert any("resumes from a checkpoint in the next task" in w for w in kept.warnings)


def test_a_run_nothing_holds_is_refused_saying_so_for_both_backends() -> None:
    job = _job(max_length=32_768).model_copy(update={"hyperparameters": Hyperparameters(batch_size=16)})
    with pytest.raises(
        InvalidRequest,
        match=r"On Vertex AI it needs about .* the largest GPU of the Vertex AI machines offered has 141 GiB",
    ) as refused:
        plan.plan_job(job, _dataset(2_000), offered=GPU_NAMES, estimator=_estimator())
    assert refused.value.code == "does_not_fit"


def test_without_vertex_machines_nothing_changes() -> None:
    planned = plan.plan_job(_job(), _dataset(), offered=GPU_NAMES)
    assert (planned.plan.compute, planned.plan.machine, planned.estimate.offers) == ("cloud_run", None, [])


def test_vertex_prices_can_be_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTUNE_VERTEX_PRICES", json.dumps({"a3-ultragpu-8g": [10.0, 2.0]}))
    assert compute.vertex_prices()["a3-ultragpu-8g"] == (10.0, 2.0)
    planned = plan.plan_job(_big(), _dataset(), offered=GPU_NAMES, estimator=_estimator())
    assert planned.estimate.usd == pytest.approx(planned.estimate.seconds * 10.0 / 3600, abs=0.01)


def test_a_multi_gpu_machine_divides_the_training_not_the_rest() -> None:
    fit = plan.plan_job(_job(), _dataset(50_000), offered=GPU_NAMES, estimator=_estimator()).estimate
    offers = {o.shape: o.model_dump() for o in fit.offers}
    one, eight = offers["a2-ultragpu-1g"]["seconds"], offers["a2-ultragpu-8g"]["seconds"]
    assert eight < one < 8 * eight  # faster, but loading, evaluation and export are not divided


def test_auto_within_a_stated_time_takes_the_cheapest_that_finishes_in_it() -> None:
    dataset = _dataset(50_000)
    cheapest = plan.plan_job(_job(), dataset, offered=GPU_NAMES, estimator=_estimator())
    hours = cheapest.estimate.seconds / 3600 / 4  # the cheapest takes four times longer

    planned = plan.plan_job(_job(max_hours=hours), dataset, offered=GPU_NAMES, estimator=_estimator())

    in_time = [o for o in planned.estimate.offers if o.fits and o.seconds <= hours * 3600]
    assert planned.estimate.seconds <= hours * 3600
    assert planned.estimate.usd == min(o.usd for o in in_time) > cheapest.estimate.usd
    # Nothing finishes in a minute: the fastest, warned.
    rushed = plan.plan_job(_job(max_hours=1 / 60), dataset, offered=GPU_NAMES, estimator=_estimator())
    assert rushed.estimate.seconds == min(o.seconds for o in rushed.estimate.offers if o.fits)
    assert any(w.startswith("No shape finishes within") for w in rushed.warnings)


def test_the_trainer_reads_the_bucket_through_vertex_ais_mount_where_cloud_runs_is_absent(tmp_path) -> None:
    from runtune.models.loading import data_mount

    cloud_run, vertex_root = tmp_path / "mnt" / "runtune-data", tmp_path / "gcs"
    paths = {"cloud_run": cloud_run, "vertex_root": vertex_root}
    # Neither mounted (the local platform): the Cloud Run path, which `locate_weights` finds empty.
    assert data_mount("acme-runtune-data", **paths) == cloud_run
    (vertex_root / "acme-runtune-data").mkdir(parents=True)
    assert data_mount("acme-runtune-data", **paths) == vertex_root / "acme-runtune-data"
    cloud_run.mkdir(parents=True)  # on Cloud Run its volume wins
    assert data_mount("acme-runtune-data", **paths) == cloud_run


def test_a_vertex_machine_warns_when_its_processes_outgrow_its_memory() -> None:
    # 50,000 vision examples held by each of eight processes: beyond an 8 x L4 machine's 384 GiB.
    vision = _dataset(50_000).model_copy(update={"modality": "vision"})
    job = _job("google/gemma-3-4b-it", compute="vertex")
    fit = plan.plan_job(job, vision, offered=GPU_NAMES, estimator=_estimator(machines=("g2-standard-96",))).estimate
    [offer] = [o for o in fit.offers if o.shape == "g2-standard-96"]
    assert offer.fits and "host memory (8 processes)" in offer.warning
    assert fit.warnings == [offer.warning]
    small = plan.plan_job(job, _dataset(200), offered=GPU_NAMES, estimator=_estimator(machines=("g2-standard-96",)))
    assert small.estimate.warnings == []
