"""
Refuse NUL characters in the address of any request, before a view can pass them on.

PostgreSQL text cannot hold NUL (0x00): a query value such as `?type=%00` reaching a filter made
the database driver raise, and the page answered 500. No page has a use for NUL in its path or
query string, so every such request is a 400 here (JSON under /api/, templates/400.html elsewhere)
instead of each filter, form and lookup having to remember it.
"""

from django.core.exceptions import BadRequest
from django.utils.deprecation import MiddlewareMixin

NUL = "\x00"


def has_nul(request) -> bool:
    if NUL in request.path_info:
        return True
    return any(NUL in key or any(NUL in value for value in values) for key, values in request.GET.lists())


class RejectNulMiddleware(MiddlewareMixin):
    def process_request(self, request):
        if has_nul(request):
            # Django answers with handler400 (voiceproject.api.bad_request).
            raise BadRequest("The address contains a NUL character.")
