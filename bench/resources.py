"""CPU and peak memory of each process of a run, sampled with psutil in a thread.

A group is a root process and its children (PostgreSQL forks a backend per
connection). CPU is user + system seconds spent during the window, over every process
seen in the group; memory is the peak of the group's resident memory, with pages shared
between its processes counted once (private RSS summed, plus the largest shared part).
"""

from __future__ import annotations

import threading
import time

import psutil


class ResourceSampler:
    def __init__(self, groups: dict[str, int], interval: float = 0.25) -> None:
        self.groups = {name: pid for name, pid in groups.items() if pid}
        self.interval = interval
        self._first: dict[str, dict[int, float]] = {name: {} for name in self.groups}
        self._last: dict[str, dict[int, float]] = {name: {} for name in self.groups}
        self._peak_rss: dict[str, int] = dict.fromkeys(self.groups, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started_at = 0.0
        self.stopped_at = 0.0

    def _processes(self, pid: int) -> list[psutil.Process]:
        try:
            root = psutil.Process(pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def _sample(self) -> None:
        for name, pid in self.groups.items():
            private, shared = 0, 0
            for process in self._processes(pid):
                try:
                    with process.oneshot():
                        times = process.cpu_times()
                        memory = process.memory_info()
                except psutil.Error:
                    continue
                # PostgreSQL backends map the same shared buffers: count shared pages once.
                mapped = getattr(memory, "shared", 0)
                private += memory.rss - mapped
                shared = max(shared, mapped)
                spent = times.user + times.system
                # A process born during the window counts from zero.
                self._first[name].setdefault(process.pid, spent if not self.started_at else 0.0)
                self._last[name][process.pid] = spent
            self._peak_rss[name] = max(self._peak_rss[name], private + shared)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> None:
        self._sample()
        self.started_at = time.monotonic()
        self._thread.start()

    def stop(self) -> dict[str, dict[str, float]]:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.stopped_at = time.monotonic()
        wall = max(self.stopped_at - self.started_at, 1e-9)
        out = {}
        for name in self.groups:
            cpu = sum(self._last[name][pid] - self._first[name].get(pid, 0.0) for pid in self._last[name])
            out[name] = {
                "cpu_seconds": round(cpu, 3),
                "cpu_cores": round(cpu / wall, 3),
                "peak_rss_mb": round(self._peak_rss[name] / 2**20, 1),
            }
        return out


def postgres_pid(data_dir: str) -> int | None:
    try:
        with open(f"{data_dir}/postmaster.pid") as pid_file:
            return int(pid_file.readline().strip())
    except (OSError, ValueError):
        return None
