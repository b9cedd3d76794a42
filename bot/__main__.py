"""`pledgebot`: the one entry point for operators, the bot and the local console."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from bot.client import logredact
from bot.config import Config, ConfigError, load_config, location_name, parse_database_url
from bot.errors import OperatorError, StoreError, driver_errors
from bot.models import STATUSES
from bot.pledges.content import (
    ContentError,
    export_content,
    load_content,
    read_content,
    verify_quotes,
    verify_source,
)
from bot.pledges.editorial import coverage_report, new_skeleton, statement_named
from bot.pledges.ratings import rating_problem
from bot.storage.copy import copy_database
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
    sync = commands.add_parser("sync", help="register the slash commands with Discord now")
    sync.add_argument("--guild", type=int, metavar="ID", help="sync to one server only")

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
            f"loaded {report.statements} statement(s), {report.pledges} pledges, "
            f"{report.powers} powers, {report.claims} claims, {report.quotes} quotes "
            f"from {len(report.files)} file(s)"
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
            print(f"\nstatement {statement.slug}: {statement.title} ({statement.publisher})")
            print(f"  source  SHA-256 {statement.source_sha256}")
            for pledge in content.pledges:
                print(f"  pledge  {pledge.slug:<36} [{pledge.status}] {pledge.title}")
            for power in content.powers:
                print(f"  power   {power.slug:<36} {power.name}")
            for claim in content.claims:
                print(f"  claim   {claim.slug}")
        print(
            f"\n{counts['statements']} statement(s), {counts['pledges']} pledges, "
            f"{counts['powers']} powers, {counts['claims']} claims, "
            f"{counts['status_history']} status changes"
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
    directory = args.dir or config.content_dir
    written, source = new_skeleton(args.source, args.slug, directory, today=date.today())
    print(f"copied the source text to {source}")
    print(f"wrote {written}: curate it, then run `pledgebot content coverage {args.slug}`")
    return 0


def content_coverage(config: Config, args: argparse.Namespace) -> int:
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
            changed_by=args.by or f"operator:{getpass.getuser()}",
        )
        print(f"{change.pledge_slug}: {change.from_status} -> {change.to_status}")
        return 0

    return await with_store(config, set_status)


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
    if args.command == "content":
        return (content_new if args.content_command == "new" else content_coverage)(config, args)
    from bot.client import runner  # imports discord: only for the commands that need it

    if args.command == "run":
        return runner.run(config, shard_count=args.shard_count, shard_ids=args.shard_ids)
    if args.command == "console":
        return runner.console(config)
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
