"""bench.process.agent: the child's end of the JSON-lines protocol, driven from the parent's end."""

from __future__ import annotations

import pytest

from bench.process import Child, ChildError
from tests.support import UNIT


def test_send_and_agent_commands_round_trip() -> None:
    code = (
        "import asyncio\n"
        "from bench.process import commands, say\n"
        "async def main():\n"
        "    async for c in commands():\n"
        "        say({'echo': c})\n"
        "asyncio.run(main())\n"
    )
    with Child(["-c", code]) as child:
        assert child.request({"cmd": "x", "n": 1}, "echo", 30 * UNIT) == {"echo": {"cmd": "x", "n": 1}}
        child.proc.stdin.write(b"garbage\n")  # type: ignore[union-attr]
        child.proc.stdin.flush()  # type: ignore[union-attr]
        with pytest.raises(ChildError, match="not a command"):
            child.expect("echo", 30 * UNIT)


def test_eof_on_stdin_ends_the_commands() -> None:
    code = (
        "import asyncio\n"
        "from bench.process import commands, say\n"
        "async def main():\n"
        "    n = 0\n"
        "    async for _ in commands():\n"
        "        n += 1\n"
        "    say({'done': n})\n"
        "asyncio.run(main())\n"
    )
    with Child(["-c", code]) as child:
        child.send({"cmd": "a"})
        child.send({"cmd": "b"})
        child.proc.stdin.close()  # type: ignore[union-attr]
        assert child.expect("done", 30 * UNIT) == {"done": 2}
