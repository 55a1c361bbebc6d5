"""A stand-in for the Hugging Face Hub's HTTP API on localhost: just what `huggingface_hub` and
`datasets` call to stream one dataset repository (`me/set`), and a log of every request.

Point a process at it with `HF_ENDPOINT` (read when `huggingface_hub` is imported, so in a child
process); it answers for one repository and one commit, files given as bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

REPO = "me/set"
SHA = "5" * 40


class FakeHub:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def tree(self, prefix: str, recursive: bool) -> list[dict[str, object]]:
        prefix = prefix.strip("/")
        entries: dict[str, dict[str, object]] = {}
        for path, data in self.files.items():
            if prefix and not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1 :] if prefix else path
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(filter(None, [prefix, *parts[:depth]]))
                entries[folder] = {"type": "directory", "path": folder, "oid": "0" * 40, "size": 0}
                if not recursive:
                    break
            if recursive or len(parts) == 1:
                entries[path] = _file_entry(path, data)
        return list(entries.values())


def _file_entry(path: str, data: bytes) -> dict[str, object]:
    return {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    repo = re.escape(REPO)
    info_route = re.compile(rf"^/api/datasets/{repo}(/revision/[^/]+)?$")
    resolve_route = re.compile(rf"^/datasets/{repo}/resolve/[^/]+/(.+)$")
    tree_route = re.compile(rf"^/api/datasets/{repo}/tree/[^/]+/?(.*)$")
    paths_route = re.compile(rf"^/api/datasets/{repo}/paths-info/[^/]+$")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return None

        def do_GET(self) -> None:
            self._route()

        def do_HEAD(self) -> None:
            self._route(head=True)

        def do_POST(self) -> None:
            self._route()

        def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool = False) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _json(self, value: object) -> None:
            self._send(200, json.dumps(value).encode(), {"Content-Type": "application/json"})

        def _route(self, head: bool = False) -> None:
            url = urlparse(self.path)
            path = unquote(url.path)
            hub.requests.append(f"{self.command} {path}")
            if info_route.match(path):
                siblings = [{"rfilename": name, "size": len(data)} for name, data in hub.files.items()]
                return self._json({"id": REPO, "sha": SHA, "private": False, "siblings": siblings})
            if match := resolve_route.match(path):
                return self._file(match[1], head)
            if match := tree_route.match(path):
                return self._json(hub.tree(match[1], "recursive=true" in url.query))
            if paths_route.match(path):
                length = int(self.headers.get("Content-Length", 0))
                wanted = parse_qs(self.rfile.read(length).decode()).get("paths", [])
                return self._json([_file_entry(p, hub.files[p]) for p in wanted if p in hub.files])
            self._send(404, b"{}", {"X-Error-Code": "EntryNotFound"}, head)

        def _file(self, name: str, head: bool) -> None:
            if name not in hub.files:
                return self._send(404, b"{}", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": SHA}, head)
            body = hub.files[name]
            headers = {"X-Repo-Commit": SHA, "ETag": f'"{hashlib.sha1(body).hexdigest()}"', "Accept-Ranges": "bytes"}
            if (wanted := self.headers.get("Range")) and not head:
                start, _, end = wanted.removeprefix("bytes=").partition("-")
                first, last = int(start), int(end) if end else len(body) - 1
                headers["Content-Range"] = f"bytes {first}-{last}/{len(body)}"
                return self._send(206, body[first : last + 1], headers)
            self._send(200, body, headers, head)

    return Handler
