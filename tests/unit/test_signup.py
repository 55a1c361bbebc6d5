"""The sign-up policy (gateway/signup.py) and its settings."""

from __future__ import annotations

import json
import os

import pytest

from gateway.signup import SignupRule
from runtune.errors import PermissionDenied
from runtune.ports.identity import Identity
from runtune.settings import EMULATOR_VARIABLES, GatewaySettings, SettingsError, SignupPolicy

EMULATORS = {
    "FIRESTORE_EMULATOR_HOST": "127.0.0.1:8090",
    "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9023",
    "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099",
}


def _identity(email: str | None, *, verified: bool = True) -> Identity:
    return Identity(uid="u1", email=email, expires_at=0.0, email_verified=verified)


def _refusal(rule: SignupRule, identity: Identity) -> str:
    with pytest.raises(PermissionDenied) as info:
        rule.check(identity)
    assert info.value.status_code == 403
    return str(info.value.code)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (
        "RUNTUNE_PROFILE",
        "RUNTUNE_PROJECT_ID",
        "RUNTUNE_INTERNAL_TOKEN",
        *EMULATOR_VARIABLES,
    ):
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in os.environ if n.startswith("RUNTUNE_SIGNUP_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def _local(env: pytest.MonkeyPatch, **variables: str) -> GatewaySettings:
    for name, value in {**EMULATORS, "RUNTUNE_INTERNAL_TOKEN": "t0ken", **variables}.items():
        env.setenv(name, value)
    return GatewaySettings()


def _gcp(env: pytest.MonkeyPatch, **variables: str) -> GatewaySettings:
    for name, value in {"RUNTUNE_PROFILE": "gcp", "RUNTUNE_PROJECT_ID": "acme-prod", **variables}.items():
        env.setenv(name, value)
    return GatewaySettings()


def test_open_admits_anyone() -> None:
    rule = SignupRule(SignupPolicy.open)
    rule.check(_identity(None, verified=False))
    rule.check(_identity("anyone@anywhere.example", verified=False))


def test_domains_admit_verified_addresses_of_the_domains_only() -> None:
    rule = SignupRule(SignupPolicy.domains, domains=frozenset({"acme.example"}))
    rule.check(_identity("ada@acme.example"))
    rule.check(_identity("Ada@ACME.example"))
    for email in ("ada@other.example", "ada@acme.example.evil", "ada@sub.acme.example", "acme.example@evil.example"):
        assert _refusal(rule, _identity(email)) == "signup_domain_not_allowed", email
    assert _refusal(rule, _identity("ada@acme.example", verified=False)) == "email_not_verified"
    assert _refusal(rule, _identity(None)) == "email_required"


def test_invitations_admit_the_verified_invited_addresses_only() -> None:
    rule = SignupRule(SignupPolicy.invite, emails=frozenset({"ada@acme.example"}))
    rule.check(_identity("ADA@acme.example"))
    assert _refusal(rule, _identity("bob@acme.example")) == "signup_not_invited"
    assert _refusal(rule, _identity("ada@acme.example", verified=False)) == "email_not_verified"


def test_the_local_platform_is_open_by_default(env: pytest.MonkeyPatch) -> None:
    assert _local(env).signup is SignupPolicy.open


def test_the_cloud_is_invitation_only_by_default(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="RUNTUNE_SIGNUP_INVITED_EMAILS"):
        _gcp(env)
    settings = _gcp(env, RUNTUNE_SIGNUP_INVITED_EMAILS=json.dumps(["Ada@Acme.example "]))
    assert settings.signup is SignupPolicy.invite
    SignupRule.from_settings(settings).check(_identity("ada@acme.example"))


def test_the_cloud_may_choose_open(env: pytest.MonkeyPatch) -> None:
    assert _gcp(env, RUNTUNE_SIGNUP_POLICY="open").signup is SignupPolicy.open


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"RUNTUNE_SIGNUP_POLICY": "domains"}, "RUNTUNE_SIGNUP_ALLOWED_DOMAINS"),
        ({"RUNTUNE_SIGNUP_POLICY": "invite"}, "RUNTUNE_SIGNUP_INVITED_EMAILS"),
        (
            {"RUNTUNE_SIGNUP_POLICY": "domains", "RUNTUNE_SIGNUP_ALLOWED_DOMAINS": '["@acme.example"]'},
            "@acme.example",
        ),
        ({"RUNTUNE_SIGNUP_POLICY": "invite", "RUNTUNE_SIGNUP_INVITED_EMAILS": '["ada"]'}, "ada"),
    ],
    ids=["domains-empty", "invite-empty", "domain-with-at", "email-without-at"],
)
def test_a_policy_that_admits_nobody_or_misreads_its_list_refuses_to_start(
    env: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        _local(env, **variables)
