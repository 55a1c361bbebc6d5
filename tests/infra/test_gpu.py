"""GPU settings of the trainer jobs (one per GPU type offered) and the vLLM engine."""

from __future__ import annotations

import json
import re

import pytest

from runtune.adapters.launch_contract import cloud_run_job_name
from runtune.estimate import GPU_TABLE
from runtune.ports.launcher import Workload
from tests.infra.terraform import Config, Renderer, blocks

TRAINER = "google_cloud_run_v2_job.trainer"

# Cloud Run's minimum CPU and memory for an instance with one GPU of each type.
GPU_MINIMUMS = {"nvidia-l4": (4, 16), "nvidia-rtx-pro-6000": (20, 80)}
GPU_JOB_MAX_TIMEOUT_S = 12 * 3600  # 1 hour GA, 12 hours in preview


def gib(memory: str) -> float:
    match = re.fullmatch(r"(\d+)(Gi|Mi)", memory)
    assert match, memory
    return int(match.group(1)) / (1 if match.group(2) == "Gi" else 1024)


def test_gpu_shapes_meet_cloud_runs_minimums(tf: Config) -> None:
    shapes = tf.local_value("gpu_shapes")
    assert set(shapes) == set(GPU_MINIMUMS)
    for gpu, (cpu, memory) in GPU_MINIMUMS.items():
        assert int(shapes[gpu]["cpu"]) >= cpu, gpu
        assert gib(shapes[gpu]["memory"]) >= memory, gpu


def test_the_estimate_knows_the_instance_each_gpu_runs_on(tf: Config) -> None:
    # runtune.estimate checks a run's host memory against these shapes.
    shapes = tf.local_value("gpu_shapes")
    assert {gpu.name for gpu in GPU_TABLE} == set(shapes)
    for gpu in GPU_TABLE:
        assert int(shapes[gpu.name]["cpu"]) == gpu.cloud_run_cpu, gpu.name
        assert gib(shapes[gpu.name]["memory"]) == gpu.cloud_run_memory_gib, gpu.name


