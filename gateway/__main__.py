"""`python -m gateway`: serve the gateway on the configured host and port."""

import uvicorn

from runtune.settings import GatewaySettings

settings = GatewaySettings()
uvicorn.run("gateway.app:create_app", factory=True, host=settings.host, port=settings.port, log_config=None)
