"""Tests for bot.config: choosing the file, defaults, validation and keeping the token secret."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bot.config import _SPEC, Config, ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.toml"
SECRET = "MTIzNDU2Nzg5MDEy.secret.token-value"


def write(directory: Path, text: str, name: str = "config.toml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems_for(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})
    return caught.value.problems


# --- choosing the file --------------------------------------------------------------------


def test_hosting_defaults() -> None:
    """Keep trying to reach Discord, keep 180 days of deliveries, no metrics server."""
    config = Config()
    assert (config.connect_attempts, config.retention_days, config.metrics_listen) == (0, 180, None)


def test_defaults_without_a_file() -> None:
    config = load_config(environ={})
    assert config == Config()
    assert config.source is None
    assert config.token is None
    assert (config.database_path, config.content_dir) == (Path("data/pledgebot.db"), Path("data"))
    assert (config.log_level, config.default_timezone) == ("INFO", "UTC")
    assert (config.schedule_limit_per_guild, config.catch_up_minutes) == (25, 30)
    assert config.global_rate_limit == 50.0
    assert config.operator_ids == frozenset()
    assert config.dev_guild_id is None
    assert config.api_base_url is None and config.gateway_url is None


def test_default_paths_stay_relative_to_the_working_directory() -> None:
    config = load_config(environ={})
    assert not config.database_path.is_absolute()
    assert not config.content_dir.is_absolute()


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_config_env_var_means_no_file(value: str) -> None:
    assert load_config(environ={"PLEDGEBOT_CONFIG": value}) == Config()


def test_config_env_var_chooses_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[logging]\nlevel = "debug"\n')
    config = load_config(environ={"PLEDGEBOT_CONFIG": str(path)})
    assert config.log_level == "DEBUG"
    assert config.source == path


def test_explicit_path_wins_over_the_env_var(tmp_path: Path) -> None:
    chosen = write(tmp_path, "[schedules]\nper_guild_limit = 7\n", "chosen.toml")
    ignored = write(tmp_path, "[schedules]\nper_guild_limit = 9\n", "ignored.toml")
    config = load_config(chosen, environ={"PLEDGEBOT_CONFIG": str(ignored)})
    assert config.schedule_limit_per_guild == 7
    assert config.source == chosen


def test_environ_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[schedules]\ncatch_up_minutes = 5\n")
    monkeypatch.setenv("PLEDGEBOT_CONFIG", str(path))
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    config = load_config()
    assert (config.catch_up_minutes, config.token) == (5, SECRET)


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert load_config(path, environ={}) == dataclasses.replace(Config(), source=path)


# --- the example file -----------------------------------------------------------------------


def test_example_file_parses_to_the_defaults() -> None:
    config = load_config(EXAMPLE, environ={})
    assert config == dataclasses.replace(Config(), source=EXAMPLE)


@pytest.mark.parametrize("alternative", ["url", "path"])
def test_example_file_documents_every_key_with_its_default(
    tmp_path: Path, alternative: str
) -> None:
    """Uncommenting every `# key = value` line must still give the defaults.

    [database] url and path are two spellings of one setting (setting both is refused),
    so each is uncommented in turn, with every other key.
    """
    example = EXAMPLE.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^# (\w+ = )", r"\1", example)
    documented = {(s, k) for s, table in tomllib.loads(text).items() for k in table}
    assert documented == {(s, k) for s, table in _SPEC.items() for k in table}

    other = {"url": "path", "path": "url"}[alternative]
    text = re.sub(rf"(?m)^# (?!{other} = )(\w+ = )", r"\1", example)
    config = load_config(write(tmp_path, text), environ={})
    defaults = Config()
    assert config == dataclasses.replace(
        defaults,
        database_path=tmp_path / defaults.database_path,
        content_dir=tmp_path / defaults.content_dir,
        source=tmp_path / "config.toml",
    )


def test_example_file_with_both_database_keys_is_refused(tmp_path: Path) -> None:
    text = re.sub(r"(?m)^# (\w+ = )", r"\1", EXAMPLE.read_text(encoding="utf-8"))
    problems = problems_for(tmp_path, text)
    assert len(problems) == 1
    assert problems[0].startswith("database.url and database.path: set one or the other")


def test_spec_sets_every_config_field_exactly_once() -> None:
    attrs = [setting.attr for table in _SPEC.values() for setting in table.values()]
    fields = {f.name for f in dataclasses.fields(Config)} - {"token", "source"}
    assert sorted(attrs) == sorted(fields)


# --- valid values -------------------------------------------------------------------------


def test_every_key_set(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [database]
        path = "/var/lib/pledgebot/bot.db"
        [content]
        directory = "content"
        [logging]
        level = "warning"
        [schedules]
        default_timezone = "Europe/London"
        per_guild_limit = 100
        catch_up_minutes = 0
        global_rate_per_second = 5
        [bot]
        operator_ids = [111, 222, 111]
        dev_guild_id = 333
        [discord]
        api_base_url = "http://127.0.0.1:8080/api/v10"
        gateway_url = "wss://gateway.example"
        """,
    )
    assert load_config(path, environ={}) == Config(
        database_path=Path("/var/lib/pledgebot/bot.db"),
        content_dir=tmp_path / "content",
        log_level="WARNING",
        default_timezone="Europe/London",
        schedule_limit_per_guild=100,
        catch_up_minutes=0,
        global_rate_limit=5.0,
        operator_ids=frozenset({111, 222}),
        dev_guild_id=333,
        api_base_url="http://127.0.0.1:8080/api/v10",
        gateway_url="wss://gateway.example",
        source=path,
    )


