"""`/v1/api_keys`: the caller's long-lived credentials for scripts, CI pipelines and other services.

Creating and revoking needs a signed-in session; listing works with a key too. The secret appears
in the create answer only: the store keeps its hash (`runtune/api_keys.py`), so it cannot be shown again.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from runtune.api.deps import CurrentUser, SignedInUser
from runtune.api_keys import MAX_KEYS_PER_USER, SHOWN_PREFIX_CHARS, key_hash, new_secret
from runtune.errors import InvalidRequest
from runtune.owned import OwnedCollection
from runtune.schemas.api_keys import ApiKey, CreateApiKeyRequest, CreatedApiKey
from runtune.schemas.common import Deleted, ListPage, new_id, now_ts

router = APIRouter(prefix="/v1/api_keys", tags=["api keys"])


def key_collection(request: Request) -> OwnedCollection[ApiKey]:
    return request.app.state.api_keys


Keys = Annotated[OwnedCollection[ApiKey], Depends(key_collection)]


@router.post("", response_model=CreatedApiKey)
def create_api_key(body: CreateApiKeyRequest, user: SignedInUser, keys: Keys) -> CreatedApiKey:
    if len(keys.few_owned(user.uid, MAX_KEYS_PER_USER)) >= MAX_KEYS_PER_USER:
        raise InvalidRequest(
            f"You have {MAX_KEYS_PER_USER} API keys, the most one user may hold; revoke one first",
            code="too_many_api_keys",
        )
    secret, created = new_secret(), now_ts()
    key = ApiKey(
        id=new_id("key"),
        owner=user.uid,
        name=body.name,
        prefix=secret[:SHOWN_PREFIX_CHARS],
        scopes=sorted(set(body.scopes)),
        created_at=created,
        expires_at=created + body.expires_in_days * 86400 if body.expires_in_days else None,
        key_hash=key_hash(secret),
        owner_email=user.email,
        owner_email_verified=user.email_verified,
    )
    keys.create(key)
    return CreatedApiKey(**key.model_dump(), owner=user.uid, key_hash=key.key_hash, key=secret)


@router.get("", response_model=ListPage[ApiKey])
def list_api_keys(user: CurrentUser, keys: Keys) -> ListPage[ApiKey]:
    return ListPage.from_overfetch(keys.few_owned(user.uid, MAX_KEYS_PER_USER), MAX_KEYS_PER_USER)


@router.get("/{key_id}", response_model=ApiKey)
def get_api_key(key_id: str, user: CurrentUser, keys: Keys) -> ApiKey:
    return keys.get_owned(user.uid, key_id)


@router.delete("/{key_id}", response_model=Deleted)
def revoke_api_key(key_id: str, user: SignedInUser, keys: Keys) -> Deleted:
    keys.get_owned(user.uid, key_id)
    keys.delete(key_id)
    return Deleted(id=key_id, object="api_key.deleted")
