"""The emulator's multipart/form-data reader (bot/local/multipart.py): what aiohttp's `FormData`
writes for discord.py reads back part for part as aiohttp's own reader has it, filenames quoted,
escaped and in RFC 5987 form, and malformed bodies refused; over HTTP, a malformed body is a 400
with code 50109 and a recorded violation, never a 500."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from unittest import mock

import aiohttp
import discord
import pytest
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request
from discord.http import handle_message_parameters

from bot.local import Emulator
from bot.local.limits import REQUEST_LIMIT_BYTES
from bot.local.multipart import MultipartError, Part, parse, parse_header_value
from bot.local.rest.base import ApiError
from bot.local.rest.router import RestApi

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20
BOUNDARY = "b0undary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
DISPOSITION = 'Content-Disposition: form-data; name="{}"'


def discord_form(*files: discord.File) -> aiohttp.FormData:
    """The form discord.py posts for a message with files (discord/http.py: `request`)."""
    params = handle_message_parameters(content="Chart", files=list(files))
    assert params.multipart is not None
    form = aiohttp.FormData(quote_fields=False)
    for field in params.multipart:
        form.add_field(**field)
    return form


async def serialized(form: aiohttp.FormData) -> tuple[bytes, str]:
    writer = form()
    assert isinstance(writer, aiohttp.MultipartWriter)
    return await writer.as_bytes(), writer.content_type


async def aiohttp_reads(body: bytes, content_type: str) -> list[Part]:
    """The same body through aiohttp's `request.post()`, which the emulator used to call."""
    stream = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    stream.feed_data(body)
    stream.feed_eof()
    request = make_mocked_request(
        "POST", "/", headers={"Content-Type": content_type}, payload=stream
    )
    parts = []
    for name, value in (await request.post()).items():
        if isinstance(value, web.FileField):
            parts.append(Part(name, value.filename, value.content_type, value.file.read()))
        else:
            parts.append(Part(name, None, None, value.encode()))
    return parts


def body_of(*parts: bytes, preamble: bytes = b"", epilogue: bytes = b"\r\n") -> bytes:
    """`parts` (headers, blank line, bytes) between delimiters of BOUNDARY."""
    dash = b"--" + BOUNDARY.encode()
    return (
        preamble + b"".join(dash + b"\r\n" + p + b"\r\n" for p in parts) + dash + b"--" + epilogue
    )


def part(headers: str, data: bytes = b"") -> bytes:
    return headers.encode() + b"\r\n\r\n" + data


def without_content_types(parts: list[Part]) -> list[Part]:
    return [Part(p.name, p.filename, None, p.data) for p in parts]


# -- what discord.py sends ---------------------------------------------------------------------


async def test_what_discord_py_sends_reads_back_part_for_part() -> None:
    form = discord_form(
        discord.File(io.BytesIO(PNG), "chart.png", description="alt"),
        discord.File(io.BytesIO(b"status,count\r\n--b\r\n"), "data.csv"),
    )
    body, content_type = await serialized(form)
    parts = parse(body, content_type)
    assert [(p.name, p.filename, p.content_type) for p in parts] == [
        ("payload_json", None, "text/plain; charset=utf-8"),
        ("files[0]", "chart.png", "application/octet-stream"),
        ("files[1]", "data.csv", "application/octet-stream"),
    ]
    assert parts[0].data.startswith(b'{"content":"Chart"')
    assert (parts[1].data, parts[2].data) == (PNG, b"status,count\r\n--b\r\n")
    theirs = await aiohttp_reads(body, content_type)
    assert without_content_types(parts) == without_content_types(theirs)


async def test_names_quoted_escaped_and_in_utf8_read_as_aiohttp_wrote_them() -> None:
    form = aiohttp.FormData(quote_fields=False)
    names = ['a "quoted" \\ name;x=1.png', "graphique été.png", "plain.bin"]
    for index, name in enumerate(names):
        form.add_field(f"files[{index}]", io.BytesIO(b"x"), filename=name)
    form.add_field("note", "héllo")
    body, content_type = await serialized(form)
    parts = parse(body, content_type)
    assert [p.filename for p in parts] == [*names, None]
    assert parts[-1].data.decode() == "héllo"
    assert without_content_types(parts) == without_content_types(
        await aiohttp_reads(body, content_type)
    )