@pytest.mark.parametrize(
    ("section", "key", "toml_value", "attr", "expected"),
    [
        ("logging", "level", '"Critical"', "log_level", "CRITICAL"),
        ("schedules", "per_guild_limit", "1", "schedule_limit_per_guild", 1),
        ("schedules", "per_guild_limit", "500", "schedule_limit_per_guild", 500),
        ("schedules", "catch_up_minutes", "1440", "catch_up_minutes", 1440),
        ("schedules", "global_rate_per_second", "0.5", "global_rate_limit", 0.5),
        ("schedules", "global_rate_per_second", "50.0", "global_rate_limit", 50.0),
        ("bot", "dev_guild_id", "0", "dev_guild_id", None),
        ("bot", "operator_ids", "[]", "operator_ids", frozenset()),
        ("discord", "api_base_url", '""', "api_base_url", None),
        ("discord", "api_base_url", '"HTTPS://proxy:3000"', "api_base_url", "HTTPS://proxy:3000"),
        ("discord", "gateway_url", '"ws://[::1]:8080"', "gateway_url", "ws://[::1]:8080"),
        ("discord", "connect_attempts", "0", "connect_attempts", 0),
        ("discord", "connect_attempts", "1000", "connect_attempts", 1000),
        ("content", "answer_cache", "0", "answer_cache", 0),
        ("content", "answer_cache", "100000", "answer_cache", 100_000),
        ("retention", "deliveries_days", "0", "retention_days", 0),
        ("retention", "deliveries_days", "36500", "retention_days", 36500),
        ("metrics", "listen", '""', "metrics_listen", None),
        ("metrics", "listen", '"127.0.0.1:9108"', "metrics_listen", ("127.0.0.1", 9108)),
        ("metrics", "listen", '"[::1]:0"', "metrics_listen", ("::1", 0)),
        ("metrics", "listen", '"0.0.0.0:65535"', "metrics_listen", ("0.0.0.0", 65535)),
    ],
)
def test_boundary_and_special_values(
    tmp_path: Path, section: str, key: str, toml_value: str, attr: str, expected: object
) -> None:
    config = load_config(write(tmp_path, f"[{section}]\n{key} = {toml_value}\n"), environ={})
    assert getattr(config, attr) == expected


def test_relative_paths_are_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "etc", '[database]\npath = "db/bot.db"\n[content]\ndirectory = "../c"\n')
    monkeypatch.chdir(tmp_path / "etc")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = load_config(Path("config.toml"), environ={})  # a relative --config
    monkeypatch.chdir(elsewhere)  # later working-directory changes must not matter
    assert config.source == tmp_path / "etc" / "config.toml"
    assert config.database_path == tmp_path / "etc" / "db" / "bot.db"
    assert config.content_dir == tmp_path / "etc" / ".." / "c"
    assert config.database_path.is_absolute()


def test_home_directory_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = load_config(write(tmp_path, '[database]\npath = "~/bot.db"\n'), environ={})
    assert config.database_path == tmp_path / "home" / "bot.db"


# --- the token ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(SECRET, SECRET), (f"  {SECRET}\n", SECRET), ("", None), ("  \n", None)],
)
def test_token_comes_from_the_environment(value: str, expected: str | None) -> None:
    assert load_config(environ={"DISCORD_TOKEN": value}).token == expected


