"""Every benchmark runs to its end in a tiny configuration and fills its tables.

`make bench` takes ten minutes and is not run on every change, so a benchmark that a
change broke (envelope calling a coroutine without awaiting it) showed up only there, with
nothing recorded. Here each benchmark `bench/__main__.py` lists runs with the least that
fills its tables, in seconds, its briefings due a few seconds ahead on the bots' steered
clocks rather than at the next whole minute (`Settings.tiny`). The figures are this
machine's and are not checked; bench/RESULTS.md is not written.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from bench.__main__ import BENCHMARKS, print_report, section
from bench.common import Settings
from tests.pg_server import NoServer

pytestmark = pytest.mark.e2e

# fanout's `gather` fires in-process at once instead of waiting for a clock minute
TINY = Settings(tiny=True, fanout_fire="gather")
LONGEST = 240  # seconds; a benchmark stuck somewhere fails instead of hanging the run


@pytest.mark.parametrize("name", list(BENCHMARKS))
async def test_the_benchmark_runs_and_fills_its_tables(name: str) -> None:
    try:
        async with asyncio.timeout(LONGEST):
            report = await BENCHMARKS[name](TINY)
    except NoServer as error:  # postgres starts a PostgreSQL server of its own
        if os.environ.get("CI", "").lower() == "true":
            raise
        pytest.skip(f"no PostgreSQL server for the postgres benchmark: {error}")
    assert report.name == name
    assert report.tables
    for table in report.tables:
        assert table.rows, f"{name}: table {table.title!r} has no rows"
    print_report(report)  # as `python -m bench` prints it, and records it below
    assert section(report, TINY, "python -m bench", "test").startswith(f"<!-- bench:{name} -->")
