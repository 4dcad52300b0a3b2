"""A local server speaking the subset of Pinecone's data-plane REST API that the Pinecone client
(through langchain-pinecone) uses: upsert, query (cosine, metadata equality filter), fetch and
delete by id, per namespace, in memory; every request must carry the ``Api-Key`` header. Tests
start it on 127.0.0.1 with `tests.local_http.serve` and give its URL as the index ``host``."""

from __future__ import annotations

import math
import threading
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.local_http import JSONHandler

API_KEY = "pc-local-key"
STORE: dict[str, dict[str, dict[str, Any]]] = {}
REQUESTS: list[tuple[str, str]] = []
_LOCK = threading.Lock()


def _cosine(a: list[float], b: list[float]) -> float:
    na = math.sqrt(sum(x * x for x in a)) or 1.0
    nb = math.sqrt(sum(x * x for x in b)) or 1.0
    return sum(x * y for x, y in zip(a, b, strict=False)) / na / nb


def _matches(metadata: dict[str, Any], wanted: dict[str, Any] | None) -> bool:
    for key, cond in (wanted or {}).items():
        value = cond.get("$eq") if isinstance(cond, dict) else cond
        if metadata.get(key) != value:
            return False
    return True


class PineconeHandler(JSONHandler):
    def _authorized(self) -> bool:
        REQUESTS.append((self.command, urlparse(self.path).path))
        if self.headers.get("Api-Key") != API_KEY:
            self.send_json({"code": 16, "message": "Invalid API Key"}, status=401)
            return False
        return True

    def do_POST(self) -> None:
        if not self._authorized():
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.read_json() if length else {}
        path = urlparse(self.path).path
        with _LOCK:
            space = STORE.setdefault(body.get("namespace") or "", {})
            if path == "/vectors/upsert":
                for v in body["vectors"]:
                    space[v["id"]] = {"id": v["id"], "values": v["values"], "metadata": v.get("metadata") or {}}
                self.send_json({"upsertedCount": len(body["vectors"])})
            elif path == "/vectors/delete":
                for vid in body.get("ids") or []:
                    space.pop(vid, None)
                self.send_json({})
            elif path == "/query":
                hits = [
                    {"id": vid, "score": _cosine(body["vector"], rec["values"]), "metadata": rec["metadata"]}
                    for vid, rec in space.items()
                    if _matches(rec["metadata"], body.get("filter"))
                ]
                hits.sort(key=lambda h: -h["score"])
                self.send_json({"matches": hits[: body["topK"]], "namespace": body.get("namespace") or ""})
            else:
                self.send_json({"code": 5, "message": f"not found: {path}"}, status=404)

    def do_GET(self) -> None:
        if not self._authorized():
            return
        url = urlparse(self.path)
        query = parse_qs(url.query)
        namespace = (query.get("namespace") or [""])[0]
        if url.path != "/vectors/fetch":
            self.send_json({"code": 5, "message": f"not found: {url.path}"}, status=404)
            return
        with _LOCK:
            space = STORE.get(namespace, {})
            found = {vid: space[vid] for vid in query.get("ids", []) if vid in space}
        self.send_json({"vectors": found, "namespace": namespace})
