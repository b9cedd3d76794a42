"""Charts: the specs and their alt text, the drawing child, the renderer's cache and bounds,
cards carrying a picture, member answers and digests with charts on both backends."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from bench.memory import loop_steps
from bot.briefings import composer as composer_module
from bot.briefings import engine as engine_module
from bot.briefings.compose import digest
from bot.charts import render
from bot.charts.render import PNG_MAGIC, ChartRenderer
from bot.charts.spec import (
    ALT_TEXT_LIMIT,
    BARS_FILENAME,
    TIMELINE_FILENAME,
    TIMELINE_STEPS,
    ChartSpec,
    status_bars,
    status_timeline,
)
from bot.client.delivery import embeds_and_files
from bot.config import Config
from bot.models import Pledge, Statement, StatusChange
from bot.pledges import answers, cards
from bot.pledges.cards import Card, Field, Picture
from bot.pledges.services import Services
from tests.conftest import DATA_DIR, REPO
from tests.engine_rig import Rig, store_on_both_backends  # noqa: F401 (`store`)

STATEMENT = "smuggling-gangs"
PLEDGE = "europol-partnership"
EVIDENCE = "https://example.org/evidence"
# Discord shows embed images up to this; our charts are far smaller.
MAX_SIDE = 2000


def change(to: str, day: int, frm: str = "not-yet-rated") -> StatusChange:
    when = datetime(2026, 12, day, 10, tzinfo=UTC).isoformat()
    return StatusChange(PLEDGE, frm, to, when, "note", EVIDENCE, "operator:t")


def decoded(data: bytes) -> Image.Image:
    assert data.startswith(PNG_MAGIC)
    image = Image.open(io.BytesIO(data))
    image.load()  # the whole stream decodes, not just the header
    return image


def failing(message: str = "no drawing today") -> tuple[str, ...]:
    return (sys.executable, "-c", f"import sys; sys.stdin.read(); sys.exit({message!r})")


# -- specs and alt text ---------------------------------------------------------------------


def test_status_bars_count_every_status_and_say_so_in_words() -> None:
    spec = status_bars("Plan A", ["not-yet-rated"] * 3 + ["in-progress"] * 2 + ["delivered"])
    assert spec is not None
    assert [(level.label, level.count) for level in spec.levels if level.count] == [
        ("Not yet rated", 3),
        ("In progress", 2),
        ("Delivered", 1),
    ]
    assert len(spec.levels) == 7  # every status has its row, zeros too
    assert spec.alt_text == (
        "Pledges in Plan A by status: 3 Not yet rated, 2 In progress, 1 Delivered (6 pledges)."
    )
    assert spec.filename == BARS_FILENAME
    assert status_bars("Plan A", []) is None
    # a status from older data counts as Unclear, as cards show it
    odd = status_bars("Plan A", ["retired"])
    assert odd is not None and "1 Unclear (1 pledge)" in odd.alt_text


def test_a_timeline_needs_two_changes_and_tells_them_in_order() -> None:
    assert status_timeline("Europol", []) is None
    assert status_timeline("Europol", [change("in-progress", 1)]) is None
    spec = status_timeline(
        "Europol", [change("in-progress", 1), change("stalled", 3, frm="in-progress")]
    )
    assert spec is not None
    assert spec.filename == TIMELINE_FILENAME
    assert [(spec.levels[s.level].label, s.when) for s in spec.steps] == [
        ("Not yet rated", ""),
        ("In progress", "1 Dec 2026"),
        ("Stalled", "3 Dec 2026"),
    ]
    assert spec.alt_text == (
        "Status timeline of Europol, 2 changes: Not yet rated; In progress from 1 Dec 2026; "
        "Stalled from 3 Dec 2026."
    )


def test_long_histories_and_titles_stay_within_discords_alt_text_limit() -> None:
    statuses = ["in-progress", "partly-delivered"]
    changes = [change(statuses[i % 2], 1 + i % 28, frm=statuses[(i + 1) % 2]) for i in range(200)]
    spec = status_timeline("A pledge " * 100, changes)
    assert spec is not None
    assert len(spec.steps) == TIMELINE_STEPS + 1
    assert f"{200 - TIMELINE_STEPS} earlier changes not shown" in spec.alt_text
    assert len(spec.alt_text) <= ALT_TEXT_LIMIT
    bars = status_bars("A statement " * 200, ["broken"] * 5)
    assert bars is not None and len(bars.alt_text) <= ALT_TEXT_LIMIT
    assert len(bars.title) < 260


def test_a_spec_round_trips_as_json_and_its_key_follows_its_data() -> None:
    one = status_bars("Plan A", ["in-progress", "broken"])
    same = status_bars("Plan A", ["broken", "in-progress"])
    other = status_bars("Plan A", ["in-progress", "in-progress"])
    assert one is not None and same is not None and other is not None
    assert ChartSpec.from_json(one.to_json()) == one
    assert one.key == same.key  # the same counts are the same picture
    assert one.key != other.key


# -- the drawing (in this process: the bot never imports it) -----------------------------


@pytest.mark.parametrize("kind", ["bars", "timeline"])
def test_the_drawing_is_a_small_real_png_of_a_sensible_size(kind: str) -> None:
    from bot.charts import draw

    spec = (
        status_bars("Plan A", ["in-progress"] * 4 + ["not-yet-rated"] * 2)
        if kind == "bars"
        else status_timeline("Europol", [change("in-progress", 1), change("broken", 9)])
    )
    assert spec is not None
    data = draw.png(spec)
    image = decoded(data)
    assert image.format == "PNG"
    assert 400 <= image.width <= MAX_SIDE and 150 <= image.height <= MAX_SIDE
    assert len(data) < 64 * 1024
    assert draw.png(spec) == data  # the same data, the same picture


def test_the_bars_are_drawn_to_scale() -> None:
    """The longest bar is the most pledges; a status with none has no bar."""
    from bot.charts import draw

    spec = status_bars("Plan A", ["in-progress"] * 4 + ["not-yet-rated"] * 2)
    assert spec is not None
    image = decoded(draw.png(spec)).convert("RGB")
    left = draw.MARGIN + draw.LABEL_WIDTH

    def bar_length(row: int) -> int:
        y = draw.TITLE_HEIGHT + row * draw.BAR_ROW + draw.BAR_ROW // 2
        colour = image.getpixel((left + 1, y))
        length = 0
        while image.getpixel((left + 1 + length, y)) == colour:
            length += 1
        return length if colour != (255, 255, 255) else 0

    not_rated, in_progress, stalled = bar_length(0), bar_length(1), bar_length(2)
    assert stalled == 0
    assert in_progress > not_rated > 0
    assert abs(in_progress / not_rated - 2) < 0.05


def test_the_drawing_child_refuses_bad_input_with_a_reason() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot.charts.draw"],
        input=b"not json",
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stdout == b""
    assert b"JSONDecodeError" in done.stderr


def test_only_the_drawing_child_imports_the_imaging_library() -> None:
    """The bot's modules never import PIL (the emulator, `bot/local`, is not the bot); a
    bot process that has drawn charts has not loaded it either, so its memory does not grow
    by it."""
    importers = sorted(
        str(path.relative_to(REPO))
        for folder in ("bot", "commands")
        for path in (REPO / folder).rglob("*.py")
        if ("import PIL" in path.read_text() or "from PIL" in path.read_text())
        and "local" not in path.relative_to(REPO).parts
    )
    assert importers == ["bot/charts/draw.py"]
    script = (
        "import asyncio, sys\n"
        "import bot.client.runner, commands\n"
        "from bot.charts.render import ChartRenderer\n"
        "from bot.charts.spec import status_bars\n"
        "png = asyncio.run(ChartRenderer().draw(status_bars('A', ['broken'])))\n"
        "assert png and png.startswith(b'\\x89PNG'), png\n"
        "print('PIL' in sys.modules, 'bot.charts.draw' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, cwd=REPO, timeout=120, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


# -- the renderer ---------------------------------------------------------------------------


async def test_a_chart_is_drawn_once_however_many_ask_at_once() -> None:
    renderer = ChartRenderer()
    spec = status_bars("Plan A", ["in-progress", "broken"])
    assert spec is not None
    pictures = await asyncio.gather(*(renderer.draw(spec) for _ in range(5)))
    again = await renderer.draw(spec)
    assert renderer.draws == 1
    assert pictures[0] is not None and all(p is pictures[0] for p in [*pictures, again])
    decoded(pictures[0])
    assert 0 < renderer.last_draw_seconds < render.DRAW_TIMEOUT


async def test_the_cache_is_bounded_in_bytes_and_pictures() -> None:
    size = 10_000
    fake = (
        sys.executable,
        "-c",
        f"import sys; sys.stdin.read(); sys.stdout.buffer.write({PNG_MAGIC!r} + b'x' * {size})",
    )
    renderer = ChartRenderer(command=fake, kept_bytes=3 * (size + 8), kept_pictures=2)
    specs = [status_bars(f"Plan {i}", ["broken"]) for i in range(4)]
    for spec in specs:
        assert spec is not None
        assert await renderer.draw(spec) is not None
        assert renderer.kept() <= 2 * (size + 8)
    assert renderer.draws == 4
    assert specs[3] is not None and specs[0] is not None
    await renderer.draw(specs[3])  # kept: the newest
    assert renderer.draws == 4
    await renderer.draw(specs[0])  # dropped: the oldest, drawn again
    assert renderer.draws == 5


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (failing(), "exited 1: no drawing today"),
        ((sys.executable, "-c", "import sys; sys.stdin.read(); print('hello')"), "not a PNG"),
        (("/nonexistent/python",), "No such file"),
    ],
)
async def test_a_failed_drawing_gives_no_picture_and_is_logged(
    command: tuple[str, ...], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    renderer = ChartRenderer(command=command)
    spec = status_bars("Plan A", ["broken"])
    assert spec is not None
    with caplog.at_level(logging.WARNING, "bot.charts.render"):
        assert await renderer.draw(spec) is None
    assert reason in caplog.text
    assert renderer.kept() == 0
    # not tried again at once: answers meanwhile go without the chart, without waiting
    tries = renderer.draws
    assert await renderer.draw(spec) is None
    assert renderer.draws == tries


async def test_a_slow_drawing_is_given_up_and_its_child_killed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    started_file = tmp_path / "pid"
    slow = (
        sys.executable,
        "-c",
        f"import os, time; open({str(started_file)!r}, 'w').write(str(os.getpid())); "
        "time.sleep(60)",
    )
    renderer = ChartRenderer(command=slow, timeout=2.0)
    spec = status_bars("Plan A", ["broken"])
    assert spec is not None
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "bot.charts.render"):
        assert await renderer.draw(spec) is None
    assert time.monotonic() - started < 6
    assert "no picture within 2 s" in caplog.text
    pid = int(started_file.read_text())  # the child was there while the wait lasted
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left behind
        os.kill(pid, 0)


async def test_a_failed_chart_is_tried_again_after_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "RETRY_FAILED_AFTER", 0.0)
    renderer = ChartRenderer(command=failing())
    spec = status_bars("Plan A", ["broken"])
    assert spec is not None
    assert await renderer.draw(spec) is None
    renderer.command = render.DRAW_COMMAND
    picture = await renderer.draw(spec)
    assert picture is not None and picture.startswith(PNG_MAGIC)


async def test_drawing_never_blocks_the_event_loop_for_20_ms() -> None:
    """Every step of the event loop while charts are drawn (the child's start and the pipes
    included) is timed. A step's wall time can be stretched by other processes on a busy
    machine, so the best of three runs counts; its own CPU time never may."""
    longest: list[tuple[float, float]] = []
    for attempt in range(3):
        renderer = ChartRenderer()
        specs = [status_bars(f"Plan {attempt}-{i}", ["broken"] * (i + 1)) for i in range(4)]
        with loop_steps() as steps:
            pictures = await asyncio.gather(*(renderer.draw(s) for s in specs if s is not None))
        assert all(p is not None for p in pictures)
        assert renderer.draws == 4 and len(steps) > 8
        longest.append(max(steps))
        assert max(cpu for _, cpu in steps) < 0.020, longest
        if longest[-1][0] < 0.020:
            break
    assert min(wall for wall, _ in longest) < 0.020, longest


# -- cards ----------------------------------------------------------------------------------


def test_a_chart_stays_on_the_first_page_only() -> None:
    spec = status_bars("Plan A", ["broken"])
    long = Card(title="Long", fields=tuple(Field(f"f{i}", "x" * 900) for i in range(12)))
    pages = cards.with_chart(cards.paginate(long), spec)
    assert len(pages) > 1
    assert pages[0].chart == spec and all(p.chart is None for p in pages[1:])
    # a card paginated with its chart keeps it on page 1 too
    again = cards.paginate(replace(long, chart=spec))
    assert again[0].chart == spec and all(p.chart is None for p in again[1:])
    assert cards.with_chart(pages, None) == pages


async def test_a_chart_that_cannot_be_drawn_leaves_the_card_without_a_picture() -> None:
    spec = status_bars("Plan A", ["broken"])
    assert spec is not None
    card = Card(title="Plan A", chart=spec)

    async def nothing(_: ChartSpec) -> bytes | None:
        return None

    async def drawn(_: ChartSpec) -> bytes | None:
        return PNG_MAGIC + b"picture"

    (without,) = await cards.draw_charts([card], nothing)
    (with_picture,) = await cards.draw_charts([card], drawn)
    assert without == card and without.picture is None
    assert with_picture.picture == Picture(BARS_FILENAME, PNG_MAGIC + b"picture", spec.alt_text)


def test_each_picture_is_attached_and_shown_by_its_embed() -> None:
    picture = Picture(BARS_FILENAME, PNG_MAGIC + b"p", "Pledges in Plan A by status: 1 Broken.")
    found = [
        Card(title="one", picture=picture),
        Card(title="two"),
        Card(title="3", picture=picture),
    ]
    embeds, files = embeds_and_files(found)
    assert [e.image.url for e in embeds] == [
        f"attachment://{BARS_FILENAME}",
        None,
        f"attachment://2-{BARS_FILENAME}",
    ]
    assert [f.filename for f in files] == [BARS_FILENAME, f"2-{BARS_FILENAME}"]
    assert {f.description for f in files} == {picture.alt_text}
    assert files[0].fp.read() == picture.data
    # a retry (same briefing, same nonce) sends fresh files, each read from the start
    _, again = embeds_and_files(found)
    assert again[0].fp.read() == picture.data


# -- answers on both backends ---------------------------------------------------------------


@pytest.fixture
async def services(tmp_path: Path, store_location: Path | str) -> AsyncIterator[Services]:
    location = (
        {"database_url": store_location}
        if isinstance(store_location, str)
        else {"database_path": store_location}
    )
    started = await Services.start(replace(Config(), content_dir=DATA_DIR, **location))
    yield started
    await started.close()


async def rate(services: Services, *statuses: str) -> None:
    for status in statuses:
        await services.store.set_status(
            PLEDGE, status, note="n", evidence_url=EVIDENCE, changed_by="operator:t"
        )
    services.changed()


async def test_about_a_statement_shows_its_pledges_by_status(services: Services) -> None:
    await rate(services, "in-progress")
    pages = await answers.about(services, STATEMENT)
    assert len(pages) > 1  # the full text is paged; the chart is on the first page only
    picture = pages[0].picture
    assert picture is not None and all(p.picture is None for p in pages[1:])
    assert picture.filename == BARS_FILENAME
    title = services.statements[STATEMENT].title
    assert picture.alt_text == (
        f"Pledges in {title} by status: 5 Not yet rated, 1 In progress (6 pledges)."
    )
    decoded(picture.data)
    assert (await answers.about(services))[0].picture is None  # /about alone: no chart


async def test_the_pledge_list_shows_the_chart_on_its_first_page(services: Services) -> None:
    listed = await answers.pledge_list(services, STATEMENT, None)
    filtered = await answers.pledge_list(services, STATEMENT, "delivered")
    everything = await answers.pledge_list(services, None, None)
    about = await answers.about(services, STATEMENT)
    for found in (listed, filtered, everything):
        assert found[0].picture is not None
        # the whole statement's chart, whatever the list is filtered by: one picture
        assert found[0].picture.data is about[0].picture.data  # type: ignore[union-attr]
    assert services.charts.draws == 1


async def test_history_shows_a_timeline_once_there_are_two_changes(services: Services) -> None:
    assert (await answers.pledge_history(services, PLEDGE))[0].picture is None
    await rate(services, "in-progress")
    assert (await answers.pledge_history(services, PLEDGE))[0].picture is None
    await rate(services, "stalled")
    (page, *rest) = await answers.pledge_history(services, PLEDGE)
    assert page.picture is not None and page.picture.filename == TIMELINE_FILENAME
    assert "Not yet rated; In progress from" in page.picture.alt_text
    assert "; Stalled from" in page.picture.alt_text
    assert all(p.picture is None for p in rest)
    decoded(page.picture.data)


async def test_charts_are_drawn_once_per_content_and_status_state(services: Services) -> None:
    for _ in range(3):
        await answers.about(services, STATEMENT)
        await answers.pledge_list(services, STATEMENT, None)
    assert services.charts.draws == 1
    await rate(services, "in-progress")
    first = await answers.about(services, STATEMENT)
    await answers.pledge_list(services, STATEMENT, None)
    assert services.charts.draws == 2
    assert first[0].picture is not None and "1 In progress" in first[0].picture.alt_text


async def test_an_answer_whose_chart_failed_gets_it_once_drawing_works(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "RETRY_FAILED_AFTER", 0.0)
    services.charts.command = failing()
    without = await answers.about(services, STATEMENT)
    assert without[0].picture is None
    assert len(without) > 1  # the answer itself, whole
    services.charts.command = render.DRAW_COMMAND
    again = await answers.about(services, STATEMENT)  # from the answer cache, chart drawn now
    assert again[0].picture is not None


# -- digests ---------------------------------------------------------------------------------


def test_the_digest_carries_the_chart_of_what_it_counts() -> None:
    statement = Statement(STATEMENT, "Plan A", "Party", "", "", "summary", "text")
    pledges = [
        Pledge(f"p{i}", STATEMENT, f"P{i}", "s", "d", "UK", ("q",), status=s)
        for i, s in enumerate(["broken", "broken", "delivered"])
    ]
    found = digest(pledges, [statement], datetime(2026, 12, 7, 9, tzinfo=UTC), None)
    chart = found.cards[0].chart
    assert chart is not None and chart.alt_text == (
        "Pledges in Plan A by status: 1 Delivered, 2 Broken (3 pledges)."
    )
    assert all(card.chart is None for card in found.cards[1:])
    two = digest(pledges, [statement, replace(statement, slug="b")], datetime.now(UTC), None)
    assert two.cards[0].chart is not None
    assert "in all statements carried" in two.cards[0].chart.alt_text


async def test_a_digest_posts_its_chart_drawn_once_for_every_schedule_due(rig: Rig) -> None:
    nine = datetime(2026, 10, 21, 9, 0, tzinfo=UTC)  # the morning after the rig's clock
    schedules = [
        await rig.schedule(time_of_day="09:00", timezone="UTC", channel_id=10 + i) for i in range(3)
    ]
    await rig.engine.plan_all()
    rig.clock.now = nine
    await asyncio.gather(*(rig.engine.fire(s.id) for s in schedules))
    assert len(rig.sender.posts) == 3
    pictures = [briefing.cards[0].picture for _, briefing, _ in rig.sender.posts]
    assert all(p is not None and p.filename == BARS_FILENAME for p in pictures)
    assert pictures[0] is not None and decoded(pictures[0].data)
    assert pictures[0].alt_text.startswith("Pledges in ")
    assert rig.engine._composer.charts.draws == 1


async def test_the_digest_chart_is_drawn_ahead_of_the_slot_once_per_content_state(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drawn between slots, not at the slot: the slot's posts do not wait for a drawing.
    Again only when a status changes; the slot's digest finds the picture drawn."""
    monkeypatch.setattr(engine_module, "CHART_AHEAD_SECONDS", 0.0)
    monkeypatch.setattr(composer_module, "CONTENT_STATE_SECONDS", 0.0)
    charts = rig.engine._composer.charts
    await rig.engine.between_slots()
    assert charts.draws == 0  # nothing planned here: nothing to draw for
    schedule = await rig.schedule(time_of_day="09:00", timezone="UTC")
    await rig.engine.plan_all()
    await rig.engine.between_slots()
    await rig.engine.between_slots()
    assert charts.draws == 1
    rig.clock.now = datetime(2026, 10, 21, 9, 0, tzinfo=UTC)
    await rig.engine.fire(schedule.id)
    [(_, briefing, _)] = rig.sender.posts
    assert briefing.cards[0].picture is not None
    assert charts.draws == 1
    await rig.store.set_status(
        "europol-partnership", "in-progress", note="Talks opened", changed_by="operator"
    )
    await rig.engine.between_slots()
    assert charts.draws == 2
