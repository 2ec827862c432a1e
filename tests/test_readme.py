"""The README's quick-start example works exactly as written."""

from __future__ import annotations

import re
import secrets
import sys
import types
from pathlib import Path

import httpx
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_block(first_line: str) -> str:
    for block in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"README has no python block starting with {first_line!r}")


async def test_the_starlette_quick_start_runs_as_written(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = readme_block("# app.py — run with: uvicorn app:app")
    assert len(source.strip().splitlines()) <= 25
    monkeypatch.setenv("SESSION_SECRET", secrets.token_urlsafe(32))
    monkeypatch.chdir(tmp_path)  # the example's SQLite file lands here
    module = types.ModuleType("readme_app")
    exec(compile(source, "README.md:app.py", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "readme_app", module)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=module.app), base_url="http://x") as c:
        assert (await c.get("/")).json() == {"visits": 1, "new": True}
        assert (await c.get("/")).json() == {"visits": 2, "new": False}
    assert (tmp_path / "sessions.db").exists()
