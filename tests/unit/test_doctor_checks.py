"""runtune.doctor's probes and local checks against small local HTTP servers (no platform, no GCP)."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from runtune.doctor import all_ok
from runtune.doctor.local import WorkloadCommands, bucket_check, engine_checks, workload_check, workload_checks
from runtune.doctor.probes import engine_serves, healthy, refuses_anonymous

Route = Callable[[str, dict[str, str]], tuple[int, Any]]


@pytest.fixture
def serve() -> Iterator[Callable[[Route], str]]:
    servers: list[ThreadingHTTPServer] = []

    def start(route: Route) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = route(self.path, {k.lower(): v for k, v in self.headers.items()})
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _closed_port_url() -> str:
    from runtune.dev.processes import free_port

    return f"http://127.0.0.1:{free_port()}"


def test_healthy_passes_on_2xx_and_fails_with_the_fix_otherwise(serve) -> None:
    up = serve(lambda path, _: (200, {"status": "ok"}) if path == "/healthz" else (404, "no"))
    assert healthy("svc", up, "restart it").ok
    broken = healthy("svc", up, "restart it", path="/missing")
    assert (broken.ok, broken.fix) == (False, "restart it")
    assert "404" in broken.detail
    down = healthy("svc", _closed_port_url(), "restart it")
    assert not down.ok and "not reachable" in down.detail


def test_privacy_needs_a_refusal_of_the_unauthenticated_request(serve) -> None:
    private = serve(lambda _path, headers: (401, {"error": {}}) if "authorization" not in headers else (200, {}))
    open_ = serve(lambda _path, _headers: (200, {"id": "anyone"}))
    assert refuses_anonymous("svc: private", private, "fix").ok
    leaky = refuses_anonymous("svc: private", open_, "turn the check on")
    assert not leaky.ok and leaky.fix == "turn the check on" and "200" in leaky.detail
    # Locally a closed port says nothing about privacy; in the cloud it is as private as a refusal.
    assert not refuses_anonymous("svc: private", _closed_port_url(), "fix").ok
    assert refuses_anonymous("svc: private", _closed_port_url(), "fix", unreachable_is_refused=True).ok


def test_engine_must_list_every_base_and_gets_the_key(serve) -> None:
    def engine(path: str, headers: dict[str, str]) -> tuple[int, Any]:
        if headers.get("authorization") != "Bearer k":
            return 401, {"error": {"message": "no"}}
        return 200, {"object": "list", "data": [{"id": "base-a"}, {"id": "adapter-1"}]}

    url = serve(engine)
    assert engine_serves("engine", url, ["base-a"], "fix", authorization="Bearer k").ok
    missing = engine_serves("engine", url, ["base-a", "base-b"], "fix", authorization="Bearer k")
    assert not missing.ok and "base-b" in missing.detail
    assert not engine_serves("engine", url, ["base-a"], "fix").ok  # no key: refused


def test_engine_checks_read_the_key_from_the_state_and_name_the_restart(serve) -> None:
    url = serve(
        lambda path, headers: (
            (200, {"status": "ok"})
            if path == "/healthz"
            else (200, {"data": [{"id": "m"}]})
            if headers.get("authorization") == "Bearer k"
            else (401, {})
        )
    )
    state = {"engine_url": url, "engine_api_key": "k", "log_dir": "/logs", "pids": {}}
    assert all_ok(engine_checks(state, ["m"]))
    down = engine_checks({**state, "engine_url": _closed_port_url()}, ["m"])
    assert [c.ok for c in down] == [False, False]
    assert "runtune dev down && runtune dev up --detach" in down[0].fix and "/logs/engine.log" in down[0].fix
    no_key = engine_checks({**state, "engine_api_key": None}, ["m"])
    assert no_key[1].skipped and no_key[1].ok


def test_bucket_check_tells_a_missing_bucket(serve) -> None:
    url = serve(lambda path, _: (200, {"name": "b"}) if path == "/storage/v1/b/b" else (404, {}))
    assert bucket_check(url, "b", {}).ok
    missing = bucket_check(url, "other", {})
    assert not missing.ok and "does not exist" in missing.detail


def test_workload_commands_must_be_runnable() -> None:
    assert workload_check("train", ["python", "-m", "jobs.trainer"]).ok
    missing = workload_check("ingest", ["python", "-m", "jobs.no_such_workload"])
    assert not missing.ok and "jobs.no_such_workload" in missing.detail
    assert "RUNTUNE_INGEST_COMMAND" in missing.fix
    assert not workload_check("evaluate", ["no-such-program-runtune", "x"]).ok
    assert workload_check("train", [sys.executable, "-m", "tests.e2e.scripted_trainer"]).ok


def test_workload_commands_follow_the_services_variables(monkeypatch) -> None:
    monkeypatch.setenv("RUNTUNE_EVALUATE_COMMAND", json.dumps(["python", "-m", "jobs.not_there"]))
    by_name = {c.name: c for c in workload_checks(WorkloadCommands())}
    assert not by_name["workload evaluate: command"].ok
    assert by_name["workload train: command"].ok


def test_cloud_doctor_without_credentials_names_the_login(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from runtune.cli.main import app

    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    result = CliRunner().invoke(app, ["doctor", "--project", "demo-proj"])
    assert result.exit_code == 1
    assert "credentials: gcloud auth application-default login" in result.output
