"""Where a webhook may be sent: never into the platform's own network.

A user's URL is fetched by Runtune's own servers, so without a check it is a server-side request
forgery: the metadata server (`169.254.169.254`, which hands out the service account's tokens), the
VPC's private services, loopback. A URL is allowed only if every address its host resolves to is a
public unicast address; the check runs at registration and again at each delivery (DNS can change
between the two, and a name can resolve differently each time), and the delivery connects to the
address that was checked, not to a second resolution.

The gcp profile also requires https. The local profile may allow loopback (a receiver on the
developer's machine) behind `RUNTUNE_WEBHOOK_ALLOW_LOOPBACK`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from runtune.errors import InvalidRequest

Resolver = Callable[[str, int], list[str]]

# Names that reach the metadata server whatever they resolve to in a test or a VPC's DNS.
_METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "metadata.goog"})


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


@dataclass(frozen=True)
class Destination:
    url: str
    host: str
    port: int
    addresses: tuple[str, ...]  # every address the host resolved to, all checked


@dataclass(frozen=True)
class DestinationPolicy:
    require_https: bool
    allow_loopback: bool = False
    resolver: Resolver = resolve

    def check(self, url: str, param: str = "url") -> Destination:
        """The URL's destination if it may receive webhooks; else a 400 naming `param` and why."""
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise InvalidRequest(f"'{url}' is not an http(s) URL", param=param, code="invalid_webhook_url")
        if self.require_https and parts.scheme != "https":
            raise InvalidRequest("Webhook URLs must use https", param=param, code="invalid_webhook_url")
        if parts.username or parts.password:
            raise InvalidRequest("Webhook URLs may not carry credentials", param=param, code="invalid_webhook_url")
        host = parts.hostname.rstrip(".").lower()
        if host in _METADATA_NAMES:
            raise _refused(url, param, "the metadata server")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = self.resolver(host, port)
        except OSError as exc:
            raise InvalidRequest(
                f"The host of '{url}' does not resolve ({exc})", param=param, code="invalid_webhook_url"
            ) from exc
        if not addresses:
            raise InvalidRequest(f"The host of '{url}' does not resolve", param=param, code="invalid_webhook_url")
        for address in addresses:
            why = self._forbidden(ipaddress.ip_address(address.split("%")[0]))
            if why:
                raise _refused(url, param, f"{why} ({address})")
        return Destination(url=url, host=host, port=port, addresses=tuple(addresses))

    def _forbidden(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_loopback:
            return None if self.allow_loopback else "a loopback address"
        if address.is_link_local:
            return "a link-local address (the metadata server lives there)"
        if address.is_private or address.is_reserved or address.is_multicast or address.is_unspecified:
            return "a private or reserved address"
        if not address.is_global:
            return "an address that is not public"
        return None


def _refused(url: str, param: str, why: str) -> InvalidRequest:
    return InvalidRequest(
        f"Webhooks cannot be sent to '{url}': it points at {why}", param=param, code="webhook_url_not_allowed"
    )
