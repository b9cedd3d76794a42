"""Configuration loading: one TOML file (optional) plus the DISCORD_TOKEN environment variable.

The file is chosen by `pledgebot --config FILE`, else the PLEDGEBOT_CONFIG environment
variable, else none at all (built-in defaults). Every problem in the file is collected and
reported together, so an operator fixes them in one pass instead of one restart per typo.

This module deliberately does not import discord: it must load (and fail clearly) before any
Discord machinery starts.
"""

from __future__ import annotations

import os
import re
import tomllib
import zoneinfo
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote, unquote_plus, urlsplit

__all__ = [
    "CONFIG_ENV_VAR",
    "TOKEN_ENV_VAR",
    "Config",
    "ConfigError",
    "load_config",
    "location_name",
    "parse_database_url",
    "password_in_dsn",
    "redact_dsn",
]

CONFIG_ENV_VAR = "PLEDGEBOT_CONFIG"
TOKEN_ENV_VAR = "DISCORD_TOKEN"

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Config:
    """Validated settings. `Config()` is the built-in defaults (the single source of them)."""

    # The store: a SQLite file ([database] path, or url = "sqlite:///FILE"), unless
    # database_url names a PostgreSQL database ([database] url = "postgresql://...").
    database_path: Path = Path("data/pledgebot.db")  # [database] path
    database_url: str | None = None  # [database] url when postgresql://; never a password
    content_dir: Path = Path("data")  # [content] directory
    # Member answers kept per content state; 0 = answer every question afresh (benchmarks).
    answer_cache: int = 1024  # [content] answer_cache, 0..100000
    # Memory for keeping every pledge and power, so /pledge show and /power show need no
    # query (about 1 KiB a record); content that needs more, or 0, and they read the store.
    records_memory_mib: int = 16  # [content] records_memory_mib, 0..1024
    log_level: str = "INFO"  # [logging] level, stored upper-case
    default_timezone: str = "UTC"  # [schedules] default_timezone, an IANA name
    schedule_limit_per_guild: int = 25  # [schedules] per_guild_limit, 1..500
    catch_up_minutes: int = 30  # [schedules] catch_up_minutes, 0..1440
    # Posts are paced under Discord's global limit of 50 requests per second.
    global_rate_limit: float = 50.0  # [schedules] global_rate_per_second, >0 and <=50
    operator_ids: frozenset[int] = frozenset()  # [bot] operator_ids: may change global content
    dev_guild_id: int | None = None  # [bot] dev_guild_id: guild for fast command sync; 0 = none
    api_base_url: str | None = None  # [discord] api_base_url: local emulator / rate-limit proxy
    gateway_url: str | None = None  # [discord] gateway_url
    # Start-up: how many times to try reaching Discord before giving up; 0 = keep trying.
    connect_attempts: int = 0  # [discord] connect_attempts, 0..1000
    # Delivery rows older than this are pruned daily (each schedule's latest is kept); 0 = never.
    retention_days: int = 180  # [retention] deliveries_days, 0..36500
    # Where /metrics and /healthz are served, as (host, port); None = off (the default).
    metrics_listen: tuple[str, int] | None = None  # [metrics] listen, "HOST:PORT"
    # Secret: only ever from the environment, and kept out of repr()/str() and thus out of logs.
    token: str | None = field(default=None, repr=False)
    source: Path | None = None  # the file these settings came from; None = built-in defaults

    @property
    def database(self) -> Path | str:
        """Where the store lives, as `Store.open` takes it: a SQLite file's `Path`, or a
        PostgreSQL URL (a `str`)."""
        return self.database_url if self.database_url is not None else self.database_path

    @property
    def database_name(self) -> str:
        """The store's location for messages and logs (`location_name`)."""
        return location_name(self.database)


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists every reason, one per entry."""

    def __init__(self, problems: Sequence[str], path: Path | None = None) -> None:
        self.problems = list(problems)
        self.path = path
        where = f" from {path}" if path is not None else ""
        lines = [f"Cannot load the pledgebot configuration{where}:"]
        lines += [f"  - {problem}" for problem in self.problems]
        super().__init__("\n".join(lines))


class _Invalid(ValueError):
    """Raised by a parser; the message completes the sentence '<section.key>: ...'."""


_Parser = Callable[[object], object]


def _toml_type(value: object) -> str:
    """Name a parsed value's type the way the TOML file spells it."""
    match value:
        case bool():  # before int: in Python True is an int, in TOML it is not
            return "boolean"
        case int():
            return "integer"
        case float():
            return "float"
        case str():
            return "string"
        case list():
            return "array"
        case dict():
            return "table"
        case _:
            return "date/time"


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_toml_type(value)}")
    return value


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"expected an integer, got {_toml_type(value)}")
    return value