def _gpu_checks(template: dict, gpu: str) -> None:
    """`gpu`: the accelerator as the template names it (a variable's expression, or the GPU itself)."""
    (selector,) = template["node_selector"]
    assert selector["accelerator"] == (gpu if gpu.startswith("nvidia-") else f"${{{gpu}}}")
    assert template["gpu_zonal_redundancy_disabled"] is True
    (container,) = template["containers"]
    (resources,) = container["resources"]
    limits = resources["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    key = f'"{gpu}"' if gpu.startswith("nvidia-") else gpu
    assert limits["cpu"] == f"${{local.gpu_shapes[{key}].cpu}}"
    assert limits["memory"] == f"${{local.gpu_shapes[{key}].memory}}"


def trainer_jobs(tf: Config, trainer_gpus: list[str] | None = None) -> dict[str, dict]:
    """The trainer job instances for a value of var.trainer_gpus, by GPU, names and limits rendered."""
    renderer = Renderer(tf, {"project_id": "runtune-test", "image_tag": "0" * 40, "trainer_gpus": trainer_gpus}, "1")
    jobs = {}
    for address, body in tf.instances("google_cloud_run_v2_job", {"trainer_gpus": trainer_gpus}):
        if address.startswith(f"{TRAINER}["):
            (template,) = blocks(body, "template", "template")
            (container,) = template["containers"]
            limits = container["resources"][0]["limits"]
            jobs[json.loads(address.removeprefix(TRAINER))[0]] = {
                "name": renderer.render(body["name"]),
                "accelerator": template["node_selector"][0]["accelerator"],
                "cpu": renderer.render(limits["cpu"]),
                "memory": renderer.render(limits["memory"]),
                "env": renderer.render(tf.local_value("env")["training"]["RUNTUNE_OFFERED_GPUS"]),
            }
    return jobs


@pytest.mark.parametrize("trainer_gpus", [None, ["nvidia-l4"], ["nvidia-rtx-pro-6000"]])
def test_one_trainer_job_per_offered_gpu_named_and_shaped_by_the_gpu_table(
    tf: Config, trainer_gpus: list[str] | None
) -> None:
    jobs = trainer_jobs(tf, trainer_gpus)
    offered = trainer_gpus or [gpu.name for gpu in GPU_TABLE]  # null: every GPU of the table
    assert sorted(jobs) == sorted(offered)
    for gpu in GPU_TABLE:
        if gpu.name not in offered:
            continue
        job = jobs[gpu.name]
        # The name the training service launches (runtune/adapters/launch_contract.py), the GPU it
        # asks for, and the CPU and memory the estimate priced (runtune/gpus.json).
        assert job["name"] == cloud_run_job_name(Workload.train, gpu.name)
        assert job["accelerator"] == gpu.name
        assert (job["cpu"], job["memory"]) == (str(gpu.cloud_run_cpu), f"{gpu.cloud_run_memory_gib}Gi")
        # The training service is told exactly the GPUs that have a job.
        assert sorted(json.loads(job["env"])) == sorted(offered)


def test_terraform_reads_the_table_the_estimate_uses(tf: Config) -> None:
    assert tf.local_value("gpu_names") == [gpu.name for gpu in GPU_TABLE]
    assert tf.local_value("gpu_shapes") == {
        gpu.name: {"cpu": str(gpu.cloud_run_cpu), "memory": f"{gpu.cloud_run_memory_gib}Gi"} for gpu in GPU_TABLE
    }


def test_trainer_jobs_have_a_gpu_retries_and_the_data_volume(tf: Config) -> None:
    job = tf.resource("google_cloud_run_v2_job", "trainer")
    assert job["for_each"] == "${toset(local.trainer_gpus)}"
    for gpu, instance in tf.instances("google_cloud_run_v2_job"):
        if gpu.startswith(f"{TRAINER}["):
            (template,) = blocks(instance, "template", "template")
            _gpu_checks(template, json.loads(gpu.removeprefix(TRAINER))[0])
    (execution,) = job["template"]
    assert execution["task_count"] == 1
    (template,) = execution["template"]
    assert template["max_retries"] == "${var.trainer_max_retries}"
    assert tf.variables["trainer_max_retries"]["default"] == 3
    assert template["timeout"] == "${var.trainer_task_timeout_s}s"
    timeout = tf.variables["trainer_task_timeout_s"]
    assert timeout["default"] <= GPU_JOB_MAX_TIMEOUT_S
    assert str(GPU_JOB_MAX_TIMEOUT_S) in timeout["validation"][0]["condition"]
    (volume,) = template["volumes"]
    (gcs,) = volume["gcs"]
    assert gcs["bucket"] == "${google_storage_bucket.data.name}"
    (mount,) = template["containers"][0]["volume_mounts"]
    assert mount["name"] == volume["name"]


def test_engine_is_a_gpu_vllm_service_with_lora_and_a_startup_probe(tf: Config) -> None:
    engine = tf.resource("google_cloud_run_v2_service", "engine")
    (template,) = engine["template"]
    _gpu_checks(template, "var.engine_gpu_type")
    (container,) = template["containers"]
    args = container["args"]
    # The base model and the LoRA flags come from the serving contract (tests/infra/test_serving.py).
    assert args[args.index("--port") + 1] == "8080"
    assert "--enable-lora" in args
    (port,) = container["ports"]
    assert port["container_port"] == 8080
    (probe,) = container["startup_probe"]
    (http,) = probe["http_get"]
    assert http["path"] == "/health"
    assert probe["period_seconds"] * probe["failure_threshold"] >= 600, "model loading takes minutes"
    (resources,) = container["resources"]
    assert resources["cpu_idle"] is False, "GPU instances need CPU always allocated"
    (scaling,) = template["scaling"]
    assert scaling["min_instance_count"] == 0, "an idle GPU costs money: scale to zero"
    env = {entry["name"]: entry for entry in container["env"]}
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"]["value"] == "True"
    (source,) = env["HF_TOKEN"]["value_source"]
    assert source["secret_key_ref"][0]["secret"] == "${google_secret_manager_secret.hf_token.secret_id}"
    (volume,) = template["volumes"]
    assert volume["gcs"][0]["read_only"] is True


def test_cpu_services_have_no_gpu(tf: Config) -> None:
    for address, body in tf.instances("google_cloud_run_v2_service"):
        if address.endswith(".engine"):
            continue
        (template,) = body["template"]
        assert "node_selector" not in template, address
        for container in blocks(template, "containers"):
            assert "nvidia.com/gpu" not in container["resources"][0]["limits"], address
