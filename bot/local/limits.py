"""Discord's documented limits, checked on everything the bot sends.

Real Discord answers an over-limit request with HTTP 400, code 50035 "Invalid Form Body" and an
`errors` tree naming the offending field; the emulator does the same so the bot fails locally
exactly as it would in production.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CONTENT_MAX = 2000
EMBEDS_MAX = 10
EMBED_TOTAL_MAX = 6000
ACTION_ROWS_MAX = 5
ROW_BUTTONS_MAX = 5
V2_COMPONENTS_MAX = 40
CUSTOM_ID_MAX = 100
LABEL_MAX = 80
NONCE_MAX = 25
ATTACHMENTS_MAX = 10
ATTACHMENT_DESCRIPTION_MAX = 1024
# Uploading Files: "The default limit is `20 MiB`", per file, for a server without boosts (the
# interaction payload's `attachment_size_limit` says the same); Create Message: "The maximum
# request size when sending a message is 25 MiB". Over either: 413, code 40005.
UPLOAD_LIMIT_BYTES = 20 * 1024 * 1024
REQUEST_LIMIT_BYTES = 25 * 1024 * 1024
CHOICES_MAX = 25
MODAL_TITLE_MAX = 45
MODAL_COMPONENTS_MAX = 5
OPTIONS_MAX = 25
COMMANDS_MAX = 100
CONTEXT_MENU_COMMANDS_MAX = 5
COMMAND_SIZE_MAX = 4000

FLAG_COMPONENTS_V2 = 1 << 15
CHAT_INPUT = 1
SUB_COMMAND = 1
SUB_COMMAND_GROUP = 2
STRING = 3
AUTOCOMPLETE_TYPES = frozenset({3, 4, 10})
# Application integration types (0 server install, 1 user install) and interaction context
# types (0 server, 1 the DM with the bot, 2 a DM or group DM between users).
INTEGRATION_TYPES = frozenset({0, 1})
CONTEXT_TYPES = frozenset({0, 1, 2})

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class FieldError:
    """One rejected field, addressed like Discord's `errors` tree (e.g. embeds.0.title)."""

    path: Path
    code: str
    message: str

    def __str__(self) -> str:
        where = ".".join(str(p) for p in self.path) or "<body>"
        return f"{where}: {self.message}"


def form_error_body(errors: Sequence[FieldError]) -> dict[str, Any]:
    """The 400 body Discord sends: `{"code": 50035, "errors": {...}, "message": ...}`."""
    tree: dict[str, Any] = {}
    for error in errors:
        node = tree
        for part in error.path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": error.code, "message": error.message})
    return {"code": 50035, "errors": tree, "message": "Invalid Form Body"}


