"""A real HTTP receiver for the webhooks the sandbox marketplaces send.

It runs a small FastAPI app under uvicorn on a free port in a background thread, records
every request with its raw body (signatures are checked over those exact bytes), and
answers each request with the next status of its script (200 once the script is spent).
"""

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse


@dataclass(frozen=True)
class ReceivedWebhook:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class WebhookReceiver:
    def __init__(self) -> None:
        self.received: list[ReceivedWebhook] = []
        self.script: deque[int] = deque()
        self.url = ""
        self._lock = threading.Lock()
        self.app = FastAPI()
        self.app.post("/{path:path}")(self._receive)

    def answer_with(self, *statuses: int) -> None:
        with self._lock:
            self.script.extend(statuses)

    async def _receive(self, path: str, request: Request) -> PlainTextResponse:
        body = await request.body()
        with self._lock:
            self.received.append(ReceivedWebhook(f"/{path}", {k.lower(): v for k, v in request.headers.items()}, body))
            status = self.script.popleft() if self.script else 200
        return PlainTextResponse("ok" if status < 300 else f"failing with {status}", status_code=status)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    server = uvicorn.Server(uvicorn.Config(receiver.app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the webhook receiver did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    receiver.url = f"http://127.0.0.1:{port}/webhooks/shopify"
    yield receiver
    server.should_exit = True
    thread.join(timeout=10)
