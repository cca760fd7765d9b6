"""Staff review of conversations: the admin's actions and its change form both go through here."""

from django.utils import timezone


def review_values(reviewed: bool, reviewer) -> dict:
    """The review fields for a conversation marked reviewed by `reviewer` now (or unmarked)."""
    if reviewed:
        return {"reviewed": True, "reviewed_at": timezone.now(), "reviewed_by": reviewer}
    return {"reviewed": False, "reviewed_at": None, "reviewed_by": None}


def set_reviewed(conversations, reviewer, reviewed: bool = True) -> int:
    """Mark a queryset of conversations reviewed by `reviewer` (or not); returns how many."""
    return conversations.update(**review_values(reviewed, reviewer))


def set_flagged(conversations, flagged: bool) -> int:
    """Flag a queryset of conversations for attention (or clear the flag); returns how many."""
    return conversations.update(flagged=flagged)
