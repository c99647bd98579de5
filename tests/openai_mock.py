"""A local stand-in for an OpenAI-compatible server (vLLM's chat completions) and the OpenAI Batch API
(``/files``, ``/batches``), run in a thread of the test process (stdlib http.server).

The "model" answers each prompt with option log-probs that are a pure function of the prompt text
(so every answer can be checked), and bills ``len(text) // 4`` prompt tokens and one completion
token. A batch completes after ``polls_to_finish`` retrievals; ``fail_every`` makes every n-th
request line of a batch fail (status 500) so that missing answers are exercised.
"""

from __future__ import annotations

import email.parser
import hashlib
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

K_MAX = 5  # labels "1".."5": items of up to five options


def answer(text: str) -> list[float]:
    """The mock model's probabilities of the labels "1".."5" (they sum to 0.9; 0.1 goes to "The")."""
    h = hashlib.sha256(text.encode("utf-8")).digest()
    u = [h[j] + 1.0 for j in range(K_MAX)]
    return [0.9 * x / sum(u) for x in u]


def prompt_text(messages: list[dict]) -> str:
    return "\n".join(m["content"] for m in messages)


def completion(body: dict) -> dict:
    text = prompt_text(body["messages"])
    probs = answer(text)
    alts = sorted([(str(j + 1), math.log(p)) for j, p in enumerate(probs)] + [("The", math.log(0.1))],
                  key=lambda a: -a[1])
    top = [{"token": t, "logprob": lp, "bytes": None} for t, lp in alts]
    return {"id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "length",
                         "message": {"role": "assistant", "content": alts[0][0]},
                         "logprobs": {"content": [{"token": alts[0][0], "logprob": alts[0][1], "bytes": None,
                                                   "top_logprobs": top}]}}],
            "usage": {"prompt_tokens": len(text) // 4, "completion_tokens": 1, "total_tokens": len(text) // 4 + 1}}


class MockServer:
    """``with MockServer() as s: s.url`` -- the API root (``http://127.0.0.1:PORT/v1``)."""

    def __init__(self, polls_to_finish: int = 2, fail_every: int = 0):
        self.polls_to_finish, self.fail_every = polls_to_finish, fail_every
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.counts = {"chat": 0, "batch_lines": 0, "batch_failed": 0, "batches_created": 0, "polls": 0}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _send(self, obj, code=200, raw: bytes | None = None):
                data = raw if raw is not None else json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n)
                if self.path.endswith("/chat/completions"):
                    with server.lock:
                        server.counts["chat"] += 1
                    return self._send(completion(json.loads(body)))
                if self.path.endswith("/files"):
                    msg = email.parser.BytesParser().parsebytes(
                        b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body)
                    data = next(p.get_payload(decode=True) for p in msg.get_payload()
                                if p.get_param("name", header="content-disposition") == "file")
                    with server.lock:
                        fid = f"file-{len(server.files)}"
                        server.files[fid] = data
                    return self._send({"id": fid, "object": "file", "bytes": len(data), "created_at": 0,
                                       "filename": "requests.jsonl", "purpose": "batch"})
                if self.path.endswith("/batches"):
                    req = json.loads(body)
                    with server.lock:
                        bid = f"batch_{len(server.batches)}"
                        server.counts["batches_created"] += 1
                        server.batches[bid] = {"id": bid, "object": "batch", "endpoint": req["endpoint"],
                                               "input_file_id": req["input_file_id"],
                                               "completion_window": req["completion_window"], "status": "validating",
                                               "created_at": 0, "output_file_id": None, "polls": 0}
                    return self._send(server._public(bid))
                return self._send({"error": {"message": "not found"}}, 404)

            def do_GET(self):
                parts = self.path.rstrip("/").split("/")
                if "batches" in parts:
                    return self._send(server._poll(parts[-1]))
                if parts[-1] == "content":
                    return self._send(None, raw=server.files[parts[-2]])
                return self._send({"object": "list", "data": [{"id": "mock", "object": "model"}]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def _public(self, bid: str) -> dict:
        return {k: v for k, v in self.batches[bid].items() if k != "polls"}

    def _poll(self, bid: str) -> dict:
        with self.lock:
            b = self.batches[bid]
            b["polls"] += 1
            self.counts["polls"] += 1
            if b["status"] != "completed" and b["polls"] >= self.polls_to_finish:
                out = []
                for i, line in enumerate(self.files[b["input_file_id"]].decode().splitlines()):
                    req = json.loads(line)
                    self.counts["batch_lines"] += 1
                    if self.fail_every and i % self.fail_every == self.fail_every - 1:
                        resp = {"status_code": 500, "request_id": f"r{i}", "body": {"error": "server"}}
                        self.counts["batch_failed"] += 1
                    else:
                        resp = {"status_code": 200, "request_id": f"r{i}", "body": completion(req["body"])}
                    out.append(json.dumps({"id": f"req_{i}", "custom_id": req["custom_id"], "response": resp,
                                           "error": None}))
                fid = f"file-{len(self.files)}"
                self.files[fid] = ("\n".join(out) + "\n").encode()
                b.update(status="completed", output_file_id=fid)
            elif b["status"] == "validating":
                b["status"] = "in_progress"
            return self._public(bid)

    def __enter__(self) -> "MockServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
