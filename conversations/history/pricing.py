"""
Estimated cost of token usage: the one price table of the project.

Prices are USD per 1M tokens (docs/realtime.md, "Prices"). They are estimates for
the history page, the admin and the usage view, never a bill: OpenAI reports cached input
tokens as one number, not split by modality, and input transcription is billed separately
by the transcription model (not priced here).
"""

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens."""

    text_in: Decimal
    text_cached: Decimal
    text_out: Decimal
    audio_in: Decimal
    audio_cached: Decimal
    audio_out: Decimal


def _price(*values: str) -> Price:
    return Price(*(Decimal(v) for v in values))


PRICES: dict[str, Price] = {
    #                                  text in / cached / out    audio in / cached / out
    "gpt-realtime-2.1": _price("4", "0.40", "24", "32", "0.40", "64"),
    "gpt-realtime-2.1-mini": _price("0.60", "0.06", "2.40", "10", "0.30", "20"),
}

# A dated snapshot ("gpt-realtime-2.1-2026-08-28") costs what its model costs.
_SNAPSHOT_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def price_for(model: str) -> Price | None:
    """The price of a model, or None when it is not in the table (then there is no estimate)."""
    return PRICES.get(model) or PRICES.get(_SNAPSHOT_SUFFIX.sub("", model or ""))


def estimate_cost(usage, model: str) -> Decimal | None:
    """
    The estimated cost in USD of `usage` (anything with the `TokenUsage` fields: a
    Conversation, a ResponseUsage, or an aggregate row) under `model`'s prices.

    Cached tokens are a subset of the input tokens; as OpenAI does not say which modality
    they were, they are split in proportion to the text and audio input. Tokens that the
    details do not account for (usage without details) are priced as text, the lower bound.
    """
    price = price_for(model)
    if price is None:
        return None

    text_in = _count(usage, "input_text_tokens")
    audio_in = _count(usage, "input_audio_tokens")
    text_in += max(_count(usage, "input_tokens") - text_in - audio_in, 0)
    text_out = _count(usage, "output_text_tokens")
    audio_out = _count(usage, "output_audio_tokens")
    text_out += max(_count(usage, "output_tokens") - text_out - audio_out, 0)

    cached = min(_count(usage, "cached_tokens"), text_in + audio_in)
    cached_audio = Decimal(cached * audio_in) / (text_in + audio_in) if cached else Decimal(0)
    cached_text = cached - cached_audio

    dollars_per_million = (
        (text_in - cached_text) * price.text_in
        + cached_text * price.text_cached
        + text_out * price.text_out
        + (audio_in - cached_audio) * price.audio_in
        + cached_audio * price.audio_cached
        + audio_out * price.audio_out
    )
    return dollars_per_million / MILLION


def _count(usage, field: str) -> int:
    value = usage.get(field) if isinstance(usage, dict) else getattr(usage, field, 0)
    return int(value or 0)


def format_usd(amount: Decimal | None) -> str:
    """ "$1.23" for a dollar or more, "$0.0042" below (small conversations cost fractions of a cent)."""
    if amount is None:
        return ""
    if amount == 0:
        return "$0.00"
    places = Decimal("0.01") if amount >= 1 else Decimal("0.0001")
    rounded = amount.quantize(places, rounding=ROUND_HALF_UP)
    if amount > 0 and rounded == 0:
        return "< $0.0001"
    return f"${rounded:,}"
