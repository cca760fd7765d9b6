from decimal import Decimal

from conversations.history import pricing
from conversations.models import Conversation, ResponseUsage, TranscriptionUsage


def usage(**counts):
    return ResponseUsage(**counts)


def test_prices_each_kind_of_token_at_its_rate():
    # 1M of each kind, nothing cached: the sum of the table's row.
    row = usage(
        input_tokens=2_000_000,
        input_text_tokens=1_000_000,
        input_audio_tokens=1_000_000,
        output_tokens=2_000_000,
        output_text_tokens=1_000_000,
        output_audio_tokens=1_000_000,
    )
    assert pricing.estimate_cost(row, "gpt-realtime-2.1") == Decimal(4) + 24 + 32 + 64
    assert pricing.estimate_cost(row, "gpt-realtime-2.1-mini") == Decimal("0.60") + Decimal("2.40") + 10 + 20


def test_cached_tokens_are_split_between_text_and_audio_in_proportion():
    row = usage(
        input_tokens=1_000_000, input_text_tokens=250_000, input_audio_tokens=750_000, cached_tokens=400_000
    )
    # 100k cached text, 300k cached audio; 150k text and 450k audio at the full rate.
    expected = (
        150_000 * Decimal("0.60") + 100_000 * Decimal("0.06") + 450_000 * 10 + 300_000 * Decimal("0.30")
    ) / 1_000_000
    assert pricing.estimate_cost(row, "gpt-realtime-2.1-mini") == expected


def test_tokens_without_details_are_priced_as_text():
    row = usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert pricing.estimate_cost(row, "gpt-realtime-2.1") == Decimal(28)


def test_dicts_of_totals_work_too():
    assert (
        pricing.estimate_cost(
            {"output_text_tokens": 1_000_000, "output_tokens": 1_000_000}, "gpt-realtime-2.1"
        )
        == 24
    )


def test_unknown_model_has_no_estimate_and_snapshots_have_their_models_price():
    assert pricing.estimate_cost(usage(input_tokens=5), "gpt-4o-realtime-preview") is None
    assert pricing.estimate_cost(usage(input_tokens=5), "") is None
    assert pricing.price_for("gpt-realtime-2.1-mini-2026-08-28") == pricing.PRICES["gpt-realtime-2.1-mini"]


def test_format_usd():
    assert pricing.format_usd(None) == ""
    assert pricing.format_usd(Decimal(0)) == "$0.00"
    assert pricing.format_usd(Decimal("0.0894")) == "$0.0894"
    assert pricing.format_usd(Decimal("0.00004")) == "< $0.0001"
    assert pricing.format_usd(Decimal("1234.567")) == "$1,234.57"


# --- input transcription -----------------------------------------------------------------------


def test_transcription_is_priced_per_model_and_kind_of_token():
    row = TranscriptionUsage(input_tokens=1_000_000, input_text_tokens=200_000, input_audio_tokens=800_000,
                             output_tokens=1_000_000)  # fmt: skip
    # gpt-4o-mini-transcribe: text in $1.25, audio in $3, text out $5 per 1M tokens.
    assert pricing.transcription_cost(row, "gpt-4o-mini-transcribe") == Decimal("0.25") + Decimal("2.40") + 5
    assert pricing.transcription_cost(row, "gpt-4o-transcribe") == Decimal("0.50") + Decimal("4.80") + 10
    assert pricing.transcription_cost(row, "gpt-4o-transcribe-2026-03-20") == pricing.transcription_cost(
        row, "gpt-4o-transcribe"
    )


def test_unknown_transcription_models_cost_the_dearest_known_never_zero():
    tokens = {"input_tokens": 1_000_000, "input_audio_tokens": 1_000_000, "output_tokens": 1_000_000}
    assert (
        pricing.transcription_cost(tokens, "gpt-transcribe-next")
        == 16
        == pricing.transcription_cost(tokens, "gpt-4o-transcribe")
    )
    assert pricing.transcription_cost({"seconds": 600}, "some-new-model") == Decimal("0.06")


def test_duration_billed_transcription_and_tokens_without_details():
    assert pricing.transcription_cost({"seconds": Decimal(30)}, "whisper-1") == Decimal("0.003")
    # Input tokens without details are priced as audio (what is transcribed is audio).
    assert pricing.transcription_cost({"input_tokens": 1_000_000}, "gpt-4o-mini-transcribe") == 3
    # A shape the model is not billed by is priced at the dearest rate, not 0.
    assert pricing.transcription_cost({"input_tokens": 1_000_000}, "whisper-1") == 6


def test_transcription_cost_defaults_to_the_configured_model(settings):
    settings.REALTIME_TRANSCRIPTION_MODEL = "gpt-4o-transcribe"
    assert pricing.transcription_cost({"output_tokens": 1_000_000}) == 10


def test_a_conversation_cost_includes_its_transcription(settings):
    settings.REALTIME_TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"
    conversation = Conversation(model="gpt-realtime-2.1", input_tokens=1_000_000)
    assert pricing.conversation_cost(conversation, {"output_tokens": 1_000_000}) == 4 + 5
    assert pricing.conversation_cost(Conversation(model="x"), {"output_tokens": 1}) is None
