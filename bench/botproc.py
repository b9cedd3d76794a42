"""One bot in its own process, so its memory and start-up are measured without the emulator.

    python -m bench.botproc {pledgebot,bare} [--guild-ready-timeout S] [--sync]
                            [--shard-count N --shard-ids IDS] [--report-jobs] [--steer-clock]
                            [--no-drawing]

Both kinds read the config file named by PLEDGEBOT_CONFIG ([discord] api_base_url and
gateway_url point at the emulator) and the token from DISCORD_TOKEN. `pledgebot` is the real
bot from `bot.client.runner.make_bot`, exactly as `pledgebot run` builds it (with `--shard-count`
and `--shard-ids`, through `bot.client.runner.shard_options` as `pledgebot run --shard-count N
--shard-ids IDS` does: it then schedules only those shards' servers). `bare` is the baseline:
a plain discord.py `commands.Bot` with the same intents (guilds only) whose `/pledge show`,
`/pledge search` and autocomplete answer a constant.

Milestones are printed on stdout as JSON lines stamped with `time.monotonic()` (one clock
for every process on Linux, so the parent can subtract its spawn time). With `--report-jobs`
a pledgebot also prints `jobs` (briefings planned in APScheduler) every half second. With
`--steer-clock` (tiny runs) each line on stdin sets how far ahead the briefing clocks run
(see `steer_clock`), and the bot prints `clock` once it does. SIGTERM
closes the bot cleanly. This module imports nothing from pledgebot for the bare kind except the
endpoint override, so the baseline's memory is discord.py's alone.

With PLEDGEBOT_BENCH_SLOW_STEPS=DIR every event loop step of 2 ms or more is written to
DIR/KIND-PID-steps.txt (wall clock, ms, what ran: a task's chain of awaits with the lines it
resumes at) and every loop iteration busy for 2 ms or more (select's wait left out) to
DIR/KIND-PID-iterations.txt (wall clock, ms, steps run, the three longest), when the
process exits: where a member's answer waited during a fan-out (bench/PROFILES.md). Timing
every step slows the bot: figures from such a run are not the benchmark's.

With PLEDGEBOT_BENCH_SHARES=DIR the bot's own share of every interaction (gateway frame
taken up to the callback requested, and to its response read) is written to
DIR/KIND-PID-shares.txt (wall clock, interaction type, ms, ms) at exit (`record_shares`):
four clock reads per interaction, so the run's own figures stay comparable.

With PLEDGEBOT_BENCH_PROFILE=DIR the process runs under pyinstrument, and its profile is
written to DIR (KIND-PID.txt and .pyisession) when it stops: `PLEDGEBOT_BENCH_PROFILE=/tmp/p
.venv/bin/python -m bench roundtrip` profiles every bot of that benchmark.
"""

from __future__ import annotations

import time

IMPORT_STARTED = time.monotonic()

import argparse  # noqa: E402 (the stamp above must come before the imports it times)
import asyncio  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tomllib  # noqa: E402
from datetime import UTC, datetime, tzinfo  # noqa: E402
from typing import Any, Self  # noqa: E402

import discord  # noqa: E402
from discord import app_commands  # noqa: E402
from discord.ext import commands  # noqa: E402

BARE_REPLY = "ok"
# Set to a directory to profile the bot with pyinstrument (one .txt and .html per process).
PROFILE_ENV = "PLEDGEBOT_BENCH_PROFILE"
STEPS_ENV = "PLEDGEBOT_BENCH_SLOW_STEPS"
SHARES_ENV = "PLEDGEBOT_BENCH_SHARES"
SLOW_STEP = 0.002  # seconds: event loop steps at least this long are recorded


def emit(event: str, **data: Any) -> None:
    """A milestone, with the process's peak memory so far (VmHWM, KiB): where in start-up
    the peak is reached."""
    stamp = {"event": event, "t": time.monotonic(), "hwm_kib": peak_kib()}
    print(json.dumps({**stamp, **data}), flush=True)


def peak_kib() -> int:
    # not `bench.procs.read_memory`: its imports would be in the bare bot's memory
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class Steered(datetime):
    """`datetime` whose `now()` runs `ahead` seconds ahead of the wall clock: what the
    briefing engine and APScheduler read in a process started with `--steer-clock`."""

    ahead = 0.0

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> Self:
        return cls.fromtimestamp(time.time() + cls.ahead, tz)


