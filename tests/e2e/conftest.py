"""The whole local platform for end-to-end tests, started once per session on free ports.

Next to it runs a second gateway (same code, a low rate limit, a 1 s token cache) whose preprocessing route points at
a stand-in service, for the gateway behaviours that need endpoints no real service has yet.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from openai import OpenAI

from runtune.dev.platform import LocalPlatform, PlatformConfig, PlatformPorts, uvicorn_process
from runtune.dev.processes import free_port
from runtune.internal_auth import token_sha256
from tests.datasets.client import api
from tests.e2e.jobs_support import TrainingService
from tests.e2e.webhook_receiver import Receiver, running_receiver
from tests.support import sign_up

QUERY_LOG = "firestore-query-shapes.jsonl"


@dataclass(frozen=True)
class PlatformHandle:
    gateway_url: str
    services: dict[str, str]
    auth_host: str
    project_id: str
    test_gateway_url: str
    test_gateway_pid: int
    log_dir: str
    emulator_env: dict[str, str]
    local_dir: str
    demo_dataset_id: str


@pytest.fixture(scope="module")
def account(platform) -> dict[str, str]:
    """A user of the module's own (signed up on the platform's Auth emulator)."""
    return sign_up(platform.auth_host)


@pytest.fixture
def client(platform, account):
    """The datasets tests' HTTP client: the gateway with `account`'s ID token."""
    with api(platform.gateway_url, account["id_token"]) as http:
        yield http


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformHandle]:
    local_dir = tmp_path_factory.mktemp("platform")
    config = PlatformConfig(
        local_dir=local_dir,
        ports=PlatformPorts.free(),
        project_id="demo-runtune-e2e",
        service_env={
            # Jobs whose metadata names a script run the scripted trainer; the others the real one.
            "RUNTUNE_TRAINER_COMMAND": json.dumps([sys.executable, "-m", "tests.e2e.scripted_trainer"]),
            # The real ingestion, which can also hold a dataset mid-way for a kill (scripted_ingest.py).
            "RUNTUNE_INGEST_COMMAND": json.dumps([sys.executable, "-m", "tests.e2e.scripted_ingest"]),
            "RUNTUNE_HEARTBEAT_STALE_S": "10",
            "RUNTUNE_START_TIMEOUT_S": "60",
            "RUNTUNE_RECONCILE_EVERY_S": "1",
            # Evaluation executions beat every 2 s: one that died is noticed 4 s later.
            "RUNTUNE_EVALUATION_HEARTBEAT_S": "2",
            "RUNTUNE_MAX_RUNNING_JOBS_PER_USER": "1",
            # Trainers read cancel/pause after every step: a pause lands a few steps after it is asked.
            "RUNTUNE_STOP_POLL_S": "0.05",
            # Fake `processing` datasets (jobs_support.put_dataset) hold an ingestion slot as a launch
            # claim for 15 minutes; with the default 2 slots, two such tests stall every later upload.
            "RUNTUNE_LOCAL_MAX_CONCURRENT_CPU_JOBS": "6",
            # Every distinct Firestore query shape the services run (tests/e2e/test_index_coverage.py).
            "RUNTUNE_FIRESTORE_QUERY_LOG": str(local_dir / QUERY_LOG),
        },
    )
    running = LocalPlatform(config)
    state = running.start()
    assert running.emulators is not None
    env = {**running.emulators.endpoints.env(), "RUNTUNE_LOCAL_DIR": str(local_dir)}
    upstream_port, gateway_port = free_port(), free_port()
    extras = [
        uvicorn_process(
            "stand-in-service",
            "tests.e2e.upstream_app:create_app",
            upstream_port,
            {
                **env,
                "RUNTUNE_PORT": str(upstream_port),
                "RUNTUNE_INTERNAL_TOKEN_SHA256": token_sha256(running.internal_token),
            },
            config.log_dir,
        ),
        uvicorn_process(
            "test-gateway",
            "gateway.app:create_app",
            gateway_port,
            {
                **env,
                "RUNTUNE_INTERNAL_TOKEN": running.internal_token,
                "RUNTUNE_PREPROCESSING_URL": f"http://127.0.0.1:{upstream_port}",
                "RUNTUNE_TRAINING_URL": state["services"]["training"],
                "RUNTUNE_INFERENCE_URL": state["services"]["inference"],
                "RUNTUNE_RATE_LIMIT_PER_MINUTE": "60",
                "RUNTUNE_RATE_LIMIT_BURST": "20",
                # A disabled or revoked user is refused within a second (test_gateway.py).
                "RUNTUNE_TOKEN_CACHE_S": "1",
            },
            config.log_dir,
        ),
    ]
    try:
        for process in extras:
            process.start().wait_healthy(timeout_s=60)
        yield PlatformHandle(
            gateway_url=state["gateway_url"],
            services=state["services"],
            auth_host=state["auth_emulator_host"],
            project_id=state["project_id"],
            test_gateway_url=f"http://127.0.0.1:{gateway_port}",
            test_gateway_pid=extras[1].pid or 0,
            log_dir=str(config.log_dir),
            emulator_env=running.emulators.endpoints.env(),
            local_dir=str(local_dir),
            demo_dataset_id=state["demo_dataset_id"],
        )
    finally:
        for process in reversed(extras):
            process.stop()
        running.stop()


# A fresh account per test (no state shared between tests), and the unmodified `openai` SDK signed in as it.
@pytest.fixture
def user(platform) -> dict[str, str]:
    return sign_up(platform.auth_host)


@pytest.fixture
def user_client(platform, user) -> Iterator[httpx.Client]:
    """The gateway with `user`'s ID token (`client` is the module's `account`'s)."""
    with api(platform.gateway_url, user["id_token"]) as http:
        yield http


@pytest.fixture
def sdk(platform, user) -> OpenAI:
    return OpenAI(base_url=f"{platform.gateway_url}/v1", api_key=user["id_token"], max_retries=0)


@pytest.fixture(scope="session")
def training_service(platform) -> Iterator[TrainingService]:
    # Session-scoped: the replacement serves the later tests and stops before the platform does.
    service = TrainingService(platform)
    yield service
    service.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback: answers each POST with the next of `statuses` (200 after)."""
    with running_receiver() as running:
        yield running
