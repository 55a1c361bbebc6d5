"""Webhook URLs never reach the platform's own network (metadata server, VPC, loopback)."""

from __future__ import annotations

import pytest

from runtune.errors import InvalidRequest
from runtune.webhooks.destinations import DestinationPolicy

CLOUD = DestinationPolicy(require_https=True)


def _resolving_to(*addresses: str) -> DestinationPolicy:
    # DNS answers are the attacker's choice: a public-looking name may resolve to any address.
    return DestinationPolicy(require_https=True, resolver=lambda host, port: list(addresses))


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/computeMetadata/v1/",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://10.0.0.7/hook",
        "https://192.168.1.1/hook",
        "https://172.16.0.1/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[fd00::1]/hook",
        "https://0.0.0.0/hook",
        "https://localhost/hook",
    ],
)
def test_private_loopback_and_metadata_addresses_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        CLOUD.check(url)
    assert refused.value.code == "webhook_url_not_allowed" and refused.value.param == "url"


def test_a_public_name_resolving_to_a_private_address_is_refused() -> None:
    with pytest.raises(InvalidRequest) as refused:
        _resolving_to("93.184.215.14", "10.1.2.3").check("https://hooks.example.com/x")
    assert "10.1.2.3" in refused.value.message


def test_a_public_https_url_is_allowed_with_the_addresses_checked() -> None:
    destination = _resolving_to("93.184.215.14").check("https://hooks.example.com:8443/runtune")
    assert (destination.host, destination.port, destination.addresses) == (
        "hooks.example.com",
        8443,
        ("93.184.215.14",),
    )


def test_https_is_required_in_the_cloud_and_credentials_never_ride_in_the_url() -> None:
    with pytest.raises(InvalidRequest, match="https"):
        _resolving_to("93.184.215.14").check("http://hooks.example.com/x")
    with pytest.raises(InvalidRequest, match="credentials"):
        _resolving_to("93.184.215.14").check("https://user:pw@hooks.example.com/x")
    with pytest.raises(InvalidRequest, match="not an http"):
        CLOUD.check("file:///etc/passwd")


def test_local_development_may_allow_loopback_only() -> None:
    local = DestinationPolicy(require_https=False, allow_loopback=True)
    assert local.check("http://127.0.0.1:9000/hook").addresses == ("127.0.0.1",)
    with pytest.raises(InvalidRequest):
        local.check("http://169.254.169.254/")
    with pytest.raises(InvalidRequest):
        local.check("http://10.0.0.1/")
