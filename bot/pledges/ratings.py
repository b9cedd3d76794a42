"""The rating method: who may rate a pledge's status, and what a rating needs.

Operators rate (the CLI, or `/operator status` for ids in `[bot] operator_ids`); any
status other than not-yet-rated needs a link to public evidence, and every change is
kept in the pledge's append-only history. Both entry points ask `rating_problem`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from bot.models import DEFAULT_STATUS

WEB_SCHEMES = ("http", "https")


def link_problem(text: str) -> str | None:
    """Why `text` is not a web link a reader can open (http or https), or None."""
    if any(c.isspace() for c in text):
        return "a link cannot contain spaces"
    try:
        parts = urlsplit(text)
    except ValueError:
        return "it is not a web address"
    if parts.scheme.lower() not in WEB_SCHEMES:
        return "only http:// and https:// links are accepted"
    if not parts.hostname:
        return "the link names no web site"
    return None


def rating_problem(status: str, evidence: str) -> str | None:
    """Why this rating cannot be recorded, in words for the operator; None if it can."""
    if not evidence:
        if status == DEFAULT_STATUS:
            return None
        return (
            f"a status other than {DEFAULT_STATUS} needs an evidence link "
            "(a web address starting with http:// or https://)"
        )
    problem = link_problem(evidence)
    return None if problem is None else f"the evidence link was refused: {problem}"
