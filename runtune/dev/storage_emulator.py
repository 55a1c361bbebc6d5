"""`gcp-storage-emulator` with CORS, as a bucket with a CORS policy answers in the cloud.

The web UI uploads straight to the resumable session URL (a PUT with Content-Range, from the
gateway's origin), which a browser only sends after a CORS preflight the emulator does not answer.
Locally any origin is allowed: the emulator listens on loopback and holds only local data.

Run as `python -m runtune.dev.storage_emulator start ...` (the emulator's own arguments).
"""

from __future__ import annotations

import sys
from http import HTTPStatus

from gcp_storage_emulator import server
from gcp_storage_emulator.__main__ import main

_ALLOW_HEADERS = "Content-Type, Content-Range, Content-Length, Authorization, X-Upload-Content-Type"
_EXPOSE_HEADERS = "Range, Location, Content-Range, Content-Length, ETag, X-GUploader-UploadID"


def _end_headers(self: server.RequestHandler) -> None:
    origin = self.headers.get("Origin")
    if origin:
        self.send_header("Access-Control-Allow-Origin", origin)
        self.send_header("Vary", "Origin")
        self.send_header("Access-Control-Expose-Headers", _EXPOSE_HEADERS)
    super(server.RequestHandler, self).end_headers()


def _do_options(self: server.RequestHandler) -> None:
    self.send_response(HTTPStatus.NO_CONTENT)
    self.send_header("Access-Control-Allow-Methods", "GET, PUT, POST, DELETE, PATCH, OPTIONS")
    asked = self.headers.get("Access-Control-Request-Headers")
    self.send_header("Access-Control-Allow-Headers", asked or _ALLOW_HEADERS)
    self.send_header("Access-Control-Max-Age", "600")
    self.send_header("Content-Length", "0")
    self.end_headers()


server.RequestHandler.end_headers = _end_headers  # type: ignore[method-assign]
server.RequestHandler.do_OPTIONS = _do_options  # type: ignore[attr-defined]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
