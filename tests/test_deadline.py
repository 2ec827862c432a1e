"""One timer per loop bounds every store call like asyncio.timeout would."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from coatcheck.errors import SessionStoreError


async def _answer(value: int) -> int:
    await asyncio.sleep(0)
    return value


# RuntimeBase.bounded holds the deadline's body; store errors come out as SessionStoreError
def _runtime(seconds: float | None) -> Any:
    from coatcheck.runtime import RuntimeBase
    from tests.helpers import make_settings

    return RuntimeBase(make_settings(store_timeout=seconds))


def test_bounded_calls_within_the_deadline_return_their_result() -> None:
    async def main() -> list[int]:
        runtime = _runtime(5.0)
        return [await runtime.bounded("loading a session", _answer(i), "store") for i in range(100)]

    assert asyncio.run(main()) == list(range(100))


@pytest.mark.parametrize("seconds", [None, 5.0])
def test_bounded_without_a_running_deadline_awaits_the_call(seconds: float | None) -> None:
    assert asyncio.run(_runtime(seconds).bounded("loading a session", _answer(3), "store")) == 3


def test_a_bounded_call_past_the_deadline_is_a_store_error_and_leaves_the_task_uncancelled() -> None:
    async def main() -> tuple[int, int]:
        runtime = _runtime(0.01)
        never = asyncio.get_running_loop().create_future()
        with pytest.raises(SessionStoreError, match=r"timed out after 0\.01s"):
            await runtime.bounded("loading a session", never, "store")
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling(), await runtime.bounded("loading a session", _answer(7), "store")

    assert asyncio.run(main()) == (0, 7)


def test_only_the_overdue_bounded_call_of_concurrent_calls_times_out() -> None:
    async def main() -> list[object]:
        runtime = _runtime(0.05)
        release = asyncio.Event()

        async def stuck() -> str:
            await runtime.bounded("loading a session", asyncio.get_running_loop().create_future(), "s")
            return "unreachable"

        async def late_but_quick() -> str:
            await release.wait()
            return await runtime.bounded("loading a session", _answer(1), "s") and "done"

        first = asyncio.create_task(stuck())
        second = asyncio.create_task(late_but_quick())
        with pytest.raises(SessionStoreError):
            await first
        release.set()
        return [await second]

    assert asyncio.run(main()) == ["done"]


def test_a_cancel_from_outside_a_bounded_call_is_not_turned_into_a_store_error() -> None:
    async def main() -> None:
        runtime = _runtime(5.0)
        never = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(runtime.bounded("loading a session", never, "store"))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_each_event_loop_gets_its_own_watch() -> None:
    runtime = _runtime(0.01)

    async def times_out() -> None:
        with pytest.raises(SessionStoreError):
            await runtime.bounded("loading a session", asyncio.get_running_loop().create_future(), "s")

    asyncio.run(times_out())
    asyncio.run(times_out())  # a watch bound to the first (closed) loop would never fire here