def _path(value: object) -> Path:
    """A non-empty path; relative ones are later anchored to the config file's directory."""
    text = _string(value)
    if not text.strip():
        raise _Invalid("must not be empty")
    return Path(text).expanduser()


def _choice(*options: str) -> _Parser:
    def parse(value: object) -> str:
        text = _string(value).upper()
        if text not in options:
            raise _Invalid(f"must be one of {', '.join(options)}, got {value!r}")
        return text

    return parse


def _timezone(value: object) -> str:
    name = _string(value)
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise _Invalid(
            f"unknown time zone {name!r} (use an IANA name such as 'UTC' or 'Europe/London')"
        ) from None
    return name


def _int_between(low: int, high: int) -> _Parser:
    def parse(value: object) -> int:
        number = _integer(value)
        if not low <= number <= high:
            raise _Invalid(f"must be between {low} and {high}, got {number}")
        return number

    return parse


def _rate(value: object) -> float:
    """Requests per second: above 0 and no more than Discord's global limit of 50."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"expected a number, got {_toml_type(value)}")
    if not 0 < value <= 50:  # also rejects nan and inf
        raise _Invalid(f"must be greater than 0 and at most 50, got {value}")
    return float(value)


def _discord_id(value: object) -> int:
    number = _integer(value)
    if number <= 0:
        raise _Invalid(f"must be a Discord id (a positive integer), got {number}")
    return number


def _ids(value: object) -> frozenset[int]:
    if not isinstance(value, list):
        raise _Invalid(f"expected an array of integers, got {_toml_type(value)}")
    ids = set()
    for index, item in enumerate(value):
        try:
            ids.add(_discord_id(item))
        except _Invalid as error:
            raise _Invalid(f"item {index}: {error}") from None
    return frozenset(ids)


def _optional_id(value: object) -> int | None:
    """0 means "none", so the example file can spell out the default."""
    return None if _integer(value) == 0 else _discord_id(value)


def _url(*schemes: str) -> _Parser:
    """A URL with one of `schemes` and a host; "" means not set, like an absent key."""
    expected = " or ".join(f"{scheme}://" for scheme in schemes)

    def parse(value: object) -> str | None:
        url = _string(value)
        if not url:
            return None
        try:
            parts = urlsplit(url)
            valid = parts.scheme.lower() in schemes and bool(parts.hostname)
        except ValueError:  # e.g. an unclosed "[" around an IPv6 address
            valid = False
        if not valid:
            raise _Invalid(f"must start with {expected} and name a host, got {url!r}")
        return url

    return parse


PG_SCHEMES = ("postgresql", "postgres")
PASSWORD_REFUSAL = (
    "a password is refused here: give it in the PGPASSWORD environment variable or a "
    ".pgpass file (https://www.postgresql.org/docs/current/libpq-pgpass.html), never in the URL"
)

_MASK = "***"
# libpq's parameters holding a secret; asyncpg reads both from a URL's query string.
_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})
# `key=value`, the key at the start or after `?`, `&`, `;`, `#` or a space.
_PARAMETER = re.compile(r"(?<![^?&;#\s])(?P<key>[^=?&;#\s]+)=(?P<value>[^&;#\s]*)")


def _secret_parameter(key: str) -> bool:
    """`password` in any case or percent-encoding: `PASSWORD`, `pass%77ord`, `pass%2577ord`."""
    while (decoded := unquote_plus(key)) != key:
        key = decoded
    return key.strip().lower() in _SECRET_PARAMETERS


def redact_dsn(dsn: str) -> str:
    """`dsn` fit for a log or an error message: every password in it masked.

    Greedy on purpose. A password holding an unencoded `@`, `/`, `?` or `#` confuses every
    URL parser (asyncpg splits at the first `@`, urllib at the last), so everything from
    the first `:` after `//` to the last `@` is masked: in a rare URL more than the
    password, never less. Then the value of every `password`/`sslpassword` parameter.
    """
    scheme, slashes, rest = dsn.partition("://")
    at = rest.rfind("@")
    colon = rest.find(":", 0, max(at, 0))
    if colon >= 0:
        rest = f"{rest[: colon + 1]}{_MASK}{rest[at:]}"

    def mask(match: re.Match[str]) -> str:
        return f"{match['key']}={_MASK}" if _secret_parameter(match["key"]) else match[0]

    return _PARAMETER.sub(mask, scheme + slashes + rest)


def location_name(where: Path | str) -> str:
    """A SQLite file's path, or a PostgreSQL URL with any password masked: for messages."""
    return str(where) if isinstance(where, Path) else redact_dsn(where)


