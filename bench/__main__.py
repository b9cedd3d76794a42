"""`python -m bench [NAME ...] [--quick] [--fanout-fire clock|gather]`: run, print, record.

Each benchmark prints its tables and targets, and its section of `bench/RESULTS.md` is
rewritten (sections of benchmarks not run this time are kept, with their own dates).
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import logging
import os
import platform
import re
import shlex
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import discord

from bench import (
    due10k,
    envelope,
    fanout,
    fanout2,
    follow,
    memory,
    postgres,
    roundtrip,
    search,
    startup,
)
from bench.common import REPO, Report, Settings

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
Benchmark = Callable[[Settings], Awaitable[Report]]
BENCHMARKS: dict[str, Benchmark] = {
    "roundtrip": roundtrip.run,
    "fanout": fanout.run,
    "fanout2": fanout2.run,
    "search": search.run,
    "memory": memory.run,
    "startup": startup.run,
    "envelope": envelope.run,
    "postgres": postgres.run,
    "follow": follow.run,
    "due10k": due10k.run,
}
# Run only when named: postgres starts a server of its own and waits for another clock
# minute; follow is 30,000 requests at the rate limit twice over (about 25 minutes); due10k
# is 10,000 briefings at the rate limit (200 s) in one process and then two, each after a
# clock minute (about 12 minutes; its --quick steers the bots' clocks instead).
BY_NAME = ("postgres", "follow", "due10k")
# These wait for a whole clock minute, whatever the sizes (postgres: its fan-out part).
CLOCK_BOUND = ("fanout2", "postgres")
SECTION = re.compile(r"<!-- bench:(\w+) -->\n.*?<!-- /bench:\1 -->\n", re.DOTALL)


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        model = next(
            (ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), ""
        )
    return (
        f"nproc {len(os.sched_getaffinity(0))}{f' ({model})' if model else ''}, "
        f"Python {platform.python_version()}, discord.py {discord.__version__}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}"
    )


def code_version() -> str:
    """The commit measured, and whether bot/ or commands/ had uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=10
        )
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--", "bot", "commands").splitlines()
    return f"{commit}" + (
        f" + {len(changed)} uncommitted change(s) in bot/ or commands/" if changed else ""
    )


def compile_as_installed() -> None:
    """Byte-compile bot/ and commands/ as installing a package does, and as a checkout's
    first start does unless PYTHONDONTWRITEBYTECODE is set (as on some CI machines).

    The bare bot's discord.py is compiled in site-packages; a pledgebot compiling its
    modules at every start would be measured with the compiler's leftovers (about 1.7 MiB
    of resident memory, and its start-up time), which an installed bot never has.
    """
    for package in ("bot", "commands"):
        compileall.compile_dir(REPO / package, quiet=1)


def print_report(report: Report) -> None:
    print(f"\n=== {report.title} ({report.name}, {report.seconds:.0f} s) ===")
    for table in report.tables:
        print()
        print(table.text())
    if report.targets:
        print()
        print(report.targets_table().text())
    for note in report.notes:
        print(f"- {note}")
    sys.stdout.flush()


def section(report: Report, settings: Settings, command: str, code: str) -> str:
    mode = "quick run (smaller sizes, not for figures)" if settings.quick else "full run"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"<!-- bench:{report.name} -->",
        f"## {report.title}",
        "",
        f"{when}, {mode}, {report.seconds:.0f} s, code {code}: `{command}`",
        "",
        report.method,
    ]
    if report.targets:
        parts += ["", report.targets_table().markdown()]
    for table in report.tables:
        parts += ["", table.markdown()]
    if report.notes:
        parts += ["", *(f"- {note}" for note in report.notes)]
    parts += [f"<!-- /bench:{report.name} -->", ""]
    return "\n".join(parts)


TARGET_ROWS = re.compile(r"\*\*Targets\*\*\n\n\| target.*?\n\| ---.*?\n((?:\|.*\n)+)")


def summary_rows(name: str, section_text: str) -> list[str]:
    """A section's Targets rows, prefixed with its name (kept sections are only text)."""
    return [
        f"| {name} {line}"
        for block in TARGET_ROWS.findall(section_text)
        for line in block.splitlines()
    ]


def write_results(reports: list[Report], settings: Settings, command: str, code: str) -> None:
    """Replace the sections of the benchmarks that ran; keep the others as they were."""
    sections: dict[str, str] = {}
    if RESULTS.exists():
        for match in SECTION.finditer(RESULTS.read_text("utf-8")):
            sections[match.group(1)] = match.group(0)
    for report in reports:
        sections[report.name] = section(report, settings, command, code)
    header = [
        "# pledgebot benchmarks",
        "",
        "Generated by `python -m bench` (`make bench`); do not edit by hand. Every figure is a "
        "ratio to a baseline measured in the same run. Run one benchmark with "
        "`.venv/bin/python -m bench NAME` (" + ", ".join(BENCHMARKS) + "); `--quick` for a "
        "smaller trial run. Each section says when it ran, on which code and with which command.",
        "",
        f"Machine (latest run): {machine()}.",
        "",
        "## Summary",
        "",
        "| benchmark | target | measured | limit | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    ordered = [(name, sections[name]) for name in BENCHMARKS if name in sections]
    summary = [row for name, text in ordered for row in summary_rows(name, text)]
    body = [text for _, text in ordered]
    text = "\n".join([*header, *summary, "", *body])
    RESULTS.write_text(text, "utf-8")


async def run_all(names: list[str], settings: Settings) -> tuple[list[Report], list[str]]:
    """The reports, and the names of the benchmarks that crashed: one crashing no longer
    loses the others' minutes of measurements (their sections are still written)."""
    reports, crashed = [], []
    for name in names:
        print(f"\n... running {name}", flush=True)
        started = time.monotonic()
        try:
            report = await BENCHMARKS[name](settings)
        except Exception:
            traceback.print_exc()
            crashed.append(name)
            continue
        report.seconds = time.monotonic() - started
        print_report(report)
        reports.append(report)
    return reports, crashed


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a trial run")
    parser.add_argument(
        "--fanout-fire",
        choices=("clock", "gather"),
        default=None,
        help="fanout: wait for APScheduler at the next whole minute (clock, the default) "
        "or call engine.fire(id) for every schedule at once with the engine's clock moved "
        "to the slot (gather, the default with --quick); fanout2 and postgres always wait for "
        "the minute",
    )
    args = parser.parse_args()
    # `make bench` stays under 10 minutes: postgres and follow (see BY_NAME) run by name;
    # --quick also leaves out what waits for a clock minute.
    skipped = (*BY_NAME, *(CLOCK_BOUND if args.quick else ()))
    names = args.names or [n for n in BENCHMARKS if n not in skipped]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    fire = args.fanout_fire or ("gather" if args.quick else "clock")
    settings = Settings(quick=args.quick, fanout_fire=fire)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = shlex.join([".venv/bin/python", "-m", "bench", *sys.argv[1:]])
    code = code_version()  # before running: others may commit while we measure
    compile_as_installed()
    print(f"pledgebot benchmarks: {', '.join(names)}; code {code}; {machine()}")
    reports, crashed = asyncio.run(run_all(names, settings))
    if reports:
        write_results(reports, settings, command, code)
        print(f"\nwrote {RESULTS}")
    if crashed:
        sys.exit(f"crashed (their sections were not rewritten): {', '.join(crashed)}")


if __name__ == "__main__":
    main()
