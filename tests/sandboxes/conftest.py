"""A real HTTP receiver for the webhooks the sandbox marketplaces send.

It runs a small FastAPI app under uvicorn on a free port in a background thread, records
every request with its raw body (signatures are checked over those exact bytes), and
answers each request with the next status of its script (200 once the script is spent).
"""

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from tests.served_app import serve


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
    served = serve(receiver.app)
    receiver.url = f"{served.url}/webhooks/shopify"
    yield receiver
    served.stop()
