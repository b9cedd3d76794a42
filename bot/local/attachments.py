"""Uploaded files as Discord keeps them: names, media types, image sizes, signed CDN urls and
`attachment://` references.

What Discord does, and so what the emulator does (Discord's API reference, Uploading Files, and
its message resource; the behaviours below are from discord-api-docs issues where the docs are
silent):

- A file's name is cleansed like werkzeug's `secure_filename` (issue #7754): `hello (world).png`
  is stored as `hello_world.png`, a leading underscore is dropped (issue #4847); when the name
  changed, the original is kept as the attachment's `title`.
- An attachment's `url` is a signed CDN url (`?ex=…&is=…&hm=…&`); the CDN refuses an unsigned or
  expired one. The emulator serves the bytes at that url, on its own host.
- `attachment://NAME` in an embed's image, thumbnail, author or footer icon resolves to the
  uploaded file whose stored (cleansed) name is exactly NAME and which is an image (.png, .jpg,
  .jpeg, .gif, .webp). Discord refuses nothing when no such file was uploaded: it silently
  drops that image from the embed (issue #4847, "the embed image element is deleted") and the
  file, if any, shows as an ordinary attachment. The emulator does the same. A reference is
  matched against the cleansed name only, never cleansed itself: how far Discord now cleanses
  references is undocumented, and exact names always work.
- In components (IS_COMPONENTS_V2) an unresolved `attachment://` is refused: 400 with
  UNFURLED_MEDIA_ITEM_REFERENCED_ATTACHMENT_NOT_FOUND (issue #7754).
- A file referenced by an embed or a component is not listed in the message's `attachments`
  ("any attached files that are not referenced in embeds or components"; issue #7434 shows
  `"attachments": []` beside the resolved embed image).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import mimetypes
import re
import struct
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bot.local.limits import FieldError
from bot.local.models import JSON, StoredFile, World

SCHEME = "attachment://"
EMBED_IMAGE_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "gif", "webp"})
URL_LIFETIME_SECONDS = 24 * 60 * 60
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_EXTENSION = re.compile(r"(.*)\.([A-Za-z0-9]{1,10})", re.DOTALL)
_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
    b"\xff\xd8\xff": "image/jpeg",
}


@dataclass(frozen=True)
class Upload:
    """One `files[n]` part of a multipart request, before it becomes an attachment."""

    index: int
    filename: str
    data: bytes


def _cleansed(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    ascii_text = ascii_text.replace("/", " ").replace("\\", " ")
    return _UNSAFE.sub("", "_".join(ascii_text.split())).strip("._")


def secure_filename(name: str) -> str:
    """The name Discord stores for an uploaded `name` (werkzeug's `secure_filename` rules);
    a name with nothing left of it (all non-Latin, say) keeps its extension."""
    split = _EXTENSION.fullmatch(name)
    if split is None:
        return _cleansed(name) or "unknown"
    return f"{_cleansed(split[1]) or 'unknown'}.{split[2]}"


def media_type(filename: str, data: bytes) -> str | None:
    """What Discord reports as `content_type`: the bytes' image signature, else the extension."""
    for signature, kind in _SIGNATURES.items():
        if data.startswith(signature):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    if guessed is not None and guessed.startswith("text/"):
        return f"{guessed}; charset=utf-8"
    return guessed


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from a PNG's IHDR or a GIF's screen descriptor; None otherwise."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    return None


def file_from_upload(
    world: World, channel_id: int, upload: Upload, described: JSON, *, ephemeral: bool
) -> StoredFile:
    """An uploaded file under a new attachment id, described by its `attachments` entry (the
    caller keeps it in `world.files` once the message is accepted)."""
    given = described.get("filename")
    original = given if isinstance(given, str) and given else upload.filename
    filename = secure_filename(original)
    size = image_size(upload.data)
    description = described.get("description")
    stored = StoredFile(
        id=world.snowflakes.next(),
        channel_id=channel_id,
        filename=filename,
        data=upload.data,
        content_type=media_type(filename, upload.data),
        description=description if isinstance(description, str) else None,
        title=original if filename != original else None,
        width=size[0] if size else None,
        height=size[1] if size else None,
        ephemeral=ephemeral,
    )
    return stored


# -- the CDN ------------------------------------------------------------------------------


def cdn_path(stored: StoredFile) -> str:
    return f"/attachments/{stored.channel_id}/{stored.id}/{stored.filename}"


def _signature(world: World, path: str, expires: int, issued: int) -> str:
    message = f"{path}?ex={expires:x}&is={issued:x}".encode()
    return hmac.new(world.cdn_secret, message, hashlib.sha256).hexdigest()


def signed_urls(world: World, stored: StoredFile) -> tuple[str, str]:
    """(url, proxy_url) as Discord signs them; the proxy is the same host under /media."""
    path = cdn_path(stored)
    issued = int(time.time())
    expires = issued + URL_LIFETIME_SECONDS
    query = f"?ex={expires:x}&is={issued:x}&hm={_signature(world, path, expires, issued)}&"
    return f"{world.cdn_base}{path}{query}", f"{world.cdn_base}/media{path}{query}"


def signature_valid(world: World, path: str, query: dict[str, str]) -> bool:
    """Whether a CDN request carries this path's signature and has not expired."""
    try:
        expires, issued = int(query["ex"], 16), int(query["is"], 16)
    except (KeyError, ValueError):
        return False
    expected = _signature(world, path, expires, issued)
    return hmac.compare_digest(expected, query.get("hm", "")) and time.time() < expires


def attachment_payload(world: World, stored: StoredFile) -> JSON:
    """The attachment object Discord returns for a stored file."""
    url, proxy_url = signed_urls(world, stored)
    data: JSON = {
        "id": str(stored.id),
        "filename": stored.filename,
        "size": stored.size,
        "url": url,
        "proxy_url": proxy_url,
    }
    optional = {
        "title": stored.title,
        "description": stored.description,
        "content_type": stored.content_type,
        "width": stored.width,
        "height": stored.height,
        "ephemeral": stored.ephemeral or None,
    }
    data.update({k: v for k, v in optional.items() if v is not None})
    return data


# -- attachment:// references --------------------------------------------------------------


def _referenced(files: list[StoredFile], url: Any, *, images_only: bool) -> StoredFile | None:
    if not isinstance(url, str) or not url.startswith(SCHEME):
        return None
    name = url.removeprefix(SCHEME)
    for stored in files:
        extension = stored.filename.rsplit(".", 1)[-1].lower()
        if stored.filename == name and (not images_only or extension in EMBED_IMAGE_EXTENSIONS):
            return stored
    return None


def _media(world: World, stored: StoredFile) -> JSON:
    url, proxy_url = signed_urls(world, stored)
    media: JSON = {"url": url, "proxy_url": proxy_url}
    if stored.width is not None:
        media.update(width=stored.width, height=stored.height)
    if stored.content_type is not None:
        media["content_type"] = stored.content_type
    return media


def resolve_embeds(world: World, embeds: list[JSON], files: list[StoredFile]) -> list[JSON]:
    """Embeds with each `attachment://` resolved, or dropped as Discord drops it."""
    resolved: list[JSON] = []
    for embed in embeds:
        embed = dict(embed)
        for key in ("image", "thumbnail"):
            part = embed.get(key)
            if not isinstance(part, dict) or not str(part.get("url", "")).startswith(SCHEME):
                continue
            stored = _referenced(files, part.get("url"), images_only=True)
            if stored is None:
                del embed[key]
                continue
            embed[key] = _media(world, stored)
        for key in ("author", "footer"):
            part = embed.get(key)
            if not isinstance(part, dict) or not str(part.get("icon_url", "")).startswith(SCHEME):
                continue
            part = dict(part)
            stored = _referenced(files, part.get("icon_url"), images_only=True)
            if stored is None:
                del part["icon_url"]
            else:
                part["icon_url"], part["proxy_icon_url"] = signed_urls(world, stored)
            embed[key] = part
        resolved.append(embed)
    return resolved


MediaSlot = tuple[tuple[str | int, ...], JSON, str]


def _media_slots(components: list[Any], path: tuple[str | int, ...]) -> Iterator[MediaSlot]:
    """(path, holder, key) for every unfurled media item in v2 components: thumbnails (11), gallery
    items (12) and files (13)."""
    for index, component in enumerate(components):
        if not isinstance(component, dict):
            continue
        here = (*path, index)
        kind = component.get("type")
        if kind == 11 and isinstance(component.get("media"), dict):
            yield (*here, "media"), component, "media"
        elif kind == 12:
            for item_index, item in enumerate(component.get("items") or []):
                if isinstance(item, dict) and isinstance(item.get("media"), dict):
                    yield (*here, "items", item_index, "media"), item, "media"
        elif kind == 13 and isinstance(component.get("file"), dict):
            yield (*here, "file"), component, "file"
        yield from _media_slots(component.get("components") or [], (*here, "components"))
        accessory = component.get("accessory")
        if isinstance(accessory, dict):
            yield from _media_slots([accessory], (*here, "accessory"))


def resolve_components(
    world: World, components: list[Any], files: list[StoredFile]
) -> tuple[list[Any], list[FieldError]]:
    """Components with `attachment://` media resolved, and an error for each reference no
    uploaded file answers (Discord refuses those)."""
    if not any(
        str(holder[key].get("url", "")).startswith(SCHEME)
        for _, holder, key in _media_slots(components, ("components",))
    ):
        return components, []  # nothing to resolve: spare the copy on every message
    resolved = copy.deepcopy(components)
    errors: list[FieldError] = []
    for path, holder, key in _media_slots(resolved, ("components",)):
        media = holder[key]
        url = media.get("url")
        if not isinstance(url, str) or not url.startswith(SCHEME):
            continue
        stored = _referenced(files, url, images_only=key != "file")
        if stored is None:
            errors.append(
                FieldError(
                    (*path, "url"),
                    "UNFURLED_MEDIA_ITEM_REFERENCED_ATTACHMENT_NOT_FOUND",
                    f'The referenced attachment ("{url}") was not found',
                )
            )
            continue
        holder[key] = {**_media(world, stored), "attachment_id": str(stored.id)}
    return resolved, errors
