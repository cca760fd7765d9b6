"""
The languages a user can hold a voice conversation in: the ISO-639-1 codes OpenAI's
transcription models are documented to handle well, named for people.

The code goes to OpenAI as `audio.input.transcription.language` (absent: the model detects the
language itself), and its English name into the instructions ("Always answer in French."):
there is no field for the language of the replies. The names come from Django's own table
(`django.conf.locale.LANG_INFO`), so no extra library is needed; the three codes it lacks are
named here.
"""

from django.conf.locale import LANG_INFO

AUTOMATIC = ""  # no language set: the transcription model detects it
AUTOMATIC_LABEL = "Detect automatically"

# OpenAI's list of supported speech-to-text languages (those transcribed with a low word error
# rate), as ISO-639-1 codes.
CODES = (
    "af", "ar", "hy", "az", "be", "bs", "bg", "ca", "zh", "hr", "cs", "da", "nl", "en", "et",
    "fi", "fr", "gl", "de", "el", "he", "hi", "hu", "is", "id", "it", "ja", "kn", "kk", "ko",
    "lv", "lt", "mk", "ms", "mr", "mi", "ne", "no", "fa", "pl", "pt", "ro", "ru", "sr", "sk",
    "sl", "es", "sw", "sv", "tl", "ta", "th", "tr", "uk", "ur", "vi", "cy",
)  # fmt: skip

# (English name, the language's own name) for the codes LANG_INFO does not have.
_MISSING = {"zh": ("Chinese", "中文"), "mi": ("Maori", "te reo Māori"), "tl": ("Tagalog", "Tagalog")}


def _names(code: str) -> tuple[str, str]:
    info = LANG_INFO.get(code)
    return (info["name"], info["name_local"]) if info else _MISSING[code]


def english_name(code: str) -> str:
    """The language's English name ("French"); ValueError for a code not in CODES."""
    validate(code)
    return _names(code)[0] if code else AUTOMATIC_LABEL


def label(code: str) -> str:
    """How a person finds it in a list: "French (français)"; "Detect automatically" for ""."""
    if code == AUTOMATIC:
        return AUTOMATIC_LABEL
    if code not in CODES:
        return code  # stored before the list changed: shown as it is rather than hidden
    english, local = _names(code)
    return english if english.casefold() == local.casefold() else f"{english} ({local})"


def choices() -> list[tuple[str, str]]:
    """(code, label) pairs for a form: automatic first, then by English name."""
    return [(AUTOMATIC, AUTOMATIC_LABEL)] + sorted(((c, label(c)) for c in CODES), key=lambda p: p[1].casefold())


def is_known(code) -> bool:
    return code == AUTOMATIC or code in CODES


def validate(code) -> str:
    """`code` if the server knows it ("" included: detect), else ValueError with a readable message."""
    if not isinstance(code, str) or not is_known(code):
        raise ValueError(
            f"Unknown language {code!r}: use an ISO-639-1 code this server supports (e.g. \"fr\"), "
            "or an empty string to detect the language automatically."
        )
    return code


def instruction(code: str) -> str:
    """The sentence added to the instructions so the model answers in `code`'s language ("" for none)."""
    return f"Always answer in {english_name(code)}." if code else ""