def steer_clock() -> None:
    """Let stdin set how many seconds ahead of the wall clock the briefing clocks run.

    A tiny benchmark run thus has its briefings fall due at a whole minute of the bots'
    clocks a few seconds from now, instead of waiting up to a minute for the wall clock's.
    Only the engine's clock and APScheduler's move; the store's timestamps, the rate budget
    and the emulator keep the wall clock.
    """
    from apscheduler.executors import base as executors
    from apscheduler.schedulers import base as schedulers

    from bot.briefings.engine import BriefingEngine

    schedulers.datetime = executors.datetime = Steered  # both only ever call datetime.now
    defaults = BriefingEngine.__init__.__kwdefaults__
    assert defaults is not None and "clock" in defaults, "BriefingEngine takes no clock"
    defaults["clock"] = lambda: Steered.now(UTC)
    loop = asyncio.get_running_loop()
    stdin = sys.stdin.fileno()

    def read() -> None:
        data = os.read(stdin, 1024)
        if not data:  # the benchmark closed our stdin
            loop.remove_reader(stdin)
            return
        Steered.ahead = float(data.split()[-1])
        emit("clock", ahead=Steered.ahead)

    loop.add_reader(stdin, read)


def never_draw() -> None:
    """Every chart is undrawable, as when drawing fails: answers go out without pictures.
    The memory benchmark runs the same commands with and without drawing, so what drawing
    adds to the bot's memory is told apart from what answering them adds."""
    from bot.charts.render import ChartRenderer

    async def draw(self: ChartRenderer, spec: object) -> None:
        return None

    ChartRenderer.draw = draw  # type: ignore[method-assign]


class BareBot(commands.Bot):
    """The baseline: discord.py alone, answering a constant, same intents as pledgebot."""

    def __init__(self, *, sync: bool, sized: bool = False, **options: Any) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            **options,
        )
        self.sync_on_start = sync
        self.tree.add_command(bare_pledge_group(sized))

    async def setup_hook(self) -> None:
        if self.sync_on_start:
            await self.tree.sync()


