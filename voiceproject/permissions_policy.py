"""
The Permissions-Policy header: which browser features the site's pages, and frames they embed,
may use. Set from settings.PERMISSIONS_POLICY, e.g. {"microphone": ["self"], "camera": []}:
"self" is the site itself, other entries are origins, an empty list denies the feature to
every origin.

A dozen lines instead of a package (django-permissions-policy does the same): the header is one
fixed string, built once per process.
"""

from django.conf import settings
from django.utils.deprecation import MiddlewareMixin


def header_value(policy: dict[str, list[str]]) -> str:
    """{"microphone": ["self"], "camera": []} -> 'microphone=(self), camera=()'."""

    def allowlist(origins: list[str]) -> str:
        return " ".join(o if o in ("self", "*") else f'"{o}"' for o in origins)

    return ", ".join(f"{feature}=({allowlist(origins)})" for feature, origins in policy.items())


class PermissionsPolicyMiddleware(MiddlewareMixin):
    """Sync and async capable (MiddlewareMixin), so async views are not pushed onto a thread."""

    def __init__(self, get_response):
        super().__init__(get_response)
        self.value = header_value(settings.PERMISSIONS_POLICY)

    def process_response(self, request, response):
        if self.value:
            response.headers.setdefault("Permissions-Policy", self.value)
        return response
