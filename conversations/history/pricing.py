"""
Estimated cost of token usage: the one price table of the project.

Prices are USD per 1M tokens (docs/realtime.md, "Prices"). They are estimates for
the history page, the admin, the usage view and the daily budget (`conversations/spend.py`),
never a bill: OpenAI reports cached input tokens as one number, not split by modality.

Input transcription is billed apart, by the transcription model (`TRANSCRIPTION_PRICES`,
`transcription_cost`). A transcription model not in the table is priced at the dearest known,
never at 0, so that a budget is never under-counted.
"""

import re
from dataclasses import dataclass, fields
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings

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


def _dearest(prices, cls):
    """A price of `cls` whose every rate is the highest of `prices` for that rate (None: not a rate)."""
    return cls(*(max(v for p in prices if (v := getattr(p, f.name)) is not None) for f in fields(cls)))


DEAREST = _dearest(PRICES.values(), Price)


def price_for(model: str) -> Price | None:
    """The price of a model, or None when it is not in the table (then there is no estimate)."""
    return PRICES.get(model) or PRICES.get(_SNAPSHOT_SUFFIX.sub("", model or ""))


def estimate_cost(usage, model: str, *, unknown_at_dearest: bool = False) -> Decimal | None:
    """
    The estimated cost in USD of `usage` (anything with the `TokenUsage` fields: a
    Conversation, a ResponseUsage, or an aggregate row) under `model`'s prices.

    A model not in the table has no estimate (None), or with `unknown_at_dearest` (what a
    budget counts: never 0) is priced at the dearest known rates.

    Cached tokens are a subset of the input tokens; as OpenAI does not say which modality
    they were, they are split in proportion to the text and audio input. Tokens that the
    details do not account for (usage without details) are priced as text, the lower bound.
    """
    price = price_for(model) or (DEAREST if unknown_at_dearest else None)
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


def _value(usage, name: str):
    return (usage.get(name) if isinstance(usage, dict) else getattr(usage, name, 0)) or 0


def _count(usage, name: str) -> int:
    return int(_value(usage, name))


# --- input transcription ----------------------------------------------------------------------


@dataclass(frozen=True)
class TranscriptionPrice:
    """USD per 1M tokens, or per minute of audio for a duration-billed model (None: the model is
    not billed that way; a usage of that shape anyway is priced at the dearest known rate)."""

    text_in: Decimal | None
    audio_in: Decimal | None
    text_out: Decimal | None
    per_minute: Decimal | None


def _transcription_price(text_in, audio_in, text_out, per_minute=None) -> TranscriptionPrice:
    return TranscriptionPrice(
        *(None if v is None else Decimal(v) for v in (text_in, audio_in, text_out, per_minute))
    )


# OpenAI's public price list (https://openai.com/api/pricing/, "Transcription and speech"),
# as of 2025; see docs/realtime.md, "Prices". Re-check when OpenAI changes them.
TRANSCRIPTION_PRICES: dict[str, TranscriptionPrice] = {
    #                                                   text in / audio in / text out   per minute
    "gpt-4o-transcribe": _transcription_price("2.50", "6", "10"),
    "gpt-4o-mini-transcribe": _transcription_price("1.25", "3", "5"),
    "whisper-1": _transcription_price(None, None, None, "0.006"),
}

DEAREST_TRANSCRIPTION = _dearest(TRANSCRIPTION_PRICES.values(), TranscriptionPrice)
SECONDS_PER_MINUTE = Decimal(60)


def transcription_price_for(model: str) -> TranscriptionPrice:
    """The price of a transcription model; one not in the table costs the dearest known rates."""
    known = TRANSCRIPTION_PRICES.get(model) or TRANSCRIPTION_PRICES.get(_SNAPSHOT_SUFFIX.sub("", model or ""))
    return known or DEAREST_TRANSCRIPTION


def transcription_cost(usage, model: str | None = None, *, prefix: str = "") -> Decimal:
    """
    The estimated cost in USD of input transcription usage (anything with the
    `TranscriptionUsage` fields, or those fields named with `prefix`: a row, or sums of rows)
    under `model`'s prices (default: REALTIME_TRANSCRIPTION_MODEL, the model every session is
    started with; the usage events do not name it).

    Input tokens the details do not account for are priced as audio: what is transcribed is
    audio, and a budget must not be under-counted.
    """
    price = transcription_price_for(settings.REALTIME_TRANSCRIPTION_MODEL if model is None else model)

    def rate(name: str) -> Decimal:  # a shape the model is not billed by: the dearest known rate
        value = getattr(price, name)
        return value if value is not None else getattr(DEAREST_TRANSCRIPTION, name)

    text_in = _count(usage, prefix + "input_text_tokens")
    audio_in = _count(usage, prefix + "input_audio_tokens")
    audio_in += max(_count(usage, prefix + "input_tokens") - text_in - audio_in, 0)
    text_out = _count(usage, prefix + "output_tokens")
    tokens = text_in * rate("text_in") + audio_in * rate("audio_in") + text_out * rate("text_out")
    minutes = Decimal(_value(usage, prefix + "seconds")) / SECONDS_PER_MINUTE
    return tokens / MILLION + minutes * rate("per_minute")


def conversation_cost(conversation, transcription, *, prefix: str = "") -> Decimal | None:
    """A conversation's estimated cost: its responses (its `TokenUsage` totals) at its model's
    prices plus its input transcription (`transcription`: the sums of its `TranscriptionUsage`
    fields, see `transcription_cost`); None when its model has no price."""
    cost = estimate_cost(conversation, conversation.model)
    return None if cost is None else cost + transcription_cost(transcription, prefix=prefix)


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
