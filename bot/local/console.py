"""`pledgebot console`: the real bot against a local Discord, driven by typed slash commands.

The event loop (emulator + bot) runs in a background thread; the main thread reads
lines, so readline's Tab completion can ask the bot's own autocomplete synchronously.
Without a terminal it reads commands from stdin and exits at end of input.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shlex
import sys
import tempfile
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

from bot.config import Config
from bot.local.emulator import Emulator
from bot.local.interactions import CommandUsageError, InteractionResult
from bot.local.models import ChannelState, GuildState, UserState

T = TypeVar("T")

HELP = """\
Type slash commands as in Discord, options as name:value, for example:
  /pledge list
  /pledge show pledge:europol-partnership
  /pledge search query:vehicles private:true
  /briefing schedule channel:#briefings time:09:00 days:weekdays   (as moderator)
Tab completes command names and, after name:, asks the bot's own autocomplete.
  :as member | :as moderator   who you are (now: {who})
  :in #channel                 where you type in the demo server (now: {where})
  :in other-server             #general of a server pledgebot is not in
  :in dm | :in group-dm        your DM with pledgebot | a DM between you and 'friend'
  :install on | :install off   pledgebot on your own account (now: {installed}): member
                               commands then work in other-server and group-dm too
  :click N                     press button N on the last reply or DM
  :dms off | :dms on           close or open your DMs to the bot (now: {dms})
  :help  :quit
DMs the bot sends you are printed as they arrive, marked ✉.
Images and files the bot attaches are saved to {images} (each printed as 🖼 NAME saved to PATH).
"""
OPTION = re.compile(r"(?:^|\s)([a-z_][\w-]*):")
# Where you can type besides the demo server's channels: `:in NAME`.
OTHER_SERVER, DM_WITH_BOT, GROUP_DM = "other-server", "dm", "group-dm"
PLACES = (OTHER_SERVER, DM_WITH_BOT, GROUP_DM)
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER = 3, 4, 5, 6, 7, 8, 9, 10


TIMESTAMP = re.compile(r"<t:(-?\d+)(?::([tTdDfFR]))?>")


IN_PLACE = {
    OTHER_SERVER: "#general of Other server, which pledgebot is not in: only your own install "
    "of pledgebot answers there (:install on)",
    DM_WITH_BOT: "your DM with pledgebot",
    GROUP_DM: "a DM between you and friend, which pledgebot is not in: only your own install "
    "of pledgebot answers there (:install on)",
}


def readable(text: str) -> str:
    """Discord renders <t:…> timestamps in each reader's zone; a terminal shows UTC."""

    def show(match: re.Match[str]) -> str:
        moment = datetime.fromtimestamp(int(match.group(1)), UTC)
        style = match.group(2) or "f"
        if style in "dD":
            return moment.strftime("%a %d %b %Y")
        if style in "tT":
            return moment.strftime("%H:%M UTC")
        return moment.strftime("%a %d %b %Y %H:%M UTC")

    return TIMESTAMP.sub(show, text)


def render_message(
    message: dict[str, Any], out: TextIO, names: Callable[[str], str] = readable
) -> list[dict[str, Any]]:
    """Print a message readably; return its buttons in the order they are numbered."""
    print(names("\n".join(_message_lines(message))), file=out)
    buttons = [b for row in message.get("components", []) for b in row.get("components", [])]
    if buttons:
        labels = [
            f"[{i}] {b.get('label', '?')}" + (" (disabled)" if b.get("disabled") else "")
            for i, b in enumerate(buttons, 1)
        ]
        print("  ".join(labels) + "   (:click N)", file=out)
    return buttons


def _message_lines(message: dict[str, Any]) -> list[str]:
    lines = [message["content"]] if message.get("content") else []
    for embed in message.get("embeds", []):
        lines.append(f"┏ {embed.get('title', '')}")
        lines += [f"┃ {line}" for line in (embed.get("description") or "").splitlines()]
        for field in embed.get("fields", []):
            lines.append(f"┃ ▸ {field['name']}")
            lines += [f"┃   {line}" for line in field["value"].splitlines()]
        lines.append(f"┗ {embed['footer']['text']}" if embed.get("footer") else "┗")
    return lines


def split_command(line: str) -> tuple[list[str], dict[str, str]]:
    """'/pledge show pledge:europol partnership' -> (['pledge', 'show'], {'pledge': '...'})."""
    text = line.strip().removeprefix("/")
    first = OPTION.search(text)
    head = text[: first.start()] if first else text
    path = head.split()
    options: dict[str, str] = {}
    if first:
        rest = text[first.start() :]
        matches = list(OPTION.finditer(rest))
        for index, match in enumerate(matches):
            end = matches[index + 1].start() if index + 1 < len(matches) else len(rest)
            value = rest[match.end() : end].strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = shlex.split(value)[0]
            options[match.group(1)] = value
    return path, options


# Builds the bot for a config already pointed at the emulator. Passed in by the runner,
# so `bot.local` never imports the client that imports it.
BotFactory = Callable[[Config], Any]


def images_folder(config: Config) -> Path:
    """Where the console saves what the bot attaches: `console-images` beside the SQLite
    file (so `data/console-images` by default), or a new temporary folder when the store is
    PostgreSQL and there is no file to sit beside."""
    if config.database_url is None:
        return config.database_path.parent / "console-images"
    return Path(tempfile.mkdtemp(prefix="pledgebot-console-images-"))


class Console:
    def __init__(
        self,
        config: Config,
        make_bot: BotFactory,
        out: TextIO = sys.stdout,
        images_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.make_bot = make_bot
        self.out = out
        self.images_dir = (images_dir or images_folder(config)).resolve()
        self.loop = asyncio.new_event_loop()
        self.emulator = Emulator(stable_ids=True)  # the demo server keeps its briefings
        self.guild: GuildState | None = None
        self.users: dict[str, UserState] = {}
        self.who = "member"
        self.channel_name = "general"
        self.place: str | None = None  # one of PLACES, or None: the demo server
        self.other_server: GuildState | None = None
        # by who: their DM with the bot, and a DM with 'friend' (who shares no server)
        self.dms_with_bot: dict[str, ChannelState] = {}
        self.group_dms: dict[str, ChannelState] = {}
        self.last_buttons: list[dict[str, Any]] = []
        self.last_message: dict[str, Any] | None = None
        self.bot: Any = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self.call(self._start())

    async def _start(self) -> None:
        emu = self.emulator
        await emu.start()
        self.guild = emu.add_guild("Demo server", channels=("general", "briefings"))
        self.users = {
            "member": emu.add_user("member"),
            "moderator": emu.add_user("moderator", manage_guild=True),
        }
        self.other_server = emu.add_guild("Other server", channels=("general",), bot_member=False)
        friend = emu.add_user("friend", in_guilds=False)
        for name, user in self.users.items():
            self.dms_with_bot[name] = emu.dm_with_bot(user)
            self.group_dms[name] = emu.add_private_channel(user, friend)
        emu.on_message(self._posted)
        config = dataclasses.replace(
            self.config,
            api_base_url=emu.base_url,
            gateway_url=emu.gateway_url,
        )
        self.bot = self.make_bot(config)
        self._bot_task = asyncio.create_task(self.bot.start(emu.token))
        waiter = asyncio.create_task(self.bot.engine_started.wait())
        done, _ = await asyncio.wait(
            {self._bot_task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED
        )
        if self._bot_task in done:
            waiter.cancel()
            self._bot_task.result()  # raises the bot's start-up error
        if waiter not in done:
            raise RuntimeError("the bot did not become ready within 30 s")

    def stop(self) -> None:
        try:
            self.call(self._stop(), timeout=15)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)

    async def _stop(self) -> None:
        if self.bot is not None:
            await self.bot.close()
            await asyncio.gather(self._bot_task, return_exceptions=True)
        await self.emulator.stop()

    def _posted(self, channel: ChannelState, message: dict[str, Any]) -> None:
        """Runs on the event loop: print each post, and each DM to you as it arrives."""
        if channel.recipient is not None:
            sender = self.emulator.bot_user.username
            print(f"\n── ✉ DM from {sender} to {channel.recipient.username} ──", file=self.out)
            buttons = render_message(message, self.out, self.readable)
            if buttons:
                self.last_buttons, self.last_message = buttons, message
        else:
            print(f"\n── posted in #{channel.name} ──", file=self.out)
            render_message(message, self.out, self.readable)
        self.save_files(message)
        self.out.flush()

    def save_files(self, message: dict[str, Any]) -> list[Path]:
        """Save each file the bot uploaded with `message` (the ones its embeds show too) and
        say where; a terminal cannot show the image, a file viewer can."""
        try:
            uploads = self.emulator.files(message)
        except CommandUsageError:  # deleted since it was shown: nothing left to save
            return []
        saved = []
        for upload in uploads:
            self.images_dir.mkdir(parents=True, exist_ok=True)
            path = self.images_dir / f"{message['id']}-{upload.filename}"
            path.write_bytes(upload.data)
            saved.append(path)
            mark = "🖼" if (upload.content_type or "").startswith("image/") else "📎"
            alt = f" (alt: {self.readable(upload.description)})" if upload.description else ""
            print(f"{mark} {upload.filename} saved to {path}{alt}", file=self.out)
        return saved

    def readable(self, text: str) -> str:
        """Timestamps, channel, role and user mentions as a person would see them."""
        guild = self.guild_state
        channels = {str(c.id): c.name for c in guild.channels.values()}
        roles = {str(r.id): r.name for r in guild.roles.values()}
        users = {str(u.id): u.username for u in self.users.values()}
        text = re.sub(r"<#(\d+)>", lambda m: f"#{channels.get(m[1], m[1])}", text)
        text = re.sub(r"<@&(\d+)>", lambda m: f"@{roles.get(m[1], m[1])}", text)
        text = re.sub(r"<@!?(\d+)>", lambda m: f"@{users.get(m[1], m[1])}", text)
        return readable(text)

    # -- commands -----------------------------------------------------------------

    @property
    def channel(self) -> ChannelState:
        """Where you type: a channel of the demo server, or one of PLACES."""
        assert self.guild is not None
        if self.place == OTHER_SERVER:
            assert self.other_server is not None
            return self.other_server.channels["general"]
        if self.place == DM_WITH_BOT:
            return self.dms_with_bot[self.who]
        if self.place == GROUP_DM:
            return self.group_dms[self.who]
        return self.guild.channels[self.channel_name]

    @property
    def where(self) -> str:
        """Where you type, as the prompt and :help say it."""
        return self.place or f"#{self.channel_name}"

    def schema(self, path: list[str]) -> list[dict[str, Any]]:
        """The option schemas of the (sub)command at `path`, as the bot registered them."""
        assert self.guild is not None
        registered = self.emulator.commands(self.guild) + self.emulator.commands()
        command = next((c for c in registered if c["name"] == path[0]), None)
        if command is None:
            raise CommandUsageError(f"no command /{path[0]}; try :help")
        options = command.get("options", [])
        for name in path[1:]:
            sub = next((o for o in options if o["name"] == name and o["type"] in (1, 2)), None)
            if sub is None:
                raise CommandUsageError(f"/{' '.join(path)}: unknown subcommand {name!r}")
            options = sub.get("options", [])
        return [o for o in options if o["type"] not in (1, 2)]

    def typed(self, schema: dict[str, Any], text: str) -> Any:
        assert self.guild is not None
        kind = schema["type"]
        if kind == BOOLEAN:
            return text.lower() in ("true", "yes", "1", "on")
        if kind == INTEGER:
            return int(text.lstrip("#"))
        if kind == NUMBER:
            return float(text)
        if kind == CHANNEL:
            name = text.lstrip("#")
            if name not in self.guild.channels:
                raise CommandUsageError(f"no channel #{name} (channels: {self.channel_list()})")
            return self.guild.channels[name]
        if kind in (ROLE, MENTIONABLE):
            role = self.guild.roles.get(text.lstrip("@"))
            if role is None:
                raise CommandUsageError(f"no role {text}")
            return role
        if kind == USER:
            return self.users.get(text.lstrip("@"), self.users["member"])
        return text

    def channel_list(self) -> str:
        assert self.guild is not None
        return ", ".join(f"#{n}" for n in self.guild.channels)

    def run_line(self, line: str) -> bool:
        """Execute one line; False means quit."""
        line = line.strip()
        if not line or line.startswith("#"):
            return True
        if line.startswith(":"):
            return self.meta(line[1:].split())
        if not line.startswith("/"):
            print("Commands start with / (or : for console commands). :help", file=self.out)
            return True
        try:
            path, raw = split_command(line)
            if not path:
                raise CommandUsageError("type a command after /")
            schemas = {s["name"]: s for s in self.schema(path)}
            unknown = set(raw) - set(schemas)
            if unknown:
                raise CommandUsageError(
                    f"unknown option(s) {', '.join(sorted(unknown))}; "
                    f"options: {', '.join(schemas) or 'none'}"
                )
            options = {k: self.typed(schemas[k], v) for k, v in raw.items()}
            result = self.call(
                self.emulator.run_command(
                    self.channel.guild,
                    path[0],
                    " ".join(path[1:]) or None,
                    options,
                    user=self.users[self.who],
                    channel=self.channel,
                    timeout=20,
                )
            )
        except (CommandUsageError, ValueError) as exc:
            print(f"! {exc}", file=self.out)
            return True
        self.show(result)
        return True

    @property
    def guild_state(self) -> GuildState:
        assert self.guild is not None
        return self.guild

    def show(self, result: InteractionResult) -> None:
        # after a "thinking" defer the first followup replaces the original: show it once
        shown = {m["id"]: m for m in [result.message, *result.followups] if m is not None}
        if not shown:
            print("(no reply)", file=self.out)
        for message in shown.values():
            if message.get("flags", 0) & 64:
                print("(only you can see this)", file=self.out)
            buttons = render_message(message, self.out, self.readable)
            self.save_files(message)
            if buttons:
                self.last_buttons, self.last_message = buttons, message

    def meta(self, words: list[str]) -> bool:
        command = words[0] if words else "help"
        if command in ("quit", "q", "exit"):
            return False
        if command == "as" and len(words) == 2 and words[1] in self.users:
            self.who = words[1]
            print(f"You are now {self.who}.", file=self.out)
        elif (
            command == "in"
            and len(words) == 2
            and words[1].lstrip("#") in self.guild_state.channels
        ):
            self.channel_name = words[1].lstrip("#")
            self.place = None
            print(f"You are now typing in #{self.channel_name}.", file=self.out)
        elif command == "in" and len(words) == 2 and words[1] in PLACES:
            self.place = words[1]
            print(f"You are now typing in {IN_PLACE[self.place]}.", file=self.out)
        elif command == "install" and len(words) == 2 and words[1] in ("on", "off"):
            self.call(self._switch("install", words[1] == "on"))
            state = "installed on" if words[1] == "on" else "removed from"
            print(f"pledgebot is {state} your account ({self.who}).", file=self.out)
        elif command == "click" and len(words) == 2 and words[1].isdigit():
            self.click(int(words[1]))
        elif command == "dms" and len(words) == 2 and words[1] in ("on", "off"):
            self.call(self._switch("dms", words[1] == "on"))
            state = "open" if words[1] == "on" else "closed (the bot's DMs to you now fail)"
            print(f"Your DMs ({self.who}) are {state}.", file=self.out)
        else:
            user = self.users[self.who]
            dms = "open" if user.accepts_dms else "closed"
            installed = "on" if user.installed else "off"
            print(
                HELP.format(
                    who=self.who,
                    where=self.where,
                    dms=dms,
                    installed=installed,
                    images=self.images_dir,
                ),
                file=self.out,
            )
        return True

    async def _switch(self, setting: str, on: bool) -> None:
        """`:dms` or `:install` for you, on the loop: the world's state belongs to the event
        loop's thread."""
        emu = self.emulator
        turn_on, turn_off = {
            "dms": (emu.open_dms, emu.close_dms),
            "install": (emu.install_for_user, emu.uninstall_for_user),
        }[setting]
        (turn_on if on else turn_off)(self.users[self.who])

    def click(self, number: int) -> None:
        if not self.last_message or not 1 <= number <= len(self.last_buttons):
            print("! no such button on the last reply or DM", file=self.out)
            return
        button = self.last_buttons[number - 1]
        try:
            result = self.call(
                self.emulator.click_button(
                    self.last_message,
                    button["custom_id"],
                    user=self.users[self.who],
                    timeout=20,
                )
            )
        except CommandUsageError as exc:
            print(f"! {exc}", file=self.out)
            return
        self.show(result)

    # -- completion ---------------------------------------------------------------

    def completions(self, line: str) -> list[str]:
        """Whole-line completions: command names, option names, then the bot's choices."""
        if not line.startswith("/"):
            return [
                c
                for c in (
                    ":as member",
                    ":as moderator",
                    *(f":in {place}" for place in PLACES),
                    ":install on",
                    ":install off",
                    ":dms off",
                    ":dms on",
                    ":help",
                    ":quit",
                )
                if c.startswith(line)
            ]
        path, raw = split_command(line)
        if not raw:
            return self._complete_path(line, path)
        try:
            schemas = {s["name"]: s for s in self.schema(path)}
        except CommandUsageError:
            return []
        focused, value = list(raw.items())[-1]
        schema = schemas.get(focused)
        if schema is None or not schema.get("autocomplete"):
            return []
        prefix = line[: len(line) - len(value)] if value else line
        earlier = {k: self.typed(schemas[k], v) for k, v in list(raw.items())[:-1] if k in schemas}
        choices = self.call(
            self.emulator.autocomplete(
                self.channel.guild,
                path[0],
                " ".join(path[1:]) or None,
                focused=focused,
                value=value,
                user=self.users[self.who],
                options=earlier,
                channel=self.channel,
            ),
            timeout=5,
        )
        return [f"{prefix}{c['value']}" for c in choices]

    def _complete_path(self, line: str, path: list[str]) -> list[str]:
        registered = self.emulator.commands(self.guild) + self.emulator.commands()
        names = [f"/{c['name']}" for c in registered]
        for command in registered:
            for option in command.get("options", []):
                if option["type"] == 1:
                    names.append(f"/{command['name']} {option['name']}")
        return sorted({n + " " for n in names if n.startswith(line.rstrip()) or n.startswith(line)})


def run_console(
    config: Config,
    make_bot: BotFactory,
    stdin: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
) -> int:
    console = Console(config, make_bot, out)
    print("Starting the local Discord and the bot…", file=out, flush=True)
    console.start()
    interactive = stdin.isatty()
    try:
        print(
            "Ready: Demo server with #general and #briefings. You are 'member'. "
            "Type :help for help.",
            file=out,
            flush=True,
        )
        reader = _interactive_reader(console) if interactive else _plain_reader(stdin)
        for line in reader:
            if not interactive:
                print(f"> {line.rstrip()}", file=out)
            if not console.run_line(line):
                break
            out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        console.stop()
    return 0


def _plain_reader(stdin: TextIO) -> Any:
    yield from stdin


def _interactive_reader(console: Console) -> Any:
    import readline

    matches: list[str] = []

    def complete(text: str, state: int) -> str | None:
        nonlocal matches
        if state == 0:
            line = readline.get_line_buffer()
            try:
                full = console.completions(line)
            except Exception:  # completion must never crash the prompt
                full = []
            # readline replaces only the current word: hand back each match's tail, and
            # prefer those that continue what was typed (Tab can then complete them)
            start = len(line) - len(text)
            matches = [m[start:] for m in full if m.startswith(line[:start])]
            matches = [m for m in matches if m.startswith(text)] or matches
        return matches[state] if state < len(matches) else None

    readline.set_completer_delims(" :")
    readline.set_completer(complete)
    readline.parse_and_bind("tab: complete")
    prompt: Callable[[], str] = lambda: f"{console.who}@{console.where}> "  # noqa: E731
    while True:
        try:
            yield input(prompt())
        except EOFError:
            return
