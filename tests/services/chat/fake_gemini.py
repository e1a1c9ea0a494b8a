"""A local fake of the Gemini `generateContent` HTTP API, for driving the real google-genai client.

It records every request body and answers with scripted text, so a test can assert exactly what the
model was shown and decide what it "says" (including a hallucinated number or an obeyed injection).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[dict[str, Any]], str]


class FakeGemini:
    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []

    def prompt(self, i: int = -1) -> str:
        body = self.requests[i]
        return "\n".join(p.get("text", "") for c in body.get("contents", []) for p in c.get("parts", []))

    def system(self, i: int = -1) -> str:
        parts = self.requests[i].get("systemInstruction", {}).get("parts", [])
        return "\n".join(p.get("text", "") for p in parts)


def system_text(body: dict[str, Any]) -> str:
    return "\n".join(p.get("text", "") for p in body.get("systemInstruction", {}).get("parts", []))


@contextmanager
def serve(fake: FakeGemini) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            fake.requests.append(body)
            fake.paths.append(self.path)
            text = fake.reply(body)
            payload = {
                "candidates": [
                    {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}
                ],
                "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2},
            }
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