def sized_embed(fields: int, description: int) -> discord.Embed:
    """A constant embed about the size of a pledgebot card (show: ~1.5 KB, search: ~3 KB)."""
    embed = discord.Embed(title="A constant title " * 4, description="word " * (description // 5))
    for number in range(fields):
        embed.add_field(name=f"Field {number}", value="filler " * 35, inline=False)
    return embed.set_footer(text="Source: a constant footer, as long as a real one. " * 2)


SIZED_CHOICES = [
    app_commands.Choice(
        name=f"A constant choice as long as a pledge title, number {i:02d}", value=f"gen-{i:05d}"
    )
    for i in range(25)
]


def bare_pledge_group(sized: bool = False) -> app_commands.Group:
    """`/pledge show` and `/pledge search` with pledgebot's option names, answering "ok".

    `sized`: answering constants of the size pledgebot's answers have instead (an embed,
    25 autocomplete choices), to tell the cost of sending an answer from the cost of
    finding it.
    """
    group = app_commands.Group(name="pledge", description="Constant answers (baseline)")
    show_embed, search_embed = sized_embed(6, 140), sized_embed(10, 0)

    async def send(
        interaction: discord.Interaction[Any], embed: discord.Embed, private: bool
    ) -> None:
        if sized:
            await interaction.response.send_message(embed=embed, ephemeral=private)
        else:
            await interaction.response.send_message(BARE_REPLY, ephemeral=private)

    @group.command(name="show", description="A constant")
    async def show(
        interaction: discord.Interaction[Any], pledge: str, private: bool = False
    ) -> None:
        await send(interaction, show_embed, private)

    @show.autocomplete("pledge")
    async def show_pledge(
        interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        if sized:
            return SIZED_CHOICES
        return [app_commands.Choice(name="A constant choice", value="constant")]

    @group.command(name="search", description="A constant")
    async def search(
        interaction: discord.Interaction[Any],
        query: app_commands.Range[str, 1, 200],
        private: bool = False,
    ) -> None:
        await send(interaction, search_embed, private)

    return group


def build(
    kind: str,
    *,
    guild_ready_timeout: float,
    sync: bool,
    shards: tuple[int | None, list[int]],
    sized: bool = False,
) -> tuple[commands.Bot, str]:
    """The bot and its token, configured from the environment like `pledgebot run`."""
    if kind == "pledgebot":
        from bot.client.runner import make_bot, require_token, shard_options
        from bot.config import load_config

        config = load_config()
        options = shard_options(shards[0], shards[1] or None)
        bot = make_bot(config, guild_ready_timeout=guild_ready_timeout, **options)
        return bot, require_token(config)
    from bot.client.endpoints import apply_endpoints

    with open(os.environ["PLEDGEBOT_CONFIG"], "rb") as file:
        endpoints = tomllib.load(file)["discord"]
    apply_endpoints(endpoints["api_base_url"], endpoints["gateway_url"])
    token = os.environ["DISCORD_TOKEN"]
    return BareBot(sync=sync, sized=sized, guild_ready_timeout=guild_ready_timeout), token


async def run(
    kind: str,
    *,
    guild_ready_timeout: float,
    sync: bool,
    shards: tuple[int | None, list[int]] = (None, []),
    report_jobs: bool = False,
    sized: bool = False,
    steered: bool = False,
) -> None:
    if steered:
        steer_clock()
    bot, token = build(
        kind, guild_ready_timeout=guild_ready_timeout, sync=sync, shards=shards, sized=sized
    )
    emit("built")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    ready_seen = False

    async def on_ready() -> None:
        nonlocal ready_seen
        if not ready_seen:
            ready_seen = True
            emit("ready", guilds=len(bot.guilds))

    bot.add_listener(on_ready, "on_ready")
    watchers: list[asyncio.Task[Any]] = []
    engine_started = getattr(bot, "engine_started", None)
    if isinstance(engine_started, asyncio.Event):

        async def report_engine() -> None:
            await engine_started.wait()
            engine = getattr(bot, "engine", None)
            jobs = engine.planned_count() if engine is not None else 0
            emit("engine_started", jobs=jobs, guilds=len(bot.guilds))

        watchers.append(asyncio.create_task(report_engine()))
    if report_jobs:

        async def report_planned() -> None:
            while True:
                engine = getattr(bot, "engine", None)
                if engine is not None:
                    emit("jobs", count=engine.planned_count())
                await asyncio.sleep(0.5)

        watchers.append(asyncio.create_task(report_planned()))
    runner = asyncio.create_task(bot.start(token))
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    for task in (stopper, *watchers):
        task.cancel()
    await bot.close()
    await asyncio.gather(runner, return_exceptions=False)
    emit("closed")


def stepping(handle: asyncio.events.Handle) -> str:
    """What a step will run: for a task, the chain of coroutines it awaits, each with the
    line it resumes at; otherwise the callback."""
    task = getattr(getattr(handle, "_callback", None), "__self__", None)
    if not isinstance(task, asyncio.Task):
        return repr(handle)[:200]
    chain: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None and hasattr(coro, "cr_frame"):
        frame = coro.cr_frame
        line = f":{frame.f_lineno}" if frame is not None else ""
        chain.append(f"{getattr(coro, '__qualname__', coro)}{line}")
        coro = coro.cr_await
    return " > ".join(chain)


def record_slow_steps(directory: str, kind: str) -> None:
    """Time every step the event loop runs; write the ones of SLOW_STEP or more at exit.

    A step is one callback: a task running to its next `await`, or an I/O callback. While
    one runs, nothing else does, so a member's interaction that arrives then waits for it.
    """
    import atexit
    import selectors

    slow: list[tuple[float, float, str]] = []  # (wall clock, seconds, what ran)
    # busy iterations of the loop (select's wait left out): wall clock, seconds, steps, the
    # three longest steps
    busy: list[tuple[float, float, int, list[tuple[float, str]]]] = []
    this_iteration: list[tuple[float, str]] = []
    waited = [0.0]
    run_step = asyncio.events.Handle._run
    run_once = asyncio.base_events.BaseEventLoop._run_once  # type: ignore[attr-defined]
    select = selectors.EpollSelector.select

    def timed(handle: asyncio.events.Handle) -> None:
        what = stepping(handle)
        started = time.perf_counter()
        run_step(handle)
        took = time.perf_counter() - started
        this_iteration.append((took, what))
        if took >= SLOW_STEP:
            slow.append((time.time(), took, what))

    def timed_select(selector: selectors.EpollSelector, timeout: float | None = None) -> Any:
        started = time.perf_counter()
        try:
            return select(selector, timeout)
        finally:
            waited[0] += time.perf_counter() - started

    def timed_once(loop: asyncio.AbstractEventLoop) -> None:
        waited[0] = 0.0
        this_iteration.clear()
        started = time.perf_counter()
        run_once(loop)
        took = time.perf_counter() - started - waited[0]
        if took >= SLOW_STEP:
            longest = sorted(this_iteration, reverse=True)[:3]
            busy.append((time.time(), took, len(this_iteration), longest))

    asyncio.events.Handle._run = timed  # type: ignore[assignment]
    selectors.EpollSelector.select = timed_select  # type: ignore[assignment,method-assign]
    asyncio.base_events.BaseEventLoop._run_once = timed_once  # type: ignore[attr-defined]

    def write() -> None:
        path = os.path.join(directory, f"{kind}-{os.getpid()}-steps.txt")
        with open(path, "w", encoding="utf-8") as out:
            for at, took, what in slow:
                out.write(f"{at:.3f}\t{took * 1000:.2f}\t{what}\n")
        path = os.path.join(directory, f"{kind}-{os.getpid()}-iterations.txt")
        with open(path, "w", encoding="utf-8") as out:
            for at, took, count, longest in busy:
                steps = " | ".join(f"{t * 1000:.2f} {w[:160]}" for t, w in longest)
                out.write(f"{at:.3f}\t{took * 1000:.2f}\t{count}\t{steps}\n")

    atexit.register(write)


def record_shares(directory: str, kind: str) -> None:
    """Time the bot's own share of every interaction; write them all at exit.

    From the gateway frame being taken up (`received_message`, before it is decompressed
    and parsed) to the callback's request being made, and to its response read. What a
    member waits beyond that is the wire, the emulator, or the loop not yet reading the
    frame: told apart from the emulator's round trip in the same run.
    """
    import atexit

    from discord import gateway, state
    from discord.webhook import async_ as webhooks

    frame_taken = [0.0]
    taken: dict[int, tuple[float, int]] = {}  # interaction id: frame taken up, its type
    # wall clock, interaction type (2 command, 4 autocomplete), to the call, to its answer
    shares: list[tuple[float, int, float, float]] = []
    received = gateway.DiscordWebSocket.received_message
    parse = state.ConnectionState.parse_interaction_create
    respond = webhooks.AsyncWebhookAdapter.create_interaction_response

    async def stamped(socket: Any, message: Any, /) -> None:
        frame_taken[0] = time.perf_counter()
        await received(socket, message)

    def parsed(connection: Any, data: Any) -> None:
        taken[int(data["id"])] = (frame_taken[0], int(data["type"]))
        parse(connection, data)

    def responding(adapter: Any, interaction_id: int, *args: Any, **kwargs: Any) -> Any:
        found = taken.pop(int(interaction_id), None)
        called = time.perf_counter()
        request = respond(adapter, interaction_id, *args, **kwargs)
        if found is None:
            return request
        started, typed = found

        async def answered() -> Any:
            try:
                return await request
            finally:
                done = time.perf_counter()
                shares.append((time.time(), typed, called - started, done - started))

        return answered()

    gateway.DiscordWebSocket.received_message = stamped  # type: ignore[method-assign]
    state.ConnectionState.parse_interaction_create = parsed  # type: ignore[method-assign,assignment]
    webhooks.AsyncWebhookAdapter.create_interaction_response = responding  # type: ignore[method-assign,assignment]

    def write() -> None:
        path = os.path.join(directory, f"{kind}-{os.getpid()}-shares.txt")
        with open(path, "w", encoding="utf-8") as out:
            for at, typed, to_call, to_answer in shares:
                out.write(f"{at:.3f}\t{typed}\t{to_call * 1000:.3f}\t{to_answer * 1000:.3f}\n")

    atexit.register(write)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.botproc")
    parser.add_argument("kind", choices=("pledgebot", "bare"))
    parser.add_argument("--guild-ready-timeout", type=float, default=2.0)
    parser.add_argument("--sync", action="store_true", help="bare: sync commands at start")
    parser.add_argument("--shard-count", type=int, default=None, help="pledgebot: shards in all")
    parser.add_argument(
        "--shard-ids",
        type=lambda text: [int(part) for part in text.split(",") if part.strip()],
        default=[],
        help="pledgebot: this process's shards, e.g. 0,1",
    )
    parser.add_argument(
        "--report-jobs", action="store_true", help="pledgebot: print planned briefings"
    )
    parser.add_argument(
        "--sized", action="store_true", help="bare: answers as large as pledgebot's"
    )
    parser.add_argument(
        "--steer-clock", action="store_true", help="pledgebot: stdin sets the briefing clocks"
    )
    parser.add_argument(
        "--no-drawing",
        action="store_true",
        help="pledgebot: charts are never drawn (the memory benchmark's control run)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    emit("imported", import_started=IMPORT_STARTED)
    if args.no_drawing:
        never_draw()
    if os.environ.get(STEPS_ENV):
        record_slow_steps(os.environ[STEPS_ENV], args.kind)
    if os.environ.get(SHARES_ENV):
        record_shares(os.environ[SHARES_ENV], args.kind)
    work = run(
        args.kind,
        guild_ready_timeout=args.guild_ready_timeout,
        sync=args.sync,
        shards=(args.shard_count, args.shard_ids),
        report_jobs=args.report_jobs,
        sized=args.sized,
        steered=args.steer_clock,
    )
    profile_dir = os.environ.get(PROFILE_ENV)
    if not profile_dir:
        asyncio.run(work)
        return
    from pyinstrument import Profiler

    profiler = Profiler(async_mode="disabled")
    with profiler:
        asyncio.run(work)
    name = os.path.join(profile_dir, f"{args.kind}-{os.getpid()}")
    with open(f"{name}.txt", "w", encoding="utf-8") as text:
        text.write(profiler.output_text(unicode=True))
    if profiler.last_session is not None:
        profiler.last_session.save(f"{name}.pyisession")  # `pyinstrument --load FILE -r html`


if __name__ == "__main__":
    main()
