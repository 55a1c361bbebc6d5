"""GPU settings of the trainer job and the vLLM engine."""

from __future__ import annotations

import re

from runtune.estimate import GPU_TABLE
from tests.infra.terraform import Config, blocks

# Cloud Run's minimum CPU and memory for an instance with one GPU of each type.
GPU_MINIMUMS = {"nvidia-l4": (4, 16), "nvidia-rtx-pro-6000": (20, 80)}
GPU_JOB_MAX_TIMEOUT_S = 12 * 3600  # 1 hour GA, 12 hours in preview


def gib(memory: str) -> float:
    match = re.fullmatch(r"(\d+)(Gi|Mi)", memory)
    assert match, memory
    return int(match.group(1)) / (1 if match.group(2) == "Gi" else 1024)


def test_gpu_shapes_meet_cloud_runs_minimums(tf: Config) -> None:
    shapes = tf.locals["gpu_shapes"]
    assert set(shapes) == set(GPU_MINIMUMS)
    for gpu, (cpu, memory) in GPU_MINIMUMS.items():
        assert int(shapes[gpu]["cpu"]) >= cpu, gpu
        assert gib(shapes[gpu]["memory"]) >= memory, gpu


def test_the_estimate_knows_the_instance_each_gpu_runs_on(tf: Config) -> None:
    # runtune.estimate checks a run's host memory against these shapes.
    shapes = tf.locals["gpu_shapes"]
    assert {gpu.name for gpu in GPU_TABLE} == set(shapes)
    for gpu in GPU_TABLE:
        assert int(shapes[gpu.name]["cpu"]) == gpu.instance_cpu, gpu.name
        assert gib(shapes[gpu.name]["memory"]) == gpu.instance_memory_gib, gpu.name


def _gpu_checks(template: dict, gpu_variable: str) -> None:
    (selector,) = template["node_selector"]
    assert selector["accelerator"] == f"${{var.{gpu_variable}}}"
    assert template["gpu_zonal_redundancy_disabled"] is True
    (container,) = template["containers"]
    (resources,) = container["resources"]
    limits = resources["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    assert limits["cpu"] == f"${{local.gpu_shapes[var.{gpu_variable}].cpu}}"
    assert limits["memory"] == f"${{local.gpu_shapes[var.{gpu_variable}].memory}}"


def test_trainer_job_has_a_gpu_retries_and_the_data_volume(tf: Config) -> None:
    job = tf.resource("google_cloud_run_v2_job", "trainer")
    (execution,) = job["template"]
    assert execution["task_count"] == 1
    (template,) = execution["template"]
    _gpu_checks(template, "gpu_type")
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
    _gpu_checks(template, "engine_gpu_type")
    (container,) = template["containers"]
    args = container["args"]
    assert args[0] == "${var.engine_base_model}"
    for flag, value in (
        ("--max-lora-rank", "${tostring(var.engine_max_lora_rank)}"),
        ("--max-loras", "${tostring(var.engine_max_loras)}"),
        ("--port", "8080"),
    ):
        assert args[args.index(flag) + 1] == value
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
