"""The caller's own account: who they are (`/v1/me`) and the tokens they stored (`/v1/secrets`)."""

from __future__ import annotations

from typing import Literal

from runtune.schemas.common import ApiModel


class Me(ApiModel):
    """`GET /v1/me`: the signed-in user, as the gateway identified them."""

    object: Literal["user"] = "user"
    id: str
    email: str | None


class Secret(ApiModel):
    """A stored token, by name only: a secret's value goes in and never comes out, so being listed is
    all that says it is set."""

    object: Literal["secret"] = "secret"
    name: str


class SecretDeleted(ApiModel):
    """`DELETE /v1/secrets/{name}`."""

    object: Literal["secret.deleted"] = "secret.deleted"
    name: str
    deleted: Literal[True] = True
