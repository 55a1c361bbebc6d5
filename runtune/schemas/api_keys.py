"""API keys as the REST API shows them (`/v1/api_keys`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from runtune.schemas.common import ApiModel, OwnedResource

Scope = Literal["full", "read_only"]


class ApiKey(OwnedResource):
    object: Literal["api_key"] = "api_key"
    name: str
    prefix: str
    scopes: list[Scope]
    expires_at: int | None = None
    last_used_at: int | None = None
    key_hash: str = Field(exclude=True)
    # The creating session's email and whether it was verified: a call with the key is held to the
    # sign-up policy as that session would be, also after the policy narrows.
    owner_email: str | None = Field(default=None, exclude=True)
    owner_email_verified: bool = Field(default=False, exclude=True)

    def to_document(self) -> dict[str, object]:
        document = super().to_document()
        document["key_hash"] = self.key_hash
        document["owner_email"] = self.owner_email
        document["owner_email_verified"] = self.owner_email_verified
        return document

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


class CreatedApiKey(ApiKey):
    """The create answer: the only place the secret ever appears."""

    key: str


class CreateApiKeyRequest(ApiModel):
    name: str = Field(min_length=1, max_length=100, description="What the key is for, e.g. 'ci-pipeline'")
    scopes: list[Scope] = Field(default=["full"], min_length=1, max_length=2)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650, description="Never expires when omitted")
