"""`python -m engine`: the local engine on RUNTUNE_ENGINE_HOST:RUNTUNE_ENGINE_PORT."""

from __future__ import annotations

import uvicorn

from engine.app import create_app
from runtune.settings import EngineServerSettings


def main() -> None:
    settings = EngineServerSettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
