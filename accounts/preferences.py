"""Reading a user's preferences: the saved row, or the site's defaults (unsaved) until there is one."""

from accounts.models import Preferences


def for_user(user) -> Preferences:
    """The user's preferences; an unsaved instance with the site's defaults if none are saved."""
    return Preferences.objects.filter(user=user).first() or Preferences(user=user)


async def afor_user(user) -> Preferences:
    return await Preferences.objects.filter(user=user).afirst() or Preferences(user=user)
