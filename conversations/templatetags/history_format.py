"""Formatting for the history pages and the admin: durations, money, search excerpts."""

import re
from datetime import timedelta

from django import template
from django.utils.html import escape
from django.utils.safestring import mark_safe

from accounts import languages
from conversations.history import pricing, selectors

register = template.Library()


@register.filter
def clock(value: timedelta | None) -> str:
    """A duration as a clock: "0:42", "12:05", "1:02:03"; "—" when unknown."""
    if value is None:
        return "—"
    seconds = max(int(value.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{seconds:02}" if hours else f"{minutes}:{seconds:02}"


@register.filter
def ms_clock(milliseconds: int | None) -> str:
    """A duration in milliseconds (a recording's) as a clock."""
    return "—" if milliseconds is None else clock(timedelta(milliseconds=milliseconds))


@register.filter
def display_title(conversation) -> str:
    return selectors.display_title(conversation)


@register.filter
def language_name(code: str) -> str:
    """A conversation's language by name ("French (français)"), or that it was detected."""
    return languages.label(code) if code else "Detected automatically"


@register.filter
def usd(amount) -> str:
    return pricing.format_usd(amount)


@register.filter
def tokens(value) -> str:
    """A token count with thousands separators."""
    return f"{int(value or 0):,}"


@register.filter
def excerpt(text: str, term: str = "", width: int = 90) -> str:
    """
    A short excerpt of `text` around the first occurrence of `term`, with every occurrence
    wrapped in <mark>. The text is escaped: it is what someone said, never markup.
    """
    text = " ".join((text or "").split())
    term = (term or "").strip()
    start = text.lower().find(term.lower()) if term else -1
    if start > width // 3:
        cut = text.rfind(" ", 0, start - width // 3)
        text = "…" + text[cut + 1 if cut >= 0 else start - width // 3 :]
    if len(text) > width:
        cut = text.rfind(" ", 0, width)
        text = text[: cut if cut > width // 2 else width] + "…"
    if not term:
        return escape(text)
    pieces = re.split(f"({re.escape(term)})", text, flags=re.IGNORECASE)
    return mark_safe(
        "".join(f"<mark>{escape(p)}</mark>" if i % 2 else escape(p) for i, p in enumerate(pieces))
    )


@register.filter
def get(mapping: dict, key):
    """`mapping|get:key` — a dictionary lookup with a variable key."""
    return mapping.get(key, key) if mapping else key
