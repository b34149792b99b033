"""ConfigThread: jobs run beside the loop, swaps run on it, and only config changes freeze."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from shadowmesh.control.offload import ConfigThread
from shadowmesh.control.store import StoreError


def test_jobs_run_off_the_loop_and_swaps_on_it() -> None:
    async def main() -> None:
        config = ConfigThread(asyncio.get_running_loop())
        loop_thread = threading.get_ident()
        swapped: list[int] = []

        def swap(table: str) -> None:
            if table == "refused":
                raise OSError("port taken")
            swapped.append(threading.get_ident())

        on_loop = config.on_loop(swap)

        def job(table: str) -> int:
            on_loop(table)  # waits for the loop, which keeps running meanwhile
            return threading.get_ident()

        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.get_running_loop().create_task(ticker())
        job_thread = await config.run(job, "table")
        assert job_thread != loop_thread and swapped == [loop_thread]
        with pytest.raises(OSError, match="port taken"):
            await config.run(job, "refused")  # the loop's exception reaches the job
        on_loop("direct")  # on the loop itself: just runs
        assert swapped == [loop_thread, loop_thread]
        assert ticks > 0
        task.cancel()
        await config.close()

    asyncio.run(main())


def test_only_a_config_change_freezes_what_survives_it() -> None:
    async def main() -> None:
        config = ConfigThread(asyncio.get_running_loop())
        gc.unfreeze()
        kept = [object() for _ in range(10)]
        assert await config.read(gc.isenabled) is False  # paused while a job runs
        assert gc.isenabled() and gc.get_freeze_count() == 0
        await config.run(len, kept)
        assert gc.isenabled() and gc.get_freeze_count() > 0
        gc.unfreeze()
        await config.close()

    asyncio.run(main())


def test_a_worker_keeps_its_table_while_the_store_fails() -> None:
    """follow_store: a failing load is said once, the table kept, and retried until it works."""
    from shadowmesh.cli import workers

    class Flaky:
        revision = 0
        starts = 0

        def start(self) -> list[str]:
            self.starts += 1
            if self.starts <= 3:
                raise StoreError("config.db: the disk is full")
            return ["loaded"]

    async def main() -> list[str]:
        config = ConfigThread(asyncio.get_running_loop())
        flaky = Flaky()
        said: list[str] = []
        task = asyncio.get_running_loop().create_task(
            workers.follow_store(config, flaky, said.append)  # type: ignore[arg-type]
        )
        await asyncio.sleep(0.05)
        flaky.revision = 1
        for _ in range(500):  # 10 s at most
            if "loaded" in said:
                break
            await asyncio.sleep(0.02)
        task.cancel()
        await config.close()
        return said

    said = asyncio.run(main())
    assert said == ["keeping the current config: config.db: the disk is full", "loaded"]
