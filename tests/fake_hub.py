"""A local stand-in for the model hub: an http.server thread that answers the few requests
``huggingface_hub`` makes to download a model (the listing, then HEAD and GET per file).

Per repository it can stall a file halfway until released, or refuse with an HTTP status.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SHA = "a" * 40


@dataclass
class Repo:
    files: dict[str, bytes]
    stall: str | None = None
    """A file whose GET sends half its bytes, then waits for ``release``."""
    release: threading.Event = field(default_factory=threading.Event)
    refuse: int | None = None
    """An HTTP status for the listing (403: refused, 401 with GatedRepo: gated)."""
    refuse_files: int | None = None
    """An HTTP status for every file's GET and HEAD."""


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-hub", daemon=True)
        self.thread.start()

    def add(self, repo_id: str, folder: str | Path, **options) -> Repo:
        files = {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}
        self.repos[repo_id] = Repo(files, **options)
        return self.repos[repo_id]

    def close(self) -> None:
        for repo in self.repos.values():
            repo.release.set()
        self.server.shutdown()
        self.server.server_close()


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            path = self.path.split("?")[0]
            hub.requests.append(f"{self.command} {path}")
            listing = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?", path)
            resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/[^/]+/(.+)", path)
            if listing:
                self._listing(listing.group(1), body)
            elif resolve:
                self._file(resolve.group(1), resolve.group(2), body)
            else:
                self._send(200, b"", body)  # the reachability probe

        def _listing(self, repo_id: str, body: bool) -> None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._send(
                    404, b'{"error": "Repository not found"}', body, {"X-Error-Code": "RepoNotFound"}
                )
            if repo.refuse:
                gated = {"X-Error-Code": "GatedRepo"} if repo.refuse == 401 else {}
                return self._send(repo.refuse, b'{"error": "refused"}', body, gated)
            siblings = [{"rfilename": n, "size": len(b)} for n, b in repo.files.items()]
            listing = {"id": repo_id, "modelId": repo_id, "sha": SHA, "private": False, "siblings": siblings}
            self._send(200, json.dumps(listing).encode(), body, {"Content-Type": "application/json"})

        def _file(self, repo_id: str, name: str, body: bool) -> None:
            repo = hub.repos.get(repo_id)
            data = None if repo is None else repo.files.get(name)
            if data is None:
                return self._send(404, b"", body, {"X-Error-Code": "EntryNotFound"})
            if repo.refuse_files:
                return self._send(repo.refuse_files, b"refused", body)
            etag = hashlib.sha256(data).hexdigest()
            headers = {"X-Repo-Commit": SHA, "ETag": f'"{etag}"', "Content-Type": "application/octet-stream"}
            start = int(m.group(1)) if (m := re.match(r"bytes=(\d+)-", self.headers.get("Range", ""))) else 0
            part = data[start:]
            if not body or name != repo.stall:
                return self._send(206 if start else 200, part, body, headers, len(part))
            self.send_response(200)
            for key, value in {**headers, "Content-Length": str(len(part))}.items():
                self.send_header(key, value)
            self.end_headers()
            half = len(part) // 2
            self.wfile.write(part[:half])
            self.wfile.flush()
            repo.release.wait(120)  # a stalled download: the connection stays open, no bytes come
            self.wfile.write(part[half:])
            self.wfile.flush()

        def _send(self, status: int, data: bytes, body: bool, headers=None, length=None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data) if length is None else length))
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler
