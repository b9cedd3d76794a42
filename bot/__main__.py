"""`pledgebot`: the one entry point for operators, the bot and the local console."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from bot.client import logredact
from bot.config import Config, ConfigError, load_config, location_name, parse_database_url
from bot.errors import OperatorError, StoreError, UserError, driver_errors
from bot.models import STATUSES
from bot.pledges.cards import counted
from bot.pledges.content import (
    ContentError,
    export_content,
    load_content,
    read_content,
    verify_quotes,
    verify_source,
)
from bot.pledges.ratings import rating_problem
from bot.pledges.suggestions import Suggestion, Suggestions
from bot.storage.files import backup, in_use, restore
from bot.store import Store

EXIT_USAGE = 2


def shard_ids(text: str) -> list[int]:
    try:
        return sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError("shard ids are numbers separated by commas") from None


def database_url(text: str) -> Path | str:
    """`db copy`'s --from/--to: a URL as `[database] url` takes it (relative to here)."""
    try:
        return parse_database_url(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pledgebot",
        description="Brief Discord communities on political pledges and the powers behind them.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="configuration file (default: $PLEDGEBOT_CONFIG, else built-in defaults)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the bot on Discord (token from DISCORD_TOKEN)")
    run.add_argument("--shard-count", type=int, metavar="N", help="total shards across processes")
    run.add_argument(
        "--shard-ids",
        type=shard_ids,
        metavar="IDS",
        help="shards this process runs, e.g. 0,1 (default: all); it schedules only their servers",
    )
    commands.add_parser(
        "console", help="run the real bot against a local Discord emulator; no token needed"
    )
    invite = commands.add_parser(
        "invite",
        help="print the URL that adds the bot to a server, the permissions it asks, and the "
        "URL that installs it on a member's own account",
    )
    invite.add_argument(
        "--client-id",
        type=int,
        metavar="ID",
        help="the application's id (default: asked of Discord with DISCORD_TOKEN)",
    )
    sync = commands.add_parser("sync", help="register the slash commands with Discord now")
    sync.add_argument("--guild", type=int, metavar="ID", help="sync to one server only")
    doctor = commands.add_parser(
        "doctor",
        help="check the token, commands, database, content, channels and roles; changes nothing",
        description="One table of checks, each ok, warn, fail or skip (what it needs failed). "
        "Exits 0 when nothing failed (warnings alone: 0), 78 when Discord refuses the token, "
        "69 when Discord cannot be reached, else 1 when any check failed. Read-only: it "
        "never posts, never changes the database, never registers commands.",
    )
    doctor.add_argument(
        "--guild", type=int, metavar="ID", help="the commands are synced to this server only"
    )

    db = commands.add_parser("db", help="manage the database").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    db.add_parser("init", help="create the database file and bring its schema up to date")
    load = db.add_parser("load", help="load content files (idempotent; all or nothing)")
    load.add_argument("--dir", type=Path, metavar="DIR", help="content directory (default: config)")
    export = db.add_parser("export", help="write the stored content as TOML that load reads back")
    export.add_argument("--out", type=Path, required=True, metavar="DIR")
    db.add_parser("check", help="summarise what the store holds and verify every quote")
    db.add_parser(
        "backup", help="copy the database safely while the bot runs (SQLite online backup)"
    ).add_argument("file", type=Path, metavar="FILE")
    db.add_parser(
        "restore", help="replace the database with a backup (the bot must be stopped)"
    ).add_argument("file", type=Path, metavar="FILE")
    copy = db.add_parser(
        "copy",
        help="copy every row into a new, empty database: SQLite <-> PostgreSQL (no bot running)",
        description="Copy every table's rows, ids kept, from one pledgebot database into a "
        "new, empty one, then verify each table's row count. URLs as [database] url takes "
        "them: sqlite:///FILE (relative to here), sqlite:////ABSOLUTE/FILE, "
        "postgresql://USER@HOST/DATABASE (password from PGPASSWORD or ~/.pgpass). A "
        "PostgreSQL source is read as of one moment (one snapshot): rows a bot writes to it "
        "after the copy begins are not copied.",
    )
    copy.add_argument("--from", dest="source", type=database_url, required=True, metavar="URL")
    copy.add_argument("--to", dest="target", type=database_url, required=True, metavar="URL")

    content = commands.add_parser("content", help="add a statement").add_subparsers(
        dest="content_command", required=True, metavar="ACTION"
    )
    new = content.add_parser(
        "new", help="copy a statement's text and write a content file to curate from it"
    )
    new.add_argument("--source", type=Path, required=True, metavar="FILE", help="its text")
    new.add_argument("--slug", required=True, help="a short name, e.g. housing-plan")
    new.add_argument("--dir", type=Path, metavar="DIR", help="content directory (default: config)")
    covered = content.add_parser(
        "coverage", help="each sentence of a statement and the records that quote it"
    )
    covered.add_argument("slug", nargs="?", help="one statement (default: all)")
    covered.add_argument(
        "--dir", type=Path, metavar="DIR", help="content directory (default: config)"
    )

    status = commands.add_parser("status", help="track pledge status").add_subparsers(
        dest="status_command", required=True, metavar="ACTION"
    )
    status_set = status.add_parser(
        "set",
        help="record a new status for a pledge",
        description="Statuses: " + ", ".join(s.slug for s in STATUSES),
    )
    status_set.add_argument("slug", help="the pledge's slug")
    status_set.add_argument("status", choices=[s.slug for s in STATUSES], metavar="STATUS")
    status_set.add_argument("--note", required=True, help="why the status changed")
    status_set.add_argument(
        "--evidence",
        default="",
        metavar="URL",
        help="an http(s) link to public evidence; needed for any status but not-yet-rated",
    )
    status_set.add_argument("--by", default=None, help="who made the change (default: you)")

    suggestions = commands.add_parser(
        "suggestions", help="review members' suggested statuses"
    ).add_subparsers(dest="suggestions_command", required=True, metavar="ACTION")
    suggestions.add_parser("list", help="the suggestions waiting for review, oldest first")
    suggestions.add_parser("show", help="one suggestion in full").add_argument(
        "id", type=int, metavar="ID"
    )
    accept = suggestions.add_parser(
        "accept", help="record the suggested status as your rating; the member is told"
    )
    accept.add_argument("id", type=int, metavar="ID")
    accept.add_argument("--by", default=None, help="who rated it (default: you)")
    accept.add_argument(
        "--note", default="", help="the history's note (default: the member's note)"
    )
    reject = suggestions.add_parser("reject", help="decline it; the member is told the reason")
    reject.add_argument("id", type=int, metavar="ID")
    reject.add_argument("--reason", required=True, help="why (the member is told)")
    reject.add_argument("--by", default=None, help="who decided (default: you)")
    suggestions.add_parser("block", help="refuse a user's suggestions from now on").add_argument(
        "user_id", type=int, metavar="USER_ID"
    )
    suggestions.add_parser("unblock", help="take a user's suggestions again").add_argument(
        "user_id", type=int, metavar="USER_ID"
    )
    return parser


async def with_store(config: Config, action: Callable[[Store], Awaitable[int]]) -> int:
    location = config.database
    if not isinstance(location, Path):  # a server database: no file to hold
        return await _with_open_store(location, action)
    # Held while the store is open: `db restore` and `db copy` refuse meanwhile.
    with in_use(location):
        return await _with_open_store(location, action)


async def _with_open_store(location: Path | str, action: Callable[[Store], Awaitable[int]]) -> int:
    store = await Store.open(location)
    try:
        return await action(store)
    finally:
        await store.close()


def db_backup(config: Config, target: Path) -> int:
    if config.database_url is not None:
        raise OperatorError(
            "db backup copies a SQLite file; this database is on PostgreSQL: back it up "
            f"with pg_dump, e.g. `pg_dump --format=custom --file={target} "
            f"'{config.database_name}'`"
        )
    copied = backup(config.database_path, target)
    print(
        f"backup written: {copied.path} ({copied.size / 2**20:.1f} MiB, schema version "
        f"{copied.schema_version}, {copied.deliveries} deliveries); integrity_check ok"
    )
    return 0


def db_restore(config: Config, source: Path) -> int:
    if config.database_url is not None:
        raise OperatorError(
            "db restore replaces a SQLite file; this database is on PostgreSQL: restore a "
            f"pg_dump with pg_restore (psql for a plain SQL dump), e.g. `pg_restore --clean "
            f"--dbname='{config.database_name}' {source}`, with every bot stopped"
        )
    done = restore(source, config.database_path)
    print(f"restored {done.database} from {source}")
    if done.replaced is not None:
        print(f"the database it replaced is kept as {done.replaced}")
    return 0


async def db_init(config: Config) -> int:
    async def init(store: Store) -> int:
        version = await store.schema_version()
        print(f"database ready: {config.database_name} (schema version {version})")
        return 0

    return await with_store(config, init)


async def db_load(config: Config, directory: Path | None) -> int:
    async def load(store: Store) -> int:
        report = await load_content(store, directory or config.content_dir)
        print(
            f"loaded {counted(report.statements, 'statement')}, "
            f"{counted(report.pledges, 'pledge')}, {counted(report.powers, 'power')}, "
            f"{counted(report.claims, 'claim')}, {counted(report.quotes, 'quote')} "
            f"from {counted(len(report.files), 'file')}"
        )
        return 0

    return await with_store(config, load)


async def db_export(config: Config, out: Path) -> int:
    async def export(store: Store) -> int:
        for path in await export_content(store, out):
            print(f"wrote {path}")
        return 0

    return await with_store(config, export)


async def db_check(config: Config) -> int:
    async def check(store: Store) -> int:
        counts = await store.counts()
        print(f"database: {config.database_name} (schema version {await store.schema_version()})")
        if config.database_url is not None:
            print(
                "migrations current; content and quotes checked through the store below; "
                "not checked here: the server's own storage (PostgreSQL's amcheck, pg_dump)"
            )
        failures: list[str] = []
        sources_failed: list[str] = []
        for statement in await store.statements():
            content = await store.statement_content(statement.slug)
            assert content is not None
            failures += verify_quotes(content)
            if problem := verify_source(statement):
                sources_failed.append(problem)
            print(f"\nstatement {statement.slug}: {statement.title} ({statement.author})")
            print(f"  source  SHA-256 {statement.source_sha256}")
            for pledge in content.pledges:
                print(f"  pledge  {pledge.slug:<36} [{pledge.status}] {pledge.title}")
            for power in content.powers:
                print(f"  power   {power.slug:<36} {power.name}")
            for claim in content.claims:
                print(f"  claim   {claim.slug}")
        print(
            f"\n{counted(counts['statements'], 'statement')}, "
            f"{counted(counts['pledges'], 'pledge')}, {counted(counts['powers'], 'power')}, "
            f"{counted(counts['claims'], 'claim')}, "
            f"{counted(counts['status_history'], 'status change')}"
        )
        verified = counts["quotes"] - len(failures)
        print(f"quotes verified against their statement: {verified}/{counts['quotes']}")
        for failure in failures:
            print(f"  NOT VERIFIED: {failure}", file=sys.stderr)
        verified_sources = counts["statements"] - len(sources_failed)
        print(f"source texts matching their SHA-256: {verified_sources}/{counts['statements']}")
        for failure in sources_failed:
            print(f"  NOT VERIFIED: {failure}", file=sys.stderr)
        if counts["statements"] == 0:
            print("the store is empty: run `pledgebot db load`", file=sys.stderr)
            return 1
        return 1 if failures or sources_failed else 0

    return await with_store(config, check)


async def db_copy(source: Path | str, target: Path | str) -> int:
    from bot.storage.copy import copy_database  # only `db copy` needs it, not `run`

    copied = await copy_database(source, target)
    for table in copied:
        print(f"  {table.name:<20} {table.rows:>9} rows")
    total = sum(table.rows for table in copied)
    print(
        f"copied {total} rows in {len(copied)} tables from {location_name(source)} to "
        f"{location_name(target)}; every table's row count verified"
    )
    return 0


def content_new(config: Config, args: argparse.Namespace) -> int:
    from bot.pledges.editorial import new_skeleton

    directory = args.dir or config.content_dir
    written, source = new_skeleton(args.source, args.slug, directory, today=date.today())
    print(f"copied the source text to {source}")
    print(f"wrote {written}: curate it, then run `pledgebot content coverage {args.slug}`")
    return 0


def content_coverage(config: Config, args: argparse.Namespace) -> int:
    from bot.pledges.editorial import coverage_report, statement_named

    contents = read_content(args.dir or config.content_dir)
    chosen = [statement_named(contents, args.slug)] if args.slug else contents
    for number, content in enumerate(chosen):
        if number:
            print()
        print("\n".join(coverage_report(content)))
    return 0


async def status_set(config: Config, args: argparse.Namespace) -> int:
    if problem := rating_problem(args.status, args.evidence):
        raise OperatorError(f"status not recorded: {problem}")

    async def set_status(store: Store) -> int:
        change = await store.set_status(
            args.slug,
            args.status,
            note=args.note,
            evidence_url=args.evidence,
            changed_by=operator_name(args.by),
        )
        print(f"{change.pledge_slug}: {change.from_status} -> {change.to_status}")
        return 0

    return await with_store(config, set_status)


def operator_name(by: str | None) -> str:
    """Who acts from the shell: --by, else the login (as `status set` records it)."""
    import getpass

    return by or f"operator:{getpass.getuser()}"


def suggestion_lines(suggestion: Suggestion) -> list[str]:
    """One suggestion in full, for operators (who may see who suggested it)."""
    s = suggestion
    where = f"server {s.guild_id}" if s.guild_id else "a direct message"
    lines = [
        f"suggestion #{s.id} [{s.state}]: {s.pledge_slug} ({s.pledge_title})",
        f"  suggests   {s.status} (the pledge is {s.pledge_status} now)",
        f"  evidence   {s.evidence_url}",
        f"  note       {s.note or '(none)'}",
        f"  by         user {s.user_id}, in {where}, at {s.created_at}",
    ]
    for backer in s.backers:
        lines.append(
            f"  backed by  user {backer.user_id} at {backer.created_at}, suggesting "
            f"{backer.status}" + (f": {backer.note}" if backer.note else "")
        )
    if s.state != "open":
        lines.append(f"  decided    {s.state} at {s.decided_at} by {s.decided_by}")
    if s.reason:
        lines.append(f"  reason     {s.reason}")
    if s.history_id is not None:
        lines.append(f"  recorded   as status change #{s.history_id}")
    return lines


NOTICE_ENDINGS = {
    "pending": "to be sent by DM",
    "sending": "being sent by DM",
    "waiting": "DM not sent; to be shown after their next command",
    "dm": "sent by DM",
    "command": "shown after a command",
}


async def suggestions_action(config: Config, args: argparse.Namespace) -> int:
    action = args.suggestions_command

    async def act(store: Store) -> int:
        suggestions = Suggestions(store.db)
        try:
            return await _suggestions_action(suggestions, action, args)
        except UserError as refused:
            raise OperatorError(str(refused)) from None

    return await with_store(config, act)


async def _suggestions_action(
    suggestions: Suggestions, action: str, args: argparse.Namespace
) -> int:
    if action == "list":
        waiting = await suggestions.waiting()
        for s in waiting:
            backers = f", +{len(s.backers)} backing" if s.backers else ""
            print(
                f"#{s.id:<5} {s.created_at[:16]}  {s.pledge_slug}: {s.pledge_status} -> "
                f"{s.status}  (user {s.user_id}{backers})"
            )
        print(f"{len(waiting)} suggestion(s) waiting for review")
        return 0
    if action == "show":
        found = await suggestions.get(args.id)
        if found is None:
            raise OperatorError(f"there is no suggestion #{args.id}")
        print("\n".join(suggestion_lines(found)))
        for notice in await suggestions.notice_states(found.id):
            ending = NOTICE_ENDINGS.get(notice.state, notice.state)
            error = f" ({notice.error})" if notice.error else ""
            print(f"  told       user {notice.user_id}: {ending}{error} at {notice.updated_at}")
        return 0
    if action == "accept":
        done = await suggestions.accept(args.id, by=operator_name(args.by), note=args.note)
        assert done.change is not None
        print(
            f"accepted #{args.id}: {done.change.pledge_slug} {done.change.from_status} -> "
            f"{done.change.to_status} (status change #{done.change.id}); "
            f"{done.told} member(s) to be told"
        )
        return 0
    if action == "reject":
        done = await suggestions.reject(args.id, by=operator_name(args.by), reason=args.reason)
        print(f"rejected #{args.id}; {done.told} member(s) to be told the reason")
        return 0
    if action == "block":
        if await suggestions.block(args.user_id, by=operator_name(None)):
            kept = await suggestions.open_count_of(args.user_id)
            print(
                f"blocked user {args.user_id}: /pledge suggest refuses them from now on "
                f"({kept} open suggestion(s) of theirs kept for review)"
            )
        else:
            print(f"user {args.user_id} was already blocked")
        return 0
    if await suggestions.unblock(args.user_id):
        print(f"unblocked user {args.user_id}: their suggestions are taken again")
    else:
        print(f"user {args.user_id} was not blocked")
    return 0


def dispatch(config: Config, args: argparse.Namespace) -> int:
    if args.command == "db" and args.db_command in ("backup", "restore"):
        return (db_backup if args.db_command == "backup" else db_restore)(config, args.file)
    if args.command == "db":
        actions: dict[str, Callable[[], Coroutine[Any, Any, int]]] = {
            "init": lambda: db_init(config),
            "load": lambda: db_load(config, args.dir),
            "export": lambda: db_export(config, args.out),
            "check": lambda: db_check(config),
            "copy": lambda: db_copy(args.source, args.target),
        }
        return asyncio.run(actions[args.db_command]())
    if args.command == "status":
        return asyncio.run(status_set(config, args))
    if args.command == "suggestions":
        return asyncio.run(suggestions_action(config, args))
    if args.command == "content":
        return (content_new if args.content_command == "new" else content_coverage)(config, args)
    from bot.client import runner  # imports discord: only for the commands that need it

    if args.command == "run":
        return runner.run(config, shard_count=args.shard_count, shard_ids=args.shard_ids)
    if args.command == "console":
        return runner.console(config)
    if args.command == "invite":
        return runner.invite(config, args.client_id)
    if args.command == "doctor":
        return runner.doctor(config, args.guild)
    return runner.sync(config, args.guild)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"pledgebot: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logredact.install(config.token)
    try:
        code = dispatch(config, args)
    except (OperatorError, ContentError, StoreError) as exc:
        print(f"pledgebot: {exc}", file=sys.stderr)
        code = getattr(exc, "exit_code", 1)  # e.g. 78 for a refused token
    except driver_errors() as exc:
        print(f"pledgebot: database error on {config.database_name}: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)


if __name__ == "__main__":
    main()
