"""Drawing a chart: a `ChartSpec` as JSON on stdin, a PNG on stdout.

Run as its own process (`python -m bot.charts.draw`, by `bot.charts.render`), so Pillow and
the memory a drawing takes are never in the bot's process, and the bot's event loop never
waits on a drawing. Nothing else imports this module. A bad spec or a failed drawing
exits non-zero with the reason on stderr.
"""

from __future__ import annotations

import io
import sys

from PIL import Image, ImageDraw, ImageFont

from bot.charts.spec import ChartSpec

WIDTH = 800
MARGIN = 20
TITLE_HEIGHT = 52
LABEL_WIDTH = 170
BAR_ROW = 34
TIMELINE_ROW = 30
DATES_HEIGHT = 44
BACKGROUND = "#ffffff"
INK = "#111827"
FAINT = "#6b7280"
GRID = "#e5e7eb"
# Few colours: the picture is flat, and a palette keeps the PNG small.
PALETTE_COLOURS = 64

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def fonts() -> tuple[Font, Font, Font]:
    """Title, label and small fonts: Pillow's own, so no system font is needed."""
    return (
        ImageFont.load_default(size=20),
        ImageFont.load_default(size=15),
        ImageFont.load_default(size=13),
    )


def fit(text: str, font: Font, width: float) -> str:
    """`text` cut with an ellipsis to fit `width` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text.rstrip() + "…"


def canvas(spec: ChartSpec, height: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (WIDTH, height), BACKGROUND)
    pen = ImageDraw.Draw(image)
    title, _, _ = fonts()
    pen.text(
        (MARGIN, TITLE_HEIGHT // 2), fit(spec.title, title, WIDTH - 2 * MARGIN), INK, title, "lm"
    )
    return image, pen


def status_bars(spec: ChartSpec) -> Image.Image:
    """One horizontal bar a status, longest for the most pledges, each with its count."""
    _, label, small = fonts()
    height = TITLE_HEIGHT + BAR_ROW * len(spec.levels) + MARGIN
    image, pen = canvas(spec, height)
    most = max((level.count for level in spec.levels), default=0) or 1
    left = MARGIN + LABEL_WIDTH
    room = WIDTH - left - MARGIN - 40  # the count stands after the bar
    for row, level in enumerate(spec.levels):
        middle = TITLE_HEIGHT + row * BAR_ROW + BAR_ROW // 2
        pen.text((MARGIN, middle), fit(level.label, label, LABEL_WIDTH - 10), INK, label, "lm")
        length = round(room * level.count / most)
        if length:
            pen.rectangle((left, middle - 11, left + length, middle + 11), fill=level.colour)
        colour = INK if level.count else FAINT
        pen.text((left + length + 8, middle), str(level.count), colour, small, "lm")
    return image


def status_timeline(spec: ChartSpec) -> Image.Image:
    """The status as a step line over the recorded changes, evenly spaced, each dated."""
    _, label, small = fonts()
    plot_top = TITLE_HEIGHT
    plot_bottom = plot_top + TIMELINE_ROW * len(spec.levels)
    image, pen = canvas(spec, plot_bottom + DATES_HEIGHT)
    left, right = MARGIN + LABEL_WIDTH, WIDTH - MARGIN

    def y(level: int) -> int:
        return plot_top + level * TIMELINE_ROW + TIMELINE_ROW // 2

    for row, level in enumerate(spec.levels):
        pen.line((left, y(row), right, y(row)), GRID, 1)
        pen.text((MARGIN, y(row)), fit(level.label, label, LABEL_WIDTH - 10), INK, label, "lm")
    steps = spec.steps
    lead = 30  # the status before the first change shown: a short stub, no date
    gap = (right - left - lead - 40) / max(1, len(steps) - 2)
    xs = [left + (lead + round(gap * (i - 1)) if i else 0) for i in range(len(steps))]
    ends = [*xs[1:], right]
    for i, step in enumerate(steps):
        colour = spec.levels[step.level].colour
        if i:
            pen.line((xs[i], y(steps[i - 1].level), xs[i], y(step.level)), FAINT, 2)
        pen.line((xs[i], y(step.level), ends[i], y(step.level)), colour, 6)
    shown_until = -1.0
    for i, step in enumerate(steps):
        if not i:
            continue
        x, colour = xs[i], spec.levels[step.level].colour
        pen.ellipse((x - 6, y(step.level) - 6, x + 6, y(step.level) + 6), colour, INK, 1)
        width = small.getlength(step.when)
        if x - width / 2 > shown_until + 6 and x + width / 2 <= WIDTH:
            pen.text((x, plot_bottom + 14), step.when, INK, small, "mm")
            shown_until = x + width / 2
    return image


DRAWERS = {"status-bars": status_bars, "status-timeline": status_timeline}


def png(spec: ChartSpec) -> bytes:
    image = DRAWERS[spec.kind](spec)
    out = io.BytesIO()
    image.quantize(PALETTE_COLOURS).save(out, "PNG", optimize=True)
    return out.getvalue()


def main() -> int:
    spec = ChartSpec.from_json(sys.stdin.buffer.read())
    sys.stdout.buffer.write(png(spec))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
