"""The built web UI at `/` (a single-page app: unknown page paths get `index.html`) and its runtime
configuration at `/config.json`.

Only the local profile serves a configuration, and it is the one place that names the Auth emulator.
A cloud build carries its Firebase web configuration (`VITE_FIREBASE_CONFIG` at build time), so a
gateway in the `gcp` profile answers 404 here and the UI never learns of an emulator.
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
    if not settings.is_local or not settings.auth_emulator_host:
        raise NotFound(
            "This gateway serves no web configuration: cloud builds of the UI carry theirs (VITE_FIREBASE_CONFIG)",
            code="no_web_config",
        )
    return {
        "profile": "local",
        "firebase": {"apiKey": EMULATOR_API_KEY, "authDomain": "127.0.0.1", "projectId": settings.project_id},
        "auth_emulator_url": f"http://{settings.auth_emulator_host}",
    }


def config_endpoint(settings: GatewaySettings):
    async def config(_: Request) -> Response:
        return JSONResponse(web_config(settings), headers={"Cache-Control": "no-store"})

    return config
