"""Starting `bench.botproc` bots as subprocesses and reading their milestones and memory."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bench.common import GUILD_READY_TIMEOUT, REPO


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


class BotProcessError(RuntimeError):
    pass


class BotProcess:
    """A bot running in `python -m bench.botproc`; `async with` stops it (SIGTERM, then kill)."""

    def __init__(
        self,
        kind: str,
        config: Path,
        token: str,
        log: Path,
        *,
        sync: bool,
        extra_args: Sequence[str] = (),
        steered: bool = False,
    ) -> None:
        self.kind = kind
        self.extra_args = list(extra_args)
        self.steered = steered  # `--steer-clock`: see `steer_clock`
        self.config = config
        self.token = token
        self.log = log
        self.sync = sync
        self.spawned_at = 0.0
        self.events: dict[str, dict[str, Any]] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise BotProcessError("not started")
        return self._proc.pid

    async def start(self) -> None:
        args = [sys.executable, "-m", "bench.botproc", self.kind]
        args += ["--guild-ready-timeout", str(GUILD_READY_TIMEOUT)]
        if self.sync:
            args.append("--sync")
        if self.steered:
            args.append("--steer-clock")
        args += self.extra_args
        env = {**os.environ, "PLEDGEBOT_CONFIG": str(self.config), "DISCORD_TOKEN": self.token}
        with self.log.open("ab") as log:
            self.spawned_at = time.monotonic()
            self._proc = await asyncio.create_subprocess_exec(
                *args,
                cwd=REPO,
                env=env,
                stdin=asyncio.subprocess.PIPE if self.steered else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            async with self._changed:
                self.events[message["event"]] = message
                self._changed.notify_all()
        await self._proc.wait()
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, event: str, timeout: float) -> dict[str, Any]:
        """The milestone's message; raises with the bot's log tail if it exits or times out."""

        def arrived() -> bool:
            exited = self._proc is not None and self._proc.returncode is not None
            return event in self.events or exited

        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(arrived), timeout)
        except TimeoutError:
            raise BotProcessError(f"{self.kind}: no {event!r} within {timeout} s") from None
        if event not in self.events:
            raise BotProcessError(f"{self.kind} exited before {event!r}:\n{self.log_tail()}")
        return self.events[event]

    async def steer_clock(self, ahead: float) -> None:
        """Run the bot's briefing clocks `ahead` seconds ahead of the wall clock; returns
        once the bot says it does (`--steer-clock` bots only)."""
        assert self._proc is not None and self._proc.stdin is not None, "not a steered bot"
        async with self._changed:
            self.events.pop("clock", None)
        self._proc.stdin.write(f"{ahead!r}\n".encode())
        await self._proc.stdin.drain()
        await self.wait_for("clock", 30)

    def since_spawn(self, event: str) -> float:
        return float(self.events[event]["t"]) - self.spawned_at

    def memory(self) -> Memory:
        return read_memory(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def stop(self, timeout: float = 15.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