def test_an_rfc_5987_filename_is_percent_decoded_and_preferred() -> None:
    headers = (
        'Content-Disposition: form-data; name=files; filename="fallback.png"; '
        "filename*=UTF-8''%C3%A9t%C3%A9%20%E2%9C%93.png"
    )
    [read] = parse(body_of(part(headers, PNG)), CONTENT_TYPE)
    assert (read.name, read.filename, read.data) == ("files", "été ✓.png", PNG)
    latin = parse_header_value("form-data; name=x; filename*=iso-8859-1'fr'%E9t%E9.png")
    assert latin == ("form-data", {"name": "x", "filename": "été.png"})


def test_parameters_may_be_tokens_or_quoted_and_the_boundary_quoted() -> None:
    assert parse_header_value('multipart/form-data; BOUNDARY="a b:c"') == (
        "multipart/form-data",
        {"boundary": "a b:c"},
    )
    body = body_of(part('content-disposition:FORM-DATA;name="a\\"b"', b"1")).replace(
        BOUNDARY.encode(), b"a b:c"
    )
    [read] = parse(body, 'multipart/form-data; boundary="a b:c"')
    assert (read.name, read.data) == ('a"b', b"1")


def test_preamble_epilogue_and_transport_padding_are_ignored() -> None:
    epilogue = b" \r\n--b0undary\r\nignored too"
    body = body_of(part(DISPOSITION.format("a"), b"1"), preamble=b"ignored\r\n", epilogue=epilogue)
    body = body.replace(b"--b0undary\r\n", b"--b0undary \t\r\n")
    assert parse(body, CONTENT_TYPE) == [Part("a", None, None, b"1")]


def test_the_boundary_inside_a_line_of_a_part_does_not_split_it() -> None:
    tricky = b"not --b0undary\r\nmid --b0undary\r\n- --b0undary--\r\n\n--b0undary\r--b0undary"
    body = body_of(part(DISPOSITION.format("a"), tricky), part(DISPOSITION.format("b"), b"2"))
    assert parse(body, CONTENT_TYPE) == [
        Part("a", None, None, tricky),
        Part("b", None, None, b"2"),
    ]


def test_an_empty_file_part_and_an_empty_form() -> None:
    headers = 'Content-Disposition: form-data; name="files[0]"; filename="empty.bin"'
    assert parse(body_of(part(headers)), CONTENT_TYPE) == [Part("files[0]", "empty.bin", None, b"")]
    assert parse(body_of(), CONTENT_TYPE) == []


