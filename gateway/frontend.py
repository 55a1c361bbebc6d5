"""The built web UI at `/` (a single-page app: unknown page paths get `index.html`) and its runtime
configuration at `/config.json`.

The local profile's configuration is the one place that names the Auth emulator. In the `gcp`
profile the gateway serves the project's Firebase web configuration (`RUNTUNE_FIREBASE_WEB_CONFIG`,
set by Terraform), never an emulator, so one UI build works in every project; without it, 404 (a UI
built with `VITE_FIREBASE_CONFIG` carries its own).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from runtune.errors import NotFound
from runtune.settings import GatewaySettings

# The Auth emulator accepts any API key; the CLI uses the same placeholder.
EMULATOR_API_KEY = "fake-api-key"


class SinglePageApp(StaticFiles):
    """Files of the build; a path whose last segment has no extension is a page of the app."""

    def __init__(self, directory: str) -> None:
        super().__init__(directory=directory, html=True)

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404 or "." in path.rsplit("/", 1)[-1]:
                raise
            return await super().get_response("index.html", scope)


def web_config(settings: GatewaySettings) -> dict[str, object]:
    if not settings.is_local:
        if not settings.firebase_web_config:
            raise NotFound(
                "This gateway has no web configuration: set RUNTUNE_FIREBASE_WEB_CONFIG (Terraform does), "
                "or build the UI with VITE_FIREBASE_CONFIG",
                code="no_web_config",
            )
        return {"profile": "gcp", "firebase": settings.firebase_web_config, "auth_emulator_url": None}
    if not settings.auth_emulator_host:
        raise NotFound("The local profile needs the Auth emulator (FIREBASE_AUTH_EMULATOR_HOST)", code="no_web_config")
    return {
        "profile": "local",
        "firebase": {"apiKey": EMULATOR_API_KEY, "authDomain": "127.0.0.1", "projectId": settings.project_id},
        "auth_emulator_url": f"http://{settings.auth_emulator_host}",
    }


def config_endpoint(settings: GatewaySettings):
    async def config(_: Request) -> Response:
        return JSONResponse(web_config(settings), headers={"Cache-Control": "no-store"})

    return config
