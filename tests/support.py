"""Test helpers: accounts on the Auth emulator and hand-made tokens."""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from runtune.firebase_rest import FirebaseAuthRest
from runtune.schemas import Dataset, DatasetStatus, TaskKind
from runtune.schemas.common import new_id


def sign_up(auth_host: str, email: str | None = None, password: str = "pa55word!") -> dict[str, str]:
    """Create an account on the Auth emulator; returns uid, email, id_token, refresh_token."""
    email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
    session = FirebaseAuthRest("fake-api-key", emulator_host=auth_host).sign_up(email, password)
    return {"uid": session.uid, "email": email, "id_token": session.id_token, "refresh_token": session.refresh_token}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def retoken(token: str, **changes: Any) -> str:
    """The same (unsigned, emulator-style) token with some claims changed: a tampered token."""
    header, _, signature = token.split(".")
    claims = decode_claims(token) | changes
    return ".".join([header, _b64(json.dumps(claims).encode()), signature])


def expired(token: str) -> str:
    now = int(time.time())
    return retoken(token, iat=now - 7200, exp=now - 3600, auth_time=now - 7200)


# --- Signing keys and a local stand-in for Google's public certificate endpoints -------------


def key_and_cert(common_name: str) -> tuple[rsa.RSAPrivateKey, str]:
    """An RSA key and a self-signed X.509 certificate for it (PEM), as Google publishes them."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM).decode()


@contextlib.contextmanager
def cert_server(
    certs: dict[str, str],
    *,
    cache_control: str = "public, max-age=3600",
    before_answer: Callable[[], None] | None = None,
) -> Iterator[str]:
    """Serves `{kid: certificate PEM}` as Google's certificate endpoints do, each request on a thread
    of its own and answered after `before_answer()` returns (where given); yields the URL."""
    body = json.dumps(certs).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if before_answer is not None:
                before_answer()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("cache-control", cache_control)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/certs"
    finally:
        server.shutdown()
        server.server_close()


def pets_dataset(uid: str, status: DatasetStatus = DatasetStatus.ready, **fields: Any) -> Dataset:
    """The jobs tests' dataset document: a two-label vision classification set (train 40, validation 10
    when ready; no splits otherwise), as the preprocessing service leaves it."""
    splits = {"train": 40, "validation": 10} if status is DatasetStatus.ready else {}
    base: dict[str, Any] = {"modality": "vision", "splits": splits, "labels": ["cat", "dog"]}
    return Dataset(
        id=new_id("file"),
        owner=uid,
        name="pets",
        status=status,
        task_kind=TaskKind.classification,
        **{**base, **fields},
    )


@dataclass(frozen=True)
class Recorded:
    """One request a fake API received."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


# (method, path, query, JSON body or None) -> (status, JSON answer)
Handle = Callable[[str, str, dict[str, list[str]], Any], tuple[int, Any]]


@dataclass(frozen=True)
class StartedPlatform:
    """What a test needs of a running local platform: its gateway, the Auth emulator, the project and
    the variables that point a client at its emulators (and its folder)."""

    url: str
    auth_host: str
    project_id: str
    emulator_env: dict[str, str]


@contextlib.contextmanager
def started_platform(local_dir: Any, project_id: str, **config: Any) -> Iterator[tuple[Any, StartedPlatform]]:
    """The whole local platform on free ports (`config`: PlatformConfig's other fields), started:
    yields it and what tests reach it by, and stops it after."""
    from runtune.dev.platform import LocalPlatform, PlatformConfig, PlatformPorts

    running = LocalPlatform(
        PlatformConfig(local_dir=local_dir, ports=PlatformPorts.free(), project_id=project_id, **config)
    )
    state = running.start()
    assert running.emulators is not None
    try:
        yield (
            running,
            StartedPlatform(
                url=state["gateway_url"],
                auth_host=state["auth_emulator_host"],
                project_id=state["project_id"],
                emulator_env={**running.emulators.endpoints.env(), "RUNTUNE_LOCAL_DIR": str(local_dir)},
            ),
        )
    finally:
        running.stop()


