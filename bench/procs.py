"""Starting `bench.botproc` bots as subprocesses and reading their milestones and memory."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import GUILD_READY_TIMEOUT
from tests.test_robustness_support import BotProcess


@dataclass(frozen=True)
class Memory:
    """From /proc/PID/status: resident now and the peak (high-water mark), in KiB."""

    rss_kib: int
    hwm_kib: int


def read_memory(pid: int) -> Memory:
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])  # "  12345 kB"
    return Memory(values["VmRSS"], values["VmHWM"])


class MilestoneError(RuntimeError):
    """A milestone that never came: the bot exited first, or took too long."""


class MilestoneBot(BotProcess):
    """A bot of `kind` in `python -m bench.botproc KIND`, which prints its milestones
    (`built`, `ready`, `engine_started`, ...) on stdout as JSON lines: read as they come
    into `milestones`, by name. Its stderr goes to its log file, as any `BotProcess`'s does.
    `steered`: started with `--steer-clock` (see `steer_clock`)."""

    grace = 15.0

    def __init__(
        self,
        workdir: Path,
        config: Path,
        token: str,
        name: str,
        *,
        kind: str,
        sync: bool,
        extra_args: Sequence[str] = (),
        steered: bool = False,
    ) -> None:
        argv = ["-m", "bench.botproc", kind]
        argv += ["--guild-ready-timeout", str(GUILD_READY_TIMEOUT)]
        if sync:
            argv.append("--sync")
        if steered:
            argv.append("--steer-clock")
        argv += extra_args
        super().__init__(workdir, config, token, name, argv=argv)
        self.kind = kind
        self.steered = steered
        self.milestones: dict[str, dict[str, Any]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        await self._spawn(pipe_stdout=True, pipe_stdin=self.steered)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            async with self._changed:
                self.milestones[message["event"]] = message
                self._changed.notify_all()
        await self.proc.wait()
        async with self._changed:
            self._changed.notify_all()

    async def milestone(self, name: str, timeout: float) -> dict[str, Any]:
        """Waits for the milestone and returns its message; raises MilestoneError (with the
        bot's log tail) if the bot exits first or `timeout` passes."""

        def arrived() -> bool:
            exited = self.proc is not None and self.proc.returncode is not None
            return name in self.milestones or exited

        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(arrived), timeout)
        except TimeoutError:
            raise MilestoneError(f"{self.kind}: no {name!r} within {timeout} s") from None
        if name not in self.milestones:
            raise MilestoneError(f"{self.kind} exited before {name!r}:\n{self.tail()}")
        return self.milestones[name]

    async def steer_clock(self, ahead: float) -> None:
        """Run the bot's briefing clocks `ahead` seconds ahead of the wall clock; returns
        once the bot says it does (`--steer-clock` bots only)."""
        assert self.proc is not None and self.proc.stdin is not None, "not a steered bot"
        async with self._changed:
            self.milestones.pop("clock", None)
        self.proc.stdin.write(f"{ahead!r}\n".encode())
        await self.proc.stdin.drain()
        await self.milestone("clock", 30)

    def since_spawn(self, name: str) -> float:
        """Seconds from spawning the bot to the milestone (both `time.monotonic()`)."""
        return float(self.milestones[name]["t"]) - self.spawned_at

    def memory(self) -> Memory:
        return read_memory(self.pid)

    async def stop(self) -> int:
        """As `BotProcess.stop`, then once stdout is read to its end."""
        code = await super().stop()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        return code