def test_token_also_read_alongside_a_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), environ={"DISCORD_TOKEN": SECRET})
    assert config.token == SECRET


def test_token_never_in_repr_or_str() -> None:
    config = load_config(environ={"DISCORD_TOKEN": SECRET})
    assert SECRET not in repr(config)
    assert SECRET not in str(config)
    assert SECRET not in f"{config!r} {config}"
    assert "log_level='INFO'" in repr(config)  # repr is still useful


@pytest.mark.parametrize(
    ("text", "name"),
    [
        (f'token = "{SECRET}"\n', "token"),
        (f'discord_token = "{SECRET}"\n', "discord_token"),
        (f'[discord]\ntoken = "{SECRET}"\n', "discord.token"),
        (f'[bot]\nDISCORD_TOKEN = "{SECRET}"\n', "bot.DISCORD_TOKEN"),
        (f'[token]\nvalue = "{SECRET}"\n', "token"),
        (f'[discord.auth]\ntoken = "{SECRET}"\n', "discord.auth.token"),
    ],
)
def test_token_in_the_file_is_refused(tmp_path: Path, text: str, name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={"DISCORD_TOKEN": "from-env"})
    refusal = [p for p in caught.value.problems if p.startswith(f"{name}: ")]
    assert len(refusal) == 1
    assert "DISCORD_TOKEN environment variable" in refusal[0]
    assert "never in a file (files get committed and shared)" in refusal[0]
    assert SECRET not in str(caught.value)


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("via_env", [False, True], ids=["--config", "PLEDGEBOT_CONFIG"])
def test_missing_file(tmp_path: Path, via_env: bool) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        if via_env:
            load_config(environ={"PLEDGEBOT_CONFIG": str(missing)})
        else:
            load_config(missing, environ={})
    named_by = "PLEDGEBOT_CONFIG" if via_env else "--config"
    assert caught.value.problems == [f"file not found (named by {named_by})"]
    assert caught.value.path == missing
    assert str(missing) in str(caught.value)


def test_directory_instead_of_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, environ={})
    assert caught.value.problems[0].startswith("cannot read the file (named by --config)")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b'[database]\npath = "a.db"\nlevel =\n',
            "not valid TOML: Invalid value (at line 3, column",
        ),
        (b"[database\n", "not valid TOML: "),
        (b'[logging]\nlevel = "INFO"\n[logging]\n', "not valid TOML: "),
        (b'[logging]\nlevel = "\xff"\n', "not valid TOML: the file is not UTF-8 text"),
    ],
    ids=["bad-value", "unclosed-header", "duplicate-section", "not-utf8"],
)
def test_invalid_toml(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    [problem] = caught.value.problems
    assert problem.startswith(expected)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[datbase]\n", "[datbase]: unknown section (did you mean [database]?)"),
        ("[frobnicate]\n", "[frobnicate]: unknown section"),
        ('[database]\npth = "x"\n', "database.pth: unknown key (did you mean database.path?)"),
        (
            "[schedules]\nper_guild_limt = 3\n",
            "schedules.per_guild_limt: unknown key (did you mean schedules.per_guild_limit?)",
        ),
        ("[bot]\nwhatever = 1\n", "bot.whatever: unknown key"),
        (
            '[bot]\ndefault_timezone = "UTC"\n',
            "bot.default_timezone: unknown key (did you mean schedules.default_timezone?)",
        ),
        ('level = "INFO"\n', "level: unknown key (did you mean logging.level?)"),
        ('database = "x.db"\n', "database: expected a table [database], got string"),
    ],
)
def test_unknown_or_misplaced(tmp_path: Path, text: str, problem: str) -> None:
    assert problems_for(tmp_path, text) == [problem]


