"""The one route table: which private service owns which public path prefix."""

from __future__ import annotations

# Longest prefix wins; a path no prefix matches answers 404 at the gateway. A prefix ending in `/`
# owns only the paths below it, not the bare path.
ROUTE_TABLE: dict[str, str] = {
    "/v1/files": "preprocessing",
    "/v1/datasets": "preprocessing",
    "/v1/uploads": "preprocessing",
    "/v1/fine_tuning": "training",
    "/v1/models": "training",  # the list only
    # One model (`GET` / `DELETE /v1/models/{id}`): deleting unloads it from the inference engine.
    "/v1/models/": "inference",
    "/v1/me": "training",
    "/v1/secrets": "training",
    "/v1/api_keys": "training",
    "/v1/webhooks": "training",
    "/v1/chat": "inference",
    "/v1/vibe_checks": "inference",
    "/v1/evaluations": "inference",
    "/v1/exports": "inference",
}

_ORDERED = sorted(ROUTE_TABLE.items(), key=lambda item: len(item[0]), reverse=True)


def upstream_for(path: str) -> str | None:
    for prefix, service in _ORDERED:
        if path == prefix or path.startswith(prefix if prefix.endswith("/") else prefix + "/"):
            return service
    return None
