"""The one background loop (stocksync_common.periodic): failures are retried, a backlog
runs at once, a wake runs the step now, a stop ends the loop after the step in flight."""

from __future__ import annotations

import asyncio

from stocksync_common.periodic import Periodic


class Calls:
    """Counts a step's calls; `reached(n)` waits until it has run n times."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Condition()

    async def record(self) -> int:
        async with self._changed:
            self.count += 1
            self._changed.notify_all()
            return self.count

    async def reached(self, n: int) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.count >= n), 5)


def test_a_failing_step_is_retried_at_the_next_tick_and_the_loop_goes_on() -> None:
    async def scenario() -> int:
        calls = Calls()

        async def step() -> None:
            if await calls.record() < 3:
                raise RuntimeError("database down")

        worker = Periodic("flaky", 0.01, step)
        task = asyncio.create_task(worker.run())
        await calls.reached(4)
        worker.request_stop()
        await asyncio.wait_for(task, 5)
        return calls.count

    assert asyncio.run(scenario()) >= 4


def test_a_step_with_more_work_runs_again_without_waiting_a_tick() -> None:
    async def scenario() -> int:
        calls = Calls()

        async def step() -> bool:
            return await calls.record() < 3  # a backlog of three runs

        worker = Periodic("backlog", 3600, step)
        task = asyncio.create_task(worker.run())
        await calls.reached(3)  # an hour's tick between runs would time this out
        worker.request_stop()
        await asyncio.wait_for(task, 5)
        return calls.count

    assert asyncio.run(scenario()) == 3


def test_wake_runs_the_step_now_and_a_stop_ends_the_loop_without_a_tick() -> None:
    async def scenario() -> tuple[int, bool]:
        calls = Calls()

        async def step() -> None:
            await calls.record()

        worker = Periodic("woken", 3600, step)
        task = asyncio.create_task(worker.run())
        await calls.reached(1)
        worker.wake()
        await calls.reached(2)
        worker.request_stop()
        await asyncio.wait_for(task, 5)  # an hour's tick would time this out
        return calls.count, worker.stopping

    assert asyncio.run(scenario()) == (2, True)


def test_a_wake_during_the_step_runs_it_once_more() -> None:
    async def scenario() -> int:
        calls = Calls()
        woken_once: list[Periodic] = []

        async def step() -> None:
            if await calls.record() == 1:
                woken_once[0].wake()

        worker = Periodic("rewoken", 3600, step)
        woken_once.append(worker)
        task = asyncio.create_task(worker.run())
        await calls.reached(2)
        worker.request_stop()
        await asyncio.wait_for(task, 5)
        return calls.count

    assert asyncio.run(scenario()) == 2