# -- malformed bodies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "why"),
    [
        (body_of(part(DISPOSITION.format("a"))).removesuffix(b"--\r\n"), CONTENT_TYPE, "close"),
        (b"--b0undary\r\n" + part(DISPOSITION.format("a"), b"1"), CONTENT_TYPE, "close"),
        (b"no delimiter at all", CONTENT_TYPE, "close"),
        (body_of(part(DISPOSITION.format("a"), b"x\r\n--b0undaryX")), CONTENT_TYPE, "not a delim"),
        (body_of(part(DISPOSITION.format("a"), b"--b0undary!")), CONTENT_TYPE, "not a delimiter"),
        (body_of(part(DISPOSITION.format("a")), epilogue=b"x"), CONTENT_TYPE, "not a delimiter"),
        (b"--b0undaryX\r\n" + body_of(), CONTENT_TYPE, "not a delimiter"),
        (body_of(part(DISPOSITION.format("a"))), "multipart/form-data", "boundary"),
        (body_of(part(DISPOSITION.format("a"))), 'multipart/form-data; boundary=""', "boundary"),
        (body_of(part(DISPOSITION.format("a"))), "multipart/form-data; boundary=a;", "parameters"),
        (body_of(part("Content-Disposition: form-data; filename=a.png")), CONTENT_TYPE, "name"),
        (body_of(part("Content-Disposition: attachment; name=a")), CONTENT_TYPE, "form-data"),
        (body_of(part("Content-Type: text/plain", b"1")), CONTENT_TYPE, "no Content-Disposition"),
        (body_of(part("", b"1")), CONTENT_TYPE, "no headers"),
        (body_of(b"Content-Disposition: form-data; name=a\r\n1"), CONTENT_TYPE, "blank line"),
        (body_of(part("Content-Disposition: form-data; name=a[0]")), CONTENT_TYPE, "parameters"),
        (body_of(part("Content-Disposition: form-data; name=a; name=b")), CONTENT_TYPE, "repeated"),
        (body_of(part("Content-Disposition: form-data; name*=a.png")), CONTENT_TYPE, "RFC 5987"),
        (body_of(part(DISPOSITION.format("a") + "\r\n folded")), CONTENT_TYPE, "part header"),
        (
            body_of(part(DISPOSITION.format("a") + "\r\n" + DISPOSITION.format("b"))),
            CONTENT_TYPE,
            "part header",
        ),
        (body_of(part(DISPOSITION.format("a") + " ;")), CONTENT_TYPE, "parameters"),
        (
            body_of(part(DISPOSITION.format("a") + "; filename*=utf-8''%FF")),
            CONTENT_TYPE,
            "undecodable",
        ),
        (
            body_of(part(DISPOSITION.format("a") + "\r\nContent-Transfer-Encoding: base64")),
            CONTENT_TYPE,
            "Content-Transfer-Encoding",
        ),
    ],
)
def test_malformed_bodies_are_refused(body: bytes, content_type: str, why: str) -> None:
    with pytest.raises(MultipartError, match=why):
        parse(body, content_type)


def test_the_router_answers_a_malformed_body_with_400_code_50109() -> None:
    cases = [
        body_of(part(DISPOSITION.format("a"))).removesuffix(b"--\r\n"),
        body_of(part(DISPOSITION.format("payload_json"), b"{not json")),
        body_of(part(DISPOSITION.format("content"), b"\xff")),
    ]
    for body in cases:
        with pytest.raises(ApiError) as refused:
            RestApi._read_multipart(body, CONTENT_TYPE)
        assert (refused.value.status, refused.value.body["code"]) == (400, 50109)
        assert refused.value.violation


# -- over HTTP ---------------------------------------------------------------------------------


async def test_over_http_a_post_with_files_is_a_message_and_a_bad_one_a_400() -> None:
    async with Emulator() as emu:
        channel = emu.add_guild("Demo").channels["general"]
        await post_good_bad_and_too_large(emu, f"{emu.base_url}/channels/{channel.id}/messages")
        assert len(emu.messages(channel)) == 1


async def post_good_bad_and_too_large(emu: Emulator, url: str) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bot {emu.token}"}) as session:
        form = discord_form(discord.File(io.BytesIO(PNG), "chart.png"))
        async with session.post(url, data=form) as sent:
            assert sent.status == 200
            message = await sent.json()
        assert message["content"] == "Chart"
        assert [a["filename"] for a in message["attachments"]] == ["chart.png"]
        assert emu.attachment_bytes(message, "chart.png") == PNG

        bad = body_of(part(DISPOSITION.format("payload_json"), b"{}")).removesuffix(b"--\r\n")
        async with session.post(url, data=bad, headers={"Content-Type": CONTENT_TYPE}) as refused:
            assert refused.status == 400
            assert (await refused.json())["code"] == 50109
        [violation] = emu.violations
        assert "malformed multipart/form-data body: no close delimiter --b0undary--" in violation
        emu.violations.clear()

        async def too_much() -> AsyncIterator[bytes]:  # chunked: no Content-Length to check
            yield b"--b0undary\r\n" + part('Content-Disposition: form-data; name="f"; filename=x')
            for _ in range(REQUEST_LIMIT_BYTES // 2**20 + 1):
                yield b"\0" * 2**20

        headers = {"Content-Type": CONTENT_TYPE}
        async with session.post(url, data=too_much(), headers=headers) as over:
            assert over.status == 413
            assert (await over.json())["code"] == 40005
        assert "25 MiB" in emu.violations.pop()