def password_in_dsn(dsn: str) -> bool:
    """Whether `dsn` holds anything `redact_dsn` hides: a password in the user part (even an
    empty one), or a password parameter however spelt. Refusing exactly that means no
    setting needs what the logs leave out. (An `@` after a `:` port must be written %40.)"""
    return redact_dsn(dsn) != dsn


def parse_database_url(url: str) -> Path | str:
    """`sqlite:///FILE` -> the file's Path (`sqlite:////abs/file` for an absolute one, as
    SQLAlchemy spells it); `postgresql://user@host[:port]/db` -> the URL as it is.

    ValueError says what is wrong, including a password in a PostgreSQL URL.
    """
    scheme, sep, rest = url.partition(":")
    scheme = scheme.lower()
    shown = redact_dsn(url)  # an error message never repeats a password
    if sep and scheme == "sqlite":
        if not rest.startswith("///") or len(rest) == 3 or "?" in rest:
            raise ValueError(f'a SQLite URL is "sqlite:///FILE" (FILE relative), got {shown!r}')
        return Path(unquote(rest[3:])).expanduser()
    if sep and scheme in PG_SCHEMES and rest.startswith("//"):
        if password_in_dsn(url):
            raise ValueError(PASSWORD_REFUSAL)
        try:
            urlsplit(url).port  # noqa: B018 - raises on a port that is not a number
        except ValueError as error:
            raise ValueError(f"not a usable PostgreSQL URL ({error}): {url!r}") from None
        return url
    raise ValueError(
        f'must be "sqlite:///FILE" or "postgresql://USER@HOST/DATABASE", got {shown!r}'
    )


def _database_url(value: object) -> Path | str | None:
    """[database] url; "" means not set, like an absent key."""
    text = _string(value).strip()
    if not text:
        return None
    try:
        return parse_database_url(text)
    except ValueError as error:
        raise _Invalid(str(error)) from None


def _listen_address(value: object) -> tuple[str, int] | None:
    """An address as "HOST:PORT" ("[::1]:9108" for IPv6); "" means off; port 0, any free one."""
    text = _string(value).strip()
    if not text:
        return None
    host, colon, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise _Invalid(f'must be "HOST:PORT" such as "127.0.0.1:9108", got {value!r}')
    return host, int(port)


class _Setting(NamedTuple):
    attr: str  # the Config field it sets
    parse: _Parser  # validates the TOML value and converts it to the field's type


# The whole file format: section -> key -> setting. Defaults live on Config.
_SPEC: dict[str, dict[str, _Setting]] = {
    "database": {
        "url": _Setting("database_url", _database_url),
        "path": _Setting("database_path", _path),
    },
    "content": {
        "directory": _Setting("content_dir", _path),
        "answer_cache": _Setting("answer_cache", _int_between(0, 100_000)),
        "records_memory_mib": _Setting("records_memory_mib", _int_between(0, 1024)),
    },
    "logging": {"level": _Setting("log_level", _choice(*LOG_LEVELS))},
    "schedules": {
        "default_timezone": _Setting("default_timezone", _timezone),
        "per_guild_limit": _Setting("schedule_limit_per_guild", _int_between(1, 500)),
        "catch_up_minutes": _Setting("catch_up_minutes", _int_between(0, 1440)),
        "global_rate_per_second": _Setting("global_rate_limit", _rate),
    },
    "bot": {
        "operator_ids": _Setting("operator_ids", _ids),
        "dev_guild_id": _Setting("dev_guild_id", _optional_id),
    },
    "discord": {
        "api_base_url": _Setting("api_base_url", _url("http", "https")),
        "gateway_url": _Setting("gateway_url", _url("ws", "wss")),
        "connect_attempts": _Setting("connect_attempts", _int_between(0, 1000)),
    },
    "retention": {"deliveries_days": _Setting("retention_days", _int_between(0, 36500))},
    "metrics": {"listen": _Setting("metrics_listen", _listen_address)},
}