@pytest.mark.parametrize(
    ("name", "toml_value", "problem"),
    [
        # wrong types, one or more per kind of setting
        ("database.path", "1", "expected a string, got integer"),
        ("database.path", "2024-01-01", "expected a string, got date/time"),
        ("content.directory", '["a"]', "expected a string, got array"),
        ("logging.level", "10", "expected a string, got integer"),
        ("schedules.default_timezone", "0", "expected a string, got integer"),
        ("schedules.per_guild_limit", '"25"', "expected an integer, got string"),
        ("schedules.per_guild_limit", "25.0", "expected an integer, got float"),
        ("schedules.global_rate_per_second", '"fast"', "expected a number, got string"),
        ("bot.operator_ids", "123", "expected an array of integers, got integer"),
        ("bot.operator_ids", '[1, "2"]', "item 1: expected an integer, got string"),
        ("bot.dev_guild_id", '"123"', "expected an integer, got string"),
        ("discord.api_base_url", "8080", "expected a string, got integer"),
        ("discord.gateway_url", "{}", "expected a string, got table"),
        # booleans are not integers (nor numbers), whatever Python thinks
        ("schedules.catch_up_minutes", "true", "expected an integer, got boolean"),
        ("schedules.per_guild_limit", "false", "expected an integer, got boolean"),
        ("schedules.global_rate_per_second", "true", "expected a number, got boolean"),
        ("bot.dev_guild_id", "false", "expected an integer, got boolean"),
        ("bot.operator_ids", "[true]", "item 0: expected an integer, got boolean"),
        # out of range
        ("schedules.per_guild_limit", "0", "must be between 1 and 500, got 0"),
        ("schedules.per_guild_limit", "501", "must be between 1 and 500, got 501"),
        ("schedules.catch_up_minutes", "-1", "must be between 0 and 1440, got -1"),
        ("content.answer_cache", "-1", "must be between 0 and 100000, got -1"),
        ("schedules.catch_up_minutes", "1441", "must be between 0 and 1440, got 1441"),
        ("schedules.global_rate_per_second", "0", "must be greater than 0 and at most 50, got 0"),
        ("schedules.global_rate_per_second", "-1.5", "must be greater than 0 and at most 50"),
        ("schedules.global_rate_per_second", "50.5", "must be greater than 0 and at most 50"),
        ("schedules.global_rate_per_second", "nan", "must be greater than 0 and at most 50"),
        ("schedules.global_rate_per_second", "inf", "must be greater than 0 and at most 50"),
        ("bot.dev_guild_id", "-5", "must be a Discord id (a positive integer), got -5"),
        ("bot.operator_ids", "[1, 0]", "item 1: must be a Discord id (a positive integer), got 0"),
        ("logging.level", '"verbose"', "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("database.path", '""', "must not be empty"),
        ("content.directory", '"  "', "must not be empty"),
        # time zones
        ("schedules.default_timezone", '"Mars/Olympus_Mons"', "unknown time zone 'Mars/Olympus"),
        ("schedules.default_timezone", '""', "unknown time zone ''"),
        ("schedules.default_timezone", '"Europe"', "unknown time zone"),
        ("schedules.default_timezone", '"Europe/London/"', "unknown time zone"),
        ("schedules.default_timezone", '"../../etc/passwd"', "unknown time zone"),
        ("schedules.default_timezone", '"/etc/localtime"', "unknown time zone"),
        ("schedules.default_timezone", '"+01:00"', "unknown time zone"),
        # URLs
        ("discord.api_base_url", '"ftp://example.com"', "must start with http:// or https://"),
        ("discord.api_base_url", '"localhost:8080"', "must start with http:// or https://"),
        ("discord.api_base_url", '"http://"', "must start with http:// or https://"),
        ("discord.api_base_url", '"http://[::1"', "must start with http:// or https://"),
        ("discord.api_base_url", '"ws://example.com"', "must start with http:// or https://"),
        ("discord.gateway_url", '"https://example.com"', "must start with ws:// or wss://"),
        ("discord.gateway_url", '"wss:/example.com"', "must start with ws:// or wss://"),
        # start-up, retention, metrics
        ("discord.connect_attempts", "-1", "must be between 0 and 1000"),
        ("discord.connect_attempts", '"3"', "expected an integer, got string"),
        ("retention.deliveries_days", "-5", "must be between 0 and 36500"),
        ("retention.deliveries_days", "1.5", "expected an integer, got float"),
        ("metrics.listen", '"9108"', 'must be "HOST:PORT"'),
        ("metrics.listen", '":9108"', 'must be "HOST:PORT"'),
        ("metrics.listen", '"localhost:http"', 'must be "HOST:PORT"'),
        ("metrics.listen", '"localhost:70000"', 'must be "HOST:PORT"'),
        ("metrics.listen", "9108", "expected a string, got integer"),
    ],
)
def test_invalid_value(tmp_path: Path, name: str, toml_value: str, problem: str) -> None:
    section, key = name.split(".")
    [reported] = problems_for(tmp_path, f"[{section}]\n{key} = {toml_value}\n")
    assert reported.startswith(f"{name}: {problem}")


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [logging]
        level = "loud"
        [schedules]
        default_timezone = "Nowhere/Special"
        per_guild_limit = true
        [discord]
        api_base_url = "ftp://x"
        tokn = "x"
        [extras]
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    error = caught.value
    assert [p.split(":")[0] for p in error.problems] == [
        "logging.level",
        "schedules.default_timezone",
        "schedules.per_guild_limit",
        "discord.api_base_url",
        "discord.tokn",
        "[extras]",
    ]
    lines = str(error).splitlines()
    assert lines[0] == f"Cannot load the pledgebot configuration from {path}:"
    assert lines[1:] == [f"  - {p}" for p in error.problems]


def test_config_error_without_a_path() -> None:
    error = ConfigError(["one", "two"])
    assert error.path is None
    assert str(error) == "Cannot load the pledgebot configuration:\n  - one\n  - two"


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().log_level = "DEBUG"  # type: ignore[misc]


def test_module_does_not_import_discord() -> None:
    code = "import sys, bot.config; sys.exit('discord' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False).returncode == 0


# --- [database] url ---------------------------------------------------------------------


def test_the_default_store_is_the_sqlite_file() -> None:
    config = Config()
    assert config.database_url is None
    assert config.database == Path("data/pledgebot.db")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///data/pledgebot.db", "data/pledgebot.db"),  # relative to the file
        ("sqlite:///db/bot%20one.db", "db/bot one.db"),
        ("SQLite:///bot.db", "bot.db"),
    ],
)
def test_a_sqlite_url_names_the_file_relative_to_the_config(
    tmp_path: Path, url: str, expected: str
) -> None:
    config = load_config(write(tmp_path, f'[database]\nurl = "{url}"\n'), environ={})
    assert config.database_path == tmp_path / expected
    assert config.database_url is None
    assert config.database == tmp_path / expected