def wait_for(check: Callable[[], Any], *, timeout_s: float = 60, every_s: float = 0.5) -> Any:
    """`check()`'s first true value, asked every `every_s` for up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"condition not met in {timeout_s}s")


def google_error(code: int, message: str, status: str | None = None) -> dict[str, Any]:
    """A Google API's error answer, as its REST transport sends it."""
    return {"error": {"code": code, "message": message, "status": status or HTTPStatus(code).name}}


class FakeApi(Protocol):
    """What `serve_fake` needs of a fake Google API: the requests it saw, and an answer to each."""

    requests: list[Recorded]

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]: ...


F = TypeVar("F", bound=FakeApi)


@contextlib.contextmanager
def serve_fake(fake: F) -> Iterator[tuple[F, str]]:
    """`fake` served by `fake_json_api` (the query string unused): yields it and its base URL."""
    with fake_json_api(lambda method, path, query, body: fake.handle(method, path, body), fake.requests) as url:
        yield fake, url


def served_fake(factory: Callable[[], F]) -> Any:
    """A pytest fixture named `fake`: a fresh `factory()` per test, served (`serve_fake`) for the test
    and stopped after: yields (the fake, its base URL)."""

    @pytest.fixture
    def fake() -> Iterator[tuple[F, str]]:
        with serve_fake(factory()) as served:
            yield served

    return fake


def google_client(endpoint: str) -> dict[str, Any]:
    """The keyword arguments that point a Google API client (through our adapters) at a fake."""
    from google.auth.credentials import AnonymousCredentials

    return {"client_options": {"api_endpoint": endpoint}, "credentials": AnonymousCredentials(), "rpc_timeout_s": 5}


class JsonHandler(BaseHTTPRequestHandler):
    """A fake server's request handler that answers JSON (`send_json`)."""

    def send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass


def serve_in_thread(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    """A local server of `handler` on a free port, serving from a daemon thread: it and its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


@contextlib.contextmanager
def fake_json_api(handle: Handle, requests: list[Recorded]) -> Iterator[str]:
    """A local fake of a JSON REST API (for the Google APIs that have no emulator): every request is
    appended to `requests` and answered by `handle`. Yields its base URL."""

    class Handler(JsonHandler):
        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            query = parse_qs(url.query)
            requests.append(Recorded(self.command, url.path, query, body))
            self.send_json(*handle(self.command, url.path, query, body))

        do_GET = do_POST = do_DELETE = _serve

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # A short poll interval keeps shutdown (and so each test's teardown) fast.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def cli_login(platform: Any, config_dir: Any, monkeypatch: Any) -> tuple[Any, dict[str, str]]:
    """A new account logged in with `runtune login` (its session stored under `config_dir`): the CLI
    runner and the account."""
    from typer.testing import CliRunner

    from runtune.cli.main import app

    monkeypatch.setenv("RUNTUNE_CONFIG_DIR", str(config_dir))
    account = sign_up(platform.auth_host, password="correct-horse")
    runner = CliRunner()
    login = ["login", "--email", account["email"], "--password", "correct-horse", "--gateway", platform.gateway_url]
    result = runner.invoke(app, [*login, "--auth-emulator", platform.auth_host])
    assert result.exit_code == 0, result.output
    return runner, account


def assert_secret_name_refused(store: Any, uid: str, name: str, value: str) -> None:
    """The secret-store contract on a bad name, whatever the adapter: put, get and delete each refuse
    it as a 400 naming `name`."""
    from runtune.errors import InvalidRequest

    for call in (lambda: store.put(uid, name, value), lambda: store.get(uid, name), lambda: store.delete(uid, name)):
        try:
            call()
        except InvalidRequest as refused:
            assert refused.param == "name"
        else:
            raise AssertionError(f"secret name {name!r} was accepted")


def assert_secret_values_not_logged(store: Any, uid: str, value: str, records: Any) -> None:
    """The secret-store contract on logs, whatever the adapter: a put, get, list and delete log their
    work (`records`: pytest's `caplog.records`, at DEBUG) and never the value."""
    store.put(uid, "hf_token", value)
    store.get(uid, "hf_token")
    store.names(uid)
    store.delete(uid, "hf_token")
    assert records, "the store logs its writes"
    assert all(value not in record.getMessage() and value not in str(vars(record)) for record in records)