def _max_length(path: Path, value: Any, limit: int) -> Iterator[FieldError]:
    if isinstance(value, str | list) and len(value) > limit:
        yield FieldError(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def _length_between(path: Path, value: Any, low: int, high: int) -> Iterator[FieldError]:
    if not isinstance(value, str) or not low <= len(value) <= high:
        yield FieldError(
            path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length."
        )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _embed_size(embed: Mapping[str, Any]) -> int:
    fields = embed.get("fields") or []
    return (
        len(_text(embed.get("title")))
        + len(_text(embed.get("description")))
        + len(_text((embed.get("footer") or {}).get("text")))
        + len(_text((embed.get("author") or {}).get("name")))
        + sum(len(_text(f.get("name"))) + len(_text(f.get("value"))) for f in fields)
    )


def _check_embed(path: Path, embed: Mapping[str, Any]) -> Iterator[FieldError]:
    yield from _max_length((*path, "title"), embed.get("title"), 256)
    yield from _max_length((*path, "description"), embed.get("description"), 4096)
    yield from _max_length((*path, "footer", "text"), (embed.get("footer") or {}).get("text"), 2048)
    yield from _max_length((*path, "author", "name"), (embed.get("author") or {}).get("name"), 256)
    fields = embed.get("fields") or []
    yield from _max_length((*path, "fields"), fields, 25)
    for index, item in enumerate(fields):
        yield from _length_between((*path, "fields", index, "name"), item.get("name"), 1, 256)
        yield from _length_between((*path, "fields", index, "value"), item.get("value"), 1, 1024)


def _check_component(
    path: Path, component: Mapping[str, Any], seen: set[str]
) -> Iterator[FieldError]:
    custom_id = component.get("custom_id")
    if custom_id is not None:
        yield from _length_between((*path, "custom_id"), custom_id, 1, CUSTOM_ID_MAX)
        if custom_id in seen:
            yield FieldError(
                (*path, "custom_id"),
                "COMPONENT_CUSTOM_ID_DUPLICATED",
                "Component custom id cannot be duplicated",
            )
        seen.add(custom_id)
    yield from _max_length((*path, "label"), component.get("label"), LABEL_MAX)
    if component.get("type") == 2:
        is_link = component.get("style") == 5
        if is_link == ("url" not in component) or (is_link and custom_id is not None):
            yield FieldError(
                path,
                "BUTTON_COMPONENT_INVALID",
                "Link buttons need a url and no custom_id; other buttons need a custom_id",
            )


def _walk_components(components: Sequence[Any], path: Path) -> Iterator[tuple[Path, Any]]:
    for index, component in enumerate(components):
        here = (*path, index)
        yield here, component
        yield from _walk_components(component.get("components") or [], (*here, "components"))
        accessory = component.get("accessory")
        if accessory is not None:
            yield (*here, "accessory"), accessory


def _check_components(components: Any, flags: int) -> Iterator[FieldError]:
    if not isinstance(components, list):
        return
    seen: set[str] = set()
    if flags & FLAG_COMPONENTS_V2:
        every = list(_walk_components(components, ("components",)))
        if len(every) > V2_COMPONENTS_MAX:
            yield FieldError(
                ("components",),
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {V2_COMPONENTS_MAX} or fewer in length.",
            )
        for path, component in every:
            yield from _check_component(path, component, seen)
        return
    yield from _max_length(("components",), components, ACTION_ROWS_MAX)
    for row_index, row in enumerate(components):
        row_path: Path = ("components", row_index)
        if row.get("type") != 1:
            yield FieldError(
                row_path, "UNION_TYPE_CHOICES", "Top-level components must be action rows"
            )
            continue
        children = row.get("components") or []
        if not 1 <= len(children) <= ROW_BUTTONS_MAX:
            yield FieldError(
                (*row_path, "components"),
                "BASE_TYPE_BAD_LENGTH",
                f"Must be between 1 and {ROW_BUTTONS_MAX} in length.",
            )
        if len(children) > 1 and any(c.get("type") != 2 for c in children):
            yield FieldError(
                (*row_path, "components"),
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                "A select menu must be alone in its action row",
            )
        for index, child in enumerate(children):
            yield from _check_component((*row_path, "components", index), child, seen)


def _check_allowed_mentions(allowed: Any) -> Iterator[FieldError]:
    if not isinstance(allowed, Mapping):
        return
    parse = allowed.get("parse") or []
    for kind in ("users", "roles"):
        ids = allowed.get(kind) or []
        yield from _max_length(("allowed_mentions", kind), ids, 100)
        if ids and kind in parse:
            yield FieldError(
                ("allowed_mentions", "parse"),
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.',
            )


def _check_attachments(attachments: Any, file_count: int) -> Iterator[FieldError]:
    """At most 10 files a message (however many `files[n]` parts came), each alt text (the
    `description`) at most 1024 characters."""
    listed = attachments if isinstance(attachments, list) else []
    if max(len(listed), file_count) > ATTACHMENTS_MAX:
        yield FieldError(
            ("attachments",),
            "BASE_TYPE_MAX_LENGTH",
            f"Must be {ATTACHMENTS_MAX} or fewer in length.",
        )
    for index, attachment in enumerate(listed):
        if isinstance(attachment, Mapping):
            yield from _max_length(
                ("attachments", index, "description"),
                attachment.get("description"),
                ATTACHMENT_DESCRIPTION_MAX,
            )


def check_message(payload: Mapping[str, Any], file_count: int = 0) -> list[FieldError]:
    """Every limit a message create or edit body (with `file_count` uploads) must respect."""
    errors: list[FieldError] = []
    errors += _max_length(("content",), payload.get("content"), CONTENT_MAX)
    nonce = payload.get("nonce")
    if nonce is not None:
        errors += _max_length(("nonce",), str(nonce), NONCE_MAX)
    embeds = payload.get("embeds") or []
    errors += _max_length(("embeds",), embeds, EMBEDS_MAX)
    for index, embed in enumerate(embeds):
        errors += _check_embed(("embeds", index), embed)
    if sum(_embed_size(e) for e in embeds) > EMBED_TOTAL_MAX:
        errors.append(
            FieldError(
                ("embeds",),
                "MAX_EMBED_SIZE_EXCEEDED",
                f"Embed size exceeds maximum size of {EMBED_TOTAL_MAX}",
            )
        )
    errors += _check_components(payload.get("components"), int(payload.get("flags") or 0))
    errors += _check_allowed_mentions(payload.get("allowed_mentions"))
    errors += _check_attachments(payload.get("attachments"), file_count)
    return errors


def is_empty_message(payload: Mapping[str, Any], file_count: int) -> bool:
    """Discord refuses (code 50006) a new message with nothing to show."""
    content = payload.get("content")
    return not (
        (isinstance(content, str) and content.strip())
        or payload.get("embeds")
        or payload.get("components")
        or payload.get("sticker_ids")
        or payload.get("poll")
        or file_count
    )


def check_choices(choices: Any) -> list[FieldError]:
    """Limits on an autocomplete (callback type 8) answer."""
    path: Path = ("data", "choices")
    if not isinstance(choices, list):
        return [FieldError(path, "BASE_TYPE_REQUIRED", "This field is required")]
    errors = list(_max_length(path, choices, CHOICES_MAX))
    for index, choice in enumerate(choices):
        errors += _length_between((*path, index, "name"), choice.get("name"), 1, 100)
        errors += _max_length((*path, index, "value"), choice.get("value"), 100)
    return errors


def check_modal(data: Mapping[str, Any]) -> list[FieldError]:
    """Limits on a modal (callback type 9)."""
    errors = list(_length_between(("data", "custom_id"), data.get("custom_id"), 1, CUSTOM_ID_MAX))
    errors += _length_between(("data", "title"), data.get("title"), 1, MODAL_TITLE_MAX)
    components = data.get("components")
    if not isinstance(components, list) or not 1 <= len(components) <= MODAL_COMPONENTS_MAX:
        errors.append(
            FieldError(
                ("data", "components"),
                "BASE_TYPE_BAD_LENGTH",
                f"Must be between 1 and {MODAL_COMPONENTS_MAX} in length.",
            )
        )
    return errors


def _valid_name(name: Any) -> bool:
    """Discord's `^[-_\\p{L}\\p{N}]{1,32}$`, lowercase where a lowercase form exists."""
    return (
        isinstance(name, str)
        and 1 <= len(name) <= 32
        and name == name.lower()
        and all(c in "-_" or unicodedata.category(c)[0] in "LN" for c in name)
    )


def _command_size(node: Mapping[str, Any]) -> int:
    size = len(_text(node.get("name"))) + len(_text(node.get("description")))
    for choice in node.get("choices") or []:
        size += len(_text(choice.get("name"))) + len(str(choice.get("value", "")))
    return size + sum(_command_size(o) for o in node.get("options") or [])


def _check_options(path: Path, options: Any, depth: int) -> Iterator[FieldError]:
    """Options of a command (depth 0), of a group (1) or of a subcommand (2)."""
    if not isinstance(options, list):
        return
    yield from _max_length(path, options, OPTIONS_MAX)
    kinds = [o.get("type") for o in options]
    nested = [k in (SUB_COMMAND, SUB_COMMAND_GROUP) for k in kinds]
    if any(nested) and not all(nested):
        yield FieldError(
            path,
            "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
            "Sub-command and sub-command group option types are mutually exclusive "
            "to all other types",
        )
    names = [o.get("name") for o in options]
    if len(set(names)) != len(names):
        yield FieldError(
            path, "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Option names must be unique"
        )
    seen_optional = False
    for index, option in enumerate(options):
        here = (*path, index)
        kind = option.get("type")
        if not _valid_name(option.get("name")):
            yield FieldError(
                (*here, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
            )
        yield from _length_between((*here, "description"), option.get("description"), 1, 100)
        allowed_here = {
            0: True,
            1: kind == SUB_COMMAND,
            2: kind not in (SUB_COMMAND, SUB_COMMAND_GROUP),
        }
        if not allowed_here[depth]:
            yield FieldError(
                (*here, "type"),
                "APPLICATION_COMMAND_OPTION_TYPE_INVALID",
                "Sub-commands can only be nested one group deep",
            )
        if kind in (SUB_COMMAND, SUB_COMMAND_GROUP):
            next_depth = 1 if kind == SUB_COMMAND_GROUP else 2
            yield from _check_options((*here, "options"), option.get("options") or [], next_depth)
            continue
        if option.get("required"):
            if seen_optional:
                yield FieldError(
                    (*here, "required"),
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            seen_optional = True
        choices = option.get("choices") or []
        yield from _max_length((*here, "choices"), choices, CHOICES_MAX)
        for c_index, choice in enumerate(choices):
            yield from _length_between(
                (*here, "choices", c_index, "name"), choice.get("name"), 1, 100
            )
            if kind == STRING:
                yield from _max_length(
                    (*here, "choices", c_index, "value"), choice.get("value"), 100
                )
        if option.get("autocomplete") and (choices or kind not in AUTOCOMPLETE_TYPES):
            yield FieldError(
                (*here, "autocomplete"),
                "APPLICATION_COMMAND_AUTOCOMPLETE_INVALID",
                "Autocomplete needs a string, integer or number option without choices",
            )


def _check_enum_list(
    path: Path, values: Any, allowed: frozenset[int], *, nullable: bool
) -> Iterator[FieldError]:
    """`integration_types` / `contexts`: a list of known enum values (`contexts` may be null)."""
    if values is None and nullable:
        return
    if not isinstance(values, list):
        yield FieldError(path, "BASE_TYPE_LIST", "Must be a list.")
        return
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
            yield FieldError(
                (*path, index), "ENUM_TYPE_COERCE", f'Value "{value}" is not a valid enum value.'
            )


def check_commands(commands: Any) -> list[FieldError]:
    """Everything Discord validates on a bulk overwrite (PUT) of application commands."""
    if not isinstance(commands, list):
        return [FieldError((), "BASE_TYPE_REQUIRED", "Expected an array of commands")]
    errors: list[FieldError] = []
    per_type: dict[int, int] = {}
    seen: set[tuple[int, str]] = set()
    for index, command in enumerate(commands):
        kind = int(command.get("type") or CHAT_INPUT)
        name = command.get("name")
        per_type[kind] = per_type.get(kind, 0) + 1
        if kind == CHAT_INPUT:
            if not _valid_name(name):
                errors.append(
                    FieldError(
                        (index, "name"),
                        "APPLICATION_COMMAND_INVALID_NAME",
                        "Command name is invalid",
                    )
                )
            errors += _length_between((index, "description"), command.get("description"), 1, 100)
            errors += _check_options((index, "options"), command.get("options") or [], 0)
        else:
            errors += _length_between((index, "name"), name, 1, 32)
            if command.get("description"):
                errors.append(
                    FieldError(
                        (index, "description"),
                        "BASE_TYPE_MAX_LENGTH",
                        "Context menu commands cannot have a description",
                    )
                )
        if (kind, str(name)) in seen:
            errors.append(
                FieldError(
                    (index, "name"),
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    "Application command names must be unique",
                )
            )
        seen.add((kind, str(name)))
        if "integration_types" in command:
            errors += _check_enum_list(
                (index, "integration_types"),
                command["integration_types"],
                INTEGRATION_TYPES,
                nullable=True,
            )
        if "contexts" in command:
            errors += _check_enum_list(
                (index, "contexts"), command["contexts"], CONTEXT_TYPES, nullable=True
            )
        if _command_size(command) > COMMAND_SIZE_MAX:
            errors.append(
                FieldError(
                    (index,),
                    "APPLICATION_COMMAND_TOO_LARGE",
                    f"Command exceeds maximum size ({COMMAND_SIZE_MAX})",
                )
            )
    for kind, count in per_type.items():
        limit = COMMANDS_MAX if kind == CHAT_INPUT else CONTEXT_MENU_COMMANDS_MAX
        if count > limit:
            errors.append(
                FieldError(
                    (),
                    "APPLICATION_COMMANDS_MAX_EXCEEDED",
                    f"Maximum number of type {kind} commands reached ({limit})",
                )
            )
    return errors