_TOKEN_KEYS = frozenset({"token", "discord_token"})
_TOKEN_REFUSAL = (
    f"a token is refused here: put the token in the {TOKEN_ENV_VAR} environment variable, "
    "never in a file (files get committed and shared)"
)


def _did_you_mean(name: str, section: str | None = None) -> str:
    """A hint for an unknown section (section=None) or an unknown key in `section`."""
    options = _SPEC if section is None else _SPEC[section]
    import difflib  # only for a suggestion: not loaded at start-up

    match = difflib.get_close_matches(name, list(options), n=1)
    if match and section is None:
        return f" (did you mean [{match[0]}]?)"
    if match:
        return f" (did you mean {section}.{match[0]}?)"
    # The right key in the wrong section, or written above every [section] header.
    homes = [f"{home}.{name}" for home, keys in _SPEC.items() if name in keys]
    return f" (did you mean {homes[0]}?)" if homes else ""


def _token_keys(table: Mapping[str, object], prefix: str = "") -> Iterator[str]:
    """Dotted names of every token-like key at any depth (their values are never echoed)."""
    for key, value in table.items():
        name = f"{prefix}{key}"
        if key.lower() in _TOKEN_KEYS:
            yield name
        if isinstance(value, dict):
            yield from _token_keys(value, f"{name}.")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    yield from _token_keys(item, f"{name}[{index}].")


def _read_toml(path: Path, named_by: str) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        problem = f"file not found (named by {named_by})"
    except OSError as error:
        problem = f"cannot read the file (named by {named_by}): {error.strerror or error}"
    except UnicodeDecodeError:
        problem = "not valid TOML: the file is not UTF-8 text"
    except tomllib.TOMLDecodeError as error:
        problem = f"not valid TOML: {error}"
    raise ConfigError([problem], path)


def _parse(document: Mapping[str, object], base: Path) -> tuple[dict[str, Any], list[str]]:
    """Validate a parsed TOML document against _SPEC; return (Config changes, problems)."""
    problems = [f"{name}: {_TOKEN_REFUSAL}" for name in _token_keys(document)]
    changes: dict[str, Any] = {}  # Config field -> value; each parser returns its field's type
    for section, table in document.items():
        if section.lower() in _TOKEN_KEYS:
            continue
        if section not in _SPEC:
            label = (
                f"[{section}]: unknown section"
                if isinstance(table, dict)
                else f"{section}: unknown key"
            )
            problems.append(label + _did_you_mean(section))
            continue
        if not isinstance(table, dict):
            problems.append(f"{section}: expected a table [{section}], got {_toml_type(table)}")
            continue
        for key, value in table.items():
            name = f"{section}.{key}"
            if key.lower() in _TOKEN_KEYS:
                continue
            if key not in _SPEC[section]:
                problems.append(f"{name}: unknown key{_did_you_mean(key, section)}")
                continue
            setting = _SPEC[section][key]
            try:
                parsed = setting.parse(value)
            except _Invalid as error:
                problems.append(f"{name}: {error}")
                continue
            changes[setting.attr] = base / parsed if isinstance(parsed, Path) else parsed
    if isinstance(url := changes.get("database_url"), Path):  # a SQLite file, as path is
        changes["database_url"] = None
        if "database_path" in changes:
            problems.append(_BOTH_DATABASE_KEYS)
        changes["database_path"] = url
    elif url is not None and "database_path" in changes:
        problems.append(_BOTH_DATABASE_KEYS)
    return changes, problems


_BOTH_DATABASE_KEYS = (
    "database.url and database.path: set one or the other, not both "
    '(path = "FILE" is the same as url = "sqlite:///FILE")'
)


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate the configuration, raising ConfigError listing every problem.

    `path` (from `--config`) wins over $PLEDGEBOT_CONFIG; with neither, the built-in defaults
    apply and no file is needed. Relative paths inside a file are relative to that file, so the
    bot behaves the same whatever directory it is started from.
    """
    env = os.environ if environ is None else environ
    named_by = "--config"
    if path is None and env.get(CONFIG_ENV_VAR, "").strip():
        path, named_by = Path(env[CONFIG_ENV_VAR]), CONFIG_ENV_VAR

    token = env.get(TOKEN_ENV_VAR, "").strip() or None
    if path is None:
        return Config(token=token)

    source = path.absolute()
    changes, problems = _parse(_read_toml(source, named_by), source.parent)
    if problems:
        raise ConfigError(problems, source)
    return replace(Config(), **changes, token=token, source=source)
