"""A work meter for linear-time tests: counts what code does instead of timing it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection
from types import FrameType


def work_of(run: Callable[[bytes], object], data: bytes, filenames: Collection[str]) -> int:
    """Steps the code in `filenames` takes while `run` handles `data`: one per line executed,
    plus, for each call into C made from that code, the length of the bytes it works on
    (what `split`, `partition` or `strip` examine). Counted, never timed."""
    steps = 0

    def on_line(frame: FrameType, event: str, arg: object) -> object:
        nonlocal steps
        if event == "line":
            steps += 1
        return on_line

    def on_call(frame: FrameType, event: str, arg: object) -> object:
        return on_line if frame.f_code.co_filename in filenames else None

    def on_c_call(frame: FrameType, event: str, arg: object) -> None:
        nonlocal steps
        if event == "c_call" and frame.f_code.co_filename in filenames:
            target = getattr(arg, "__self__", None)
            steps += len(target) if isinstance(target, bytes | bytearray) else 1

    previous_trace, previous_profile = sys.gettrace(), sys.getprofile()
    sys.settrace(on_call)
    sys.setprofile(on_c_call)
    try:
        run(data)
    finally:
        sys.settrace(previous_trace)
        sys.setprofile(previous_profile)
    return steps


def growth(
    run: Callable[[bytes], object], unit: bytes, filenames: Collection[str], size: int = 4096
) -> float:
    """How much more work `run` does on 8x the input: ~8 if linear, ~64 if quadratic."""
    small, large = unit * (size // len(unit)), unit * (8 * size // len(unit))
    return work_of(run, large, filenames) / work_of(run, small, filenames)
