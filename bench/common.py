"""What every benchmark shares: sample statistics, result tables, targets, run settings."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "data"

# One discord.py setting for every bot, pledgebot and bare alike: how long READY waits after
# the last GUILD_CREATE. The emulator sends all GUILD_CREATEs right after READY, so a short
# wait is enough; the bots report how many guilds they had at on_ready, and a run that
# became ready with guilds missing is reported as a failure, not a figure.
GUILD_READY_TIMEOUT = 0.5
T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """How big a run is. `quick` is for trying the benchmarks, not for figures; `tiny` is
    the test suite's (tests/test_bench.py): the least that fills every table, in seconds,
    with briefings due a few seconds ahead instead of at the next whole minute (the bots'
    clocks are steered: `bench/botproc.py --steer-clock`)."""

    quick: bool = False
    fanout_fire: str = "clock"  # "clock": APScheduler at the minute; "gather": engine.fire(id)
    tiny: bool = False

    def size(self, full: T, quick: T, tiny: T) -> T:
        """The full run's value, or the quick or the tiny run's."""
        return tiny if self.tiny else quick if self.quick else full


@dataclass(frozen=True)
class Stats:
    """min / median / p99 of a set of samples (seconds or any unit)."""

    count: int
    min: float
    median: float
    p99: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        if not samples:
            raise ValueError("no samples")
        ordered = sorted(samples)
        return cls(len(ordered), ordered[0], statistics.median(ordered), p99(ordered), ordered[-1])


def p99(ordered: Sequence[float]) -> float:
    """The 99th percentile by nearest rank (no interpolation beyond the worst sample)."""
    rank = max(1, math.ceil(0.99 * len(ordered)))
    return ordered[rank - 1]


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline > 0 else math.inf


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def secs(seconds: float) -> str:
    return f"{seconds:.2f}"


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def times(value: float) -> str:
    return f"{value:.2f}x"


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]

    def markdown(self) -> str:
        lines = [
            f"**{self.title}**",
            "",
            "| " + " | ".join(self.headers) + " |",
            "| " + " | ".join("---" for _ in self.headers) + " |",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)

    def text(self) -> str:
        cells = [self.headers, *self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.headers))]

        def line(row: Sequence[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([self.title, line(self.headers), rule, *(line(r) for r in self.rows)])


@dataclass(frozen=True)
class Target:
    """One target from the issue; `met` is None when the issue sets none (report only)."""

    name: str
    measured: str
    limit: str
    met: bool | None

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT MET", None: "no target"}[self.met]


@dataclass
class Report:
    """One benchmark's outcome: how it was measured, its tables, targets and notes."""

    name: str
    title: str
    method: str
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def targets_table(self) -> Table:
        return Table(
            "Targets",
            ("target", "measured", "limit", "verdict"),
            [(t.name, t.measured, t.limit, t.verdict) for t in self.targets],
        )


def latency_row(label: str, stats: Stats, base: Stats) -> tuple[str, ...]:
    """One bot's round trips: n, min, median, p99, max, and the ratios to the baseline's."""
    return (
        label,
        str(stats.count),
        ms(stats.min),
        ms(stats.median),
        ms(stats.p99),
        ms(stats.max),
        times(ratio(stats.median, base.median)),
        times(ratio(stats.p99, base.p99)),
    )


PAUSE_RECORDED = 0.02  # seconds: this process's garbage collections at least this long


class _WhileOpen(ABC):
    """Runs `_run` as a task of this process (the emulator's) while the context is open."""

    _task: asyncio.Task[None] | None = None

    @abstractmethod
    async def _run(self) -> None: ...

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class RigPauses(_WhileOpen):
    """Keeps this process, the emulator's, from pausing for full garbage collections while
    a fan-out goes out, and records the collections that still take `PAUSE_RECORDED` or more.

    The emulator keeps every request and message with its JSON (tens of thousands of each
    in a full run); a full collection of that heap took up to 1.9 s. Requests the bots sent
    meanwhile queued and were then counted in the same second (429s although both bots kept
    to their pace), and `/pledge show` in flight took the pause as its round trip. Every
    second, what is alive is moved out of the collector's sight (`gc.freeze`); the heap is
    handed back to it afterwards.
    """

    def __init__(self) -> None:
        self.pauses: list[tuple[float, int, float]] = []  # (wall clock, generation, seconds)
        self._started = 0.0

    def _collected(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        if took >= PAUSE_RECORDED:
            self.pauses.append((time.time(), info["generation"], took))

    async def _run(self) -> None:
        while True:
            gc.freeze()
            await asyncio.sleep(1.0)

    async def __aenter__(self) -> Self:
        gc.callbacks.append(self._collected)
        return await super().__aenter__()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await super().__aexit__(kind, error, traceback)
        gc.callbacks.remove(self._collected)
        gc.unfreeze()

    def between(self, start: float, end: float) -> list[float]:
        return [took for at, _, took in self.pauses if start <= at <= end]


LAG_TICK = 0.005  # seconds between the ticks `RigLag` times


class RigLag(_WhileOpen):
    """How late this process's event loop (the emulator's) wakes a task: a tick every
    `LAG_TICK`, and how long after it was due it ran, with the wall clock.

    The emulator sends every interaction and times its answer on this loop, while it
    serves the fan-out's posts. When the loop is late, the answer's round trip includes
    the wait though the bot had answered: this tells that share from the bot's.
    """

    def __init__(self) -> None:
        self.lateness: list[tuple[float, float]] = []  # (wall clock, seconds late)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_TICK
            await asyncio.sleep(LAG_TICK)
            self.lateness.append((time.time(), max(0.0, loop.time() - due)))

    def between(self, start: float, end: float) -> list[float]:
        return [late for at, late in self.lateness if start <= at <= end]
