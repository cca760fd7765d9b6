"""
The event types the voice page forwards to the transcript socket.

They are listed once, where the page needs them: `FORWARDED_TYPES` in static/voice/outbox.js.
The server reads that list here (the admin's journal filter, the tests), so the two cannot drift.
"""

import re
from functools import cache

from django.conf import settings

OUTBOX_JS = settings.BASE_DIR / "static" / "voice" / "outbox.js"


@cache
def forwarded_types() -> tuple[str, ...]:
    """The page's list, in its order."""
    source = OUTBOX_JS.read_text()
    found = re.search(r"export const FORWARDED_TYPES = new Set\(\[(.*?)\]\)", source, re.DOTALL)
    if found is None:
        raise LookupError(f"FORWARDED_TYPES not found in {OUTBOX_JS}")
    return tuple(re.findall(r'"([^"]+)"', found.group(1)))
