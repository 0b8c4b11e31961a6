"""Start and stop the whole of Stocksync as separate processes: the embedded default.

Used by `make run` (with the demo merchant) and by the end-to-end tests. Every piece
can be swapped for a real server: `DATABASE_URL` and `KAFKA_BOOTSTRAP_SERVERS` point the
same code at an existing PostgreSQL and Kafka instead of the embedded ones.

`Stack.supervise` runs the stack like Kubernetes would: a process that exits without
being asked to (a crash, SIGKILL included) is restarted with a capped exponential
backoff, the embedded broker and PostgreSQL too; the stack stops only on `Stack.stop`
(Ctrl-C for `make run`).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stocksync_common.kafka import ensure_topics
from stocksync_common.topics import CATALOGUE, CHANNEL_QUANTITY, CONNECTIONS, ORDERS, STOCK_CHANGED
from stocksync_embedded.broker import EmbeddedBroker
from stocksync_embedded.postgres import EmbeddedPostgres

# (service name, python module) in the order they start; they stop in the order events
# flow (`Stack.stop`).
SERVICES: tuple[tuple[str, str], ...] = (
    ("stock-ledger", "stock_ledger"),
    ("rule-engine", "rule_engine"),
    ("channel-publisher", "channel_publisher"),
    ("order-ingest", "order_ingest"),
)

# The consumer group of each service and the topics its upstream writes for it.
CONSUMES: dict[str, tuple[str, list[str]]] = {
    "stock-ledger": ("stock-ledger", [ORDERS.name, CONNECTIONS.name]),
    "rule-engine": ("rule-engine", [STOCK_CHANGED.name, CATALOGUE.name, CONNECTIONS.name]),
    "channel-publisher": ("channel-publisher", [CHANNEL_QUANTITY.name]),
}


def free_port() -> int:
    """A port nothing listens on now (tests and benchmarks run stacks side by side)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def consumer_lag(bootstrap_servers: str, group: str, topics: list[str]) -> int:
    """Records of `topics` that `group` has not committed yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    try:
        await admin.start()
        await reader.start()
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in reader.partitions_for_topic(topic) or ()
        ]
        ends = await reader.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        return sum(
            max(0, ends[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0))
            for tp in partitions
        )
    finally:
        await reader.stop()
        await admin.close()


@dataclass
class Ports:
    gateway: int = 8000
    order_ingest: int = 8001
    stock_ledger: int = 8002
    rule_engine: int = 8003
    channel_publisher: int = 8004
    postgres: int = 55432
    broker: int = 59092
    console: int = 8005

    def of(self, service: str) -> int:
        port: int = getattr(self, service.replace("-", "_"))
        return port

    @classmethod
    def free(cls) -> Ports:
        """A free port for every process."""
        return cls(*(free_port() for _ in fields(cls)))


@dataclass
class ManagedProcess:
    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    health_url: str | None = None
    process: subprocess.Popen[bytes] | None = None
    # Set by `stop`: an exit that was asked for, which the supervisor leaves alone.
    stopped: bool = False
    started_at: float = 0.0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def crashed(self) -> bool:
        """Started, not asked to stop, and exited."""
        return self.process is not None and not self.stopped and self.process.poll() is not None

    def start(self) -> None:
        self.stopped = False
        self.started_at = time.monotonic()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it open
        self.process = subprocess.Popen(
            self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 120.0) -> None:
        if self.health_url is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
            try:
                if httpx.get(self.health_url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout}s; see {self.log_path}")

    def stop(self, timeout: float = 25.0) -> int | None:
        self.stopped = True
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.terminate()  # SIGTERM: a graceful shutdown
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash: the supervisor (if running) restarts the process."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class Restart:
    name: str
    at: float  # time.time()
    exit_code: int | None
    delay_s: float


@dataclass
class Backoff:
    """Capped exponential backoff per process; reset once it has run `healthy_after_s`."""

    initial_s: float = 1.0
    max_s: float = 30.0
    healthy_after_s: float = 60.0
    delays: dict[str, float] = field(default_factory=dict)

    def next_delay(self, name: str, ran_for_s: float) -> float:
        if ran_for_s >= self.healthy_after_s:
            self.delays.pop(name, None)
        delay = self.delays.get(name, self.initial_s)
        self.delays[name] = min(self.max_s, delay * 2)
        return delay


@dataclass
class Stack:
    home: Path
    ports: Ports = field(default_factory=Ports)
    api_key_secret: str = "dev-only-change-me"
    admin_token: str = "dev-only-change-me"
    secrets_key: str = "dev-only-change-me"
    console_session_secret: str = "dev-only-change-me"
    database_url: str | None = None
    kafka_bootstrap_servers: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    # How long `stop` waits for each consumer group to catch up (embedded broker only).
    drain_timeout_s: float = 10.0
    postgres: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    # The port of every other instance of a service (`start_service`), by (service, instance).
    instance_ports: dict[tuple[str, int], int] = field(default_factory=dict)
    backoff: Backoff = field(default_factory=Backoff)
    restarts: list[Restart] = field(default_factory=list)
    _supervisor: threading.Thread | None = None
    _supervising: threading.Event = field(default_factory=threading.Event)
    # Held while the supervisor restarts something, and by `stop`.
    _lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    def service_port(self, service: str, instance: int = 0) -> int:
        """Instance 0 listens on the service's port in `ports`, another instance on its own."""
        return self.instance_ports[(service, instance)] if instance else self.ports.of(service)

    def service_url(self, service: str, instance: int = 0) -> str:
        return f"http://127.0.0.1:{self.service_port(service, instance)}"

    def service_urls(self, service: str) -> list[str]:
        """Every instance of `service`: the first, then those `start_service` started."""
        more = [instance for name, instance in self.instance_ports if name == service]
        return [self.service_url(service, instance) for instance in (0, *more)]

    def start_infrastructure(self, use_environment: bool = True) -> None:
        """Start what is not given: by URL, by the environment, else embedded."""
        self.home.mkdir(parents=True, exist_ok=True)
        if use_environment:
            self.database_url = self.database_url or os.environ.get("DATABASE_URL")
            self.kafka_bootstrap_servers = self.kafka_bootstrap_servers or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not self.database_url:
            self.postgres = EmbeddedPostgres(self.home, self.ports.postgres)
            self.postgres.start()
            self.database_url = self.postgres.url
        if not self.kafka_bootstrap_servers:
            self.broker = EmbeddedBroker(self.ports.broker, self.home / "logs" / "broker.log")
            (self.home / "logs").mkdir(parents=True, exist_ok=True)
            self.broker.start()
            self.kafka_bootstrap_servers = self.broker.bootstrap_servers
        asyncio.run(ensure_topics(self.kafka_bootstrap_servers))

    def service_env(self, service: str, instance: int = 0) -> dict[str, str]:
        assert self.database_url and self.kafka_bootstrap_servers
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
                "HTTP_PORT": str(self.service_port(service, instance)),
                "API_KEY_SECRET": self.api_key_secret,
                "API_KEYS_URL": self.service_url("stock-ledger"),
                "ADMIN_TOKEN": self.admin_token,
                "SECRETS_KEY": self.secrets_key,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def migrate(self) -> None:
        for service, module in SERVICES:
            subprocess.run(
                [sys.executable, "-m", module, "migrate"],
                env=self.service_env(service),
                check=True,
                stdout=subprocess.DEVNULL,
            )

    def start_service(self, service: str, instance: int = 0) -> ManagedProcess:
        """Start instance `instance` of `service` without waiting for it to be ready.

        Instance 0 is the service itself, the one the gateway calls; instance N > 0 is
        another process of the same service on the same database and broker, on a port of
        its own, named `<service> #<N + 1>` (its log `<service>-<N + 1>.log`).
        """
        if instance and (service, instance) not in self.instance_ports:
            self.instance_ports[(service, instance)] = free_port()
        name = f"{service} #{instance + 1}" if instance else service
        process = ManagedProcess(
            name,
            [sys.executable, "-m", dict(SERVICES)[service], "serve"],
            self.service_env(service, instance),
            self.home / "logs" / f"{name.replace(' #', '-')}.log",
            f"{self.service_url(service, instance)}/readyz",
        )
        process.start()
        self.processes[name] = process
        return process

    def start_services(self) -> None:
        started = [self.start_service(service) for service, _ in SERVICES]
        for process in started:
            process.wait_ready()
        self.add_process(self.console_process())
        gateway = ManagedProcess(
            "gateway",
            [
                sys.executable,
                "-m",
                "stocksync_embedded.gateway",
                "--port",
                str(self.ports.gateway),
                *[arg for service, _ in SERVICES for arg in ("--upstream", f"{service}={self.service_url(service)}")],
                *("--upstream", f"console={self.service_url('console')}"),
            ],
            dict(os.environ),
            self.home / "logs" / "gateway.log",
            f"{self.base_url}/healthz",
        )
        gateway.start()
        gateway.wait_ready()
        self.processes["gateway"] = gateway

    def console_process(self) -> ManagedProcess:
        """The merchant console: it calls the public API through the gateway, like a browser would."""
        env = dict(os.environ)
        env.update(
            {
                "HTTP_PORT": str(self.ports.console),
                "CONSOLE_API_BASE_URL": self.base_url,
                "CONSOLE_SESSION_SECRET": self.console_session_secret,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return ManagedProcess(
            "console",
            [sys.executable, "-m", "merchant_console", "serve"],
            env,
            self.home / "logs" / "console.log",
            f"{self.service_url('console')}/healthz",
        )

    def wait_drained(self, group: str, topics: list[str]) -> int:
        """Wait until `group` has committed every record of `topics`; return what is left."""
        assert self.kafka_bootstrap_servers
        deadline = time.monotonic() + self.drain_timeout_s
        while True:
            try:
                left = asyncio.run(consumer_lag(self.kafka_bootstrap_servers, group, topics))
            except Exception:  # the broker is gone or unreachable: nothing to wait for
                return 0
            if left == 0 or time.monotonic() > deadline:
                return left
            time.sleep(0.2)

    def add_process(self, process: ManagedProcess) -> ManagedProcess:
        process.start()
        process.wait_ready()
        self.processes[process.name] = process
        return process

    def supervise(self, poll_s: float = 0.2) -> None:
        """Restart what crashes, until `stop`. Runs in a daemon thread."""
        if self._supervisor is not None:
            return
        self._supervising.set()
        self._supervisor = threading.Thread(target=self._supervise, args=(poll_s,), name="supervisor", daemon=True)
        self._supervisor.start()

    def _supervise(self, poll_s: float) -> None:
        due: dict[str, float] = {}  # name -> monotonic time of its restart
        while self._supervising.is_set():
            try:
                with self._lock:
                    if self._supervising.is_set():
                        self._supervise_once(due)
            except Exception as exc:  # keep supervising whatever one restart did
                self._report(f"supervisor: {type(exc).__name__}: {exc}")
            time.sleep(poll_s)

    def _supervise_once(self, due: dict[str, float]) -> None:
        now = time.monotonic()
        if self.postgres is not None and not self.postgres.running:
            self._report("postgres is not running; restarting it")
            self.postgres.start()
            self.restarts.append(Restart("postgres", time.time(), None, 0.0))
        if self.broker is not None and self.broker.crashed:
            self._restart_broker()
        for name, process in list(self.processes.items()):
            if not process.crashed:
                continue
            if name not in due:
                assert process.process is not None
                delay = self.backoff.next_delay(name, now - process.started_at)
                due[name] = now + delay
                self.restarts.append(Restart(name, time.time(), process.process.returncode, delay))
                self._report(
                    f"{name} exited ({process.process.returncode}); restarting in {delay:g} s; see {process.log_path}"
                )
            elif now >= due[name]:
                del due[name]
                process.start()

    def service_processes(self) -> list[ManagedProcess]:
        """Every started instance of every service, in `SERVICES` order, instance 0 first."""
        names = [
            name
            for service, _ in SERVICES
            for name in [service, *(f"{service} #{i + 1}" for s, i in sorted(self.instance_ports) if s == service)]
        ]
        return [self.processes[name] for name in names if name in self.processes]

    def _restart_broker(self) -> None:
        """A new, empty broker. The services are stopped first, so that no consumer
        carries a position of the old broker over to the new one; then the topics are
        recreated and the services start again: their consumers start from the
        beginning of the new topics (the old broker's committed offsets are gone) and
        their relays republish what they retained."""
        assert self.broker is not None and self.kafka_bootstrap_servers
        delay = self.backoff.next_delay("broker", 0.0)
        self._report(f"broker exited; restarting it and the services in {delay:g} s")
        self.restarts.append(Restart("broker", time.time(), None, delay))
        services = self.service_processes()
        for process in services:
            process.stop(timeout=5)
        time.sleep(delay)
        self.broker.start()
        asyncio.run(ensure_topics(self.kafka_bootstrap_servers))
        for process in services:
            process.start()
        self._report("broker restarted; services restarted on it")

    def _report(self, message: str) -> None:
        print(f"Stocksync: {message}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        """Stop sandboxes and gateway first, then the services in the order events flow.

        Each service (every instance of it) stops after the one that feeds it. On the embedded broker, which
        keeps records in memory only, a service is stopped only once its consumer group
        has committed everything its upstream published (at most `drain_timeout_s`), so
        that a Ctrl-C of `make run` delivers everything before the broker goes; an event
        still unconsumed after that (a stuck consumer) is republished to the next broker
        from its producer's outbox (kept for `OUTBOX_RETENTION_S`). Supervision ends
        first, so nothing stopped here is restarted.
        """
        self._supervising.clear()
        if self._supervisor is not None:
            self._supervisor.join()
            self._supervisor = None
        flow = ["order-ingest", "stock-ledger", "rule-engine", "channel-publisher"]
        instances = {name: [p for p in self.service_processes() if p.name.split(" #")[0] == name] for name in flow}
        services = {p.name for processes in instances.values() for p in processes}
        for name in reversed(list(self.processes)):
            if name not in services:
                self.processes[name].stop()
        for name in flow:
            if self.broker is not None and name in CONSUMES and any(p.running for p in instances[name]):
                group, topics = CONSUMES[name]
                left = self.wait_drained(group, topics)
                if left:
                    print(f"{name}: {left} events still unconsumed after {self.drain_timeout_s:g} s", file=sys.stderr)
            for process in instances[name]:
                process.stop()
        self.processes.clear()
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()
