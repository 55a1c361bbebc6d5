"""Test helpers: accounts on the Auth emulator and hand-made tokens."""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

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
def cert_server(certs: dict[str, str]) -> Iterator[str]:
    """Serves `{kid: certificate PEM}` as Google's certificate endpoints do; yields the URL."""
    body = json.dumps(certs).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("cache-control", "public, max-age=3600")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/certs"
    finally:
        server.shutdown()


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
