"""`/v1/secrets`: the caller's own tokens (Hugging Face, Weights & Biases), stored server-side.

Values go in and never come out through the API: the trainer reads them from the secret store
itself, so they never travel in job overrides, documents or responses.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from pydantic import BaseModel, Field

from runtune.api.deps import CurrentUser
from runtune.errors import InvalidRequest, not_found
from runtune.ports.secrets import SecretStore
from runtune.schemas.account import Secret, SecretDeleted
from runtune.schemas.common import WholeList
from runtune.webhooks.endpoints import SECRET_NAME_PREFIX

router = APIRouter(prefix="/v1/secrets", tags=["secrets"])


def secret_store(request: Request) -> SecretStore:
    return request.app.state.secrets


Secrets = Annotated[SecretStore, Depends(secret_store)]


class SecretValue(BaseModel):
    value: str = Field(min_length=1, max_length=65536, description="The token; never returned")


def _yours(name: str) -> str:
    """Names under `webhook-` are the webhook endpoints' signing secrets: managed through `/v1/webhooks`."""
    if name.startswith(SECRET_NAME_PREFIX):
        raise InvalidRequest(
            f"Secret names starting with '{SECRET_NAME_PREFIX}' are reserved for webhook endpoints", param="name"
        )
    return name


@router.get("", response_model=WholeList[Secret])
def list_secrets(user: CurrentUser, secrets: Secrets) -> WholeList[Secret]:
    names = [name for name in secrets.names(user.uid) if not name.startswith(SECRET_NAME_PREFIX)]
    return WholeList[Secret](data=[Secret(name=name) for name in names])


@router.put("/{name}", response_model=Secret)
def put_secret(name: str, body: SecretValue, user: CurrentUser, secrets: Secrets) -> Secret:
    secrets.put(user.uid, _yours(name), body.value)
    return Secret(name=name)


@router.delete("/{name}", status_code=status.HTTP_200_OK, response_model=SecretDeleted)
def delete_secret(name: str, user: CurrentUser, secrets: Secrets) -> SecretDeleted:
    if _yours(name) not in secrets.names(user.uid):
        raise not_found("secret", name)
    secrets.delete(user.uid, name)
    return SecretDeleted(name=name)
