"""Background tasks started by a request must outlive it: the journal writer and the witness
supervisor are started by whoever comes first, an async view run through async_to_sync among them."""

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from voiceproject.loopbound import detached_task


def started_by_a_request(spawn):
    """What Django does with an async view behind a sync middleware: the middleware runs in a
    thread (sync_to_async), the view back on the loop (async_to_sync). The view starts a task
    and returns; the task goes on."""

    async def view():
        return spawn()

    return sync_to_async(lambda: async_to_sync(view)())()


async def later_database_call(started: asyncio.Event):
    await started.wait()
    return await sync_to_async(lambda: "done")()


@pytest.mark.asyncio
async def test_a_detached_task_can_still_run_sync_code_after_the_request_has_returned():
    go = asyncio.Event()
    task = await started_by_a_request(lambda: detached_task(later_database_call(go)))
    go.set()
    assert await asyncio.wait_for(task, 5) == "done"


@pytest.mark.asyncio
async def test_a_plain_task_of_the_request_cannot():
    """Why detached_task exists: asgiref's current-thread executor travels in the context."""
    go = asyncio.Event()
    task = await started_by_a_request(lambda: asyncio.get_running_loop().create_task(later_database_call(go)))
    go.set()
    with pytest.raises(RuntimeError, match="CurrentThreadExecutor"):
        await asyncio.wait_for(task, 5)