def test_an_absolute_sqlite_url(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, '[database]\nurl = "sqlite:////srv/pledgebot/bot.db"\n'), environ={}
    )
    assert config.database == Path("/srv/pledgebot/bot.db")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://pledgebot@db.internal/pledgebot",
        "postgresql://pledgebot@10.0.0.5:5433/pledgebot?sslmode=require",
        "postgres://pledgebot@localhost/pledgebot",
        "postgresql:///pledgebot",  # the local server's socket, as libpq reads it
    ],
)
def test_a_postgresql_url_selects_postgresql(tmp_path: Path, url: str) -> None:
    config = load_config(write(tmp_path, f'[database]\nurl = "{url}"\n'), environ={})
    assert config.database_url == url
    assert config.database == url
    assert config.database_path == Config().database_path  # unused, left at its default


def test_an_empty_url_is_not_set(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[database]\nurl = ""\npath = "x.db"\n'), environ={})
    assert config.database == tmp_path / "x.db"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://pledgebot:hunter2@db.internal/pledgebot",
        "postgresql://db.internal/pledgebot?user=pledgebot&password=hunter2",
    ],
)
def test_a_password_in_the_url_is_refused(tmp_path: Path, url: str) -> None:
    problems = problems_for(tmp_path, f'[database]\nurl = "{url}"\n')
    assert len(problems) == 1
    assert problems[0].startswith("database.url: a password is refused here")
    assert "PGPASSWORD" in problems[0] and ".pgpass" in problems[0]
    assert "hunter2" not in problems[0]


@pytest.mark.parametrize(
    "url",
    [
        '"postgresql://pledgebot@db/pb"',
        '"sqlite:///bot.db"',
    ],
)
def test_url_and_path_together_are_refused(tmp_path: Path, url: str) -> None:
    problems = problems_for(tmp_path, f'[database]\nurl = {url}\npath = "bot.db"\n')
    assert problems == [
        "database.url and database.path: set one or the other, not both "
        '(path = "FILE" is the same as url = "sqlite:///FILE")'
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", 'must be "sqlite:///FILE" or "postgresql://USER@HOST/DATABASE"'),
        ("data/pledgebot.db", 'must be "sqlite:///FILE" or'),
        ("sqlite://bot.db", 'a SQLite URL is "sqlite:///FILE"'),
        ("sqlite:///", 'a SQLite URL is "sqlite:///FILE"'),
        ("postgresql://u@h:port/db", "not a usable PostgreSQL URL"),
    ],
)
def test_a_bad_url_is_refused(tmp_path: Path, url: str, message: str) -> None:
    problems = problems_for(tmp_path, f'[database]\nurl = "{url}"\n')
    assert len(problems) == 1
    assert problems[0].startswith("database.url: ")
    assert message in problems[0]
