"""
Conventions shared by every JSON endpoint under /api/ (docs/api.md).

- Every answer is JSON; errors are {"error": {"code": "<snake_case>", "message": "<for a person>"}}.
- Anonymous callers get 401 JSON, never the log-in redirect that pages use.
- Unsafe methods need the CSRF token. The check runs after authentication, so that a page whose
  session has ended learns "log in again" (401) rather than "reload" (403): logging out rotates
  the CSRF token, so such a page would otherwise only ever see CSRF failures.
- A CSRF failure on an API path is a 403 JSON error; pages keep templates/403_csrf.html.
"""

from functools import wraps

from django.http import JsonResponse
from django.utils.cache import add_never_cache_headers
from django.views import defaults
from django.views.csrf import csrf_failure as html_csrf_failure
from django.views.decorators.csrf import csrf_exempt, csrf_protect

API_PREFIX = "/api/"


def is_api_request(request) -> bool:
    return request.path.startswith(API_PREFIX)


def json_response(data, status=200, headers=None) -> JsonResponse:
    response = JsonResponse(data, status=status, headers=headers)
    # API answers are per user and may carry secrets: no cache may keep them.
    add_never_cache_headers(response)
    return response


def error_response(status: int, code: str, message: str, headers=None, **details) -> JsonResponse:
    """The error envelope; `details` are extra fields of the error object (e.g. "budget")."""
    body = {"error": {"code": code, "message": message, **details}}
    return json_response(body, status=status, headers=headers)


def api_view(*methods: str):
    """
    Decorate an async view as a JSON API endpoint accepting `methods`: 405 JSON for other
    methods, 401 JSON for anonymous callers, then the CSRF check (Django's own, via
    csrf_protect) for unsafe methods. The view finds the signed-in user in `request.user`.
    """
    allowed = tuple(m.upper() for m in methods)

    def decorator(view):
        protected = csrf_protect(view)

        @wraps(view)
        async def wrapper(request, *args, **kwargs):
            if request.method not in allowed:
                return error_response(
                    405,
                    "method_not_allowed",
                    f"{request.method} is not supported here; use {' or '.join(allowed)}.",
                    headers={"Allow": ", ".join(allowed)},
                )
            user = await request.auser()
            if not user.is_authenticated:
                return error_response(401, "not_authenticated", "Log in to use this.")
            # The user is resolved: no lazy (sync) database lookup left behind request.user.
            request.user = user
            return await protected(request, *args, **kwargs)

        # The middleware must not check before we know who is calling; `protected` checks.
        return csrf_exempt(wrapper)

    return decorator


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: JSON for API paths, Django's page (templates/403_csrf.html) otherwise."""
    if is_api_request(request):
        return error_response(
            403,
            "csrf_failed",
            "The request was refused because its CSRF token is missing or out of date. "
            "Reload the page and try again.",
        )
    return html_csrf_failure(request, reason=reason)


def bad_request(request, exception):
    """handler400: JSON under /api/, the templates/400.html page elsewhere."""
    if is_api_request(request):
        return error_response(400, "invalid_request", "The request was malformed.")
    return defaults.bad_request(request, exception)


def page_not_found(request, exception):
    """handler404: JSON under /api/, the templates/404.html page elsewhere."""
    if is_api_request(request):
        return error_response(404, "not_found", "There is no API endpoint at this address.")
    return defaults.page_not_found(request, exception)


def server_error(request):
    """handler500: JSON under /api/, the templates/500.html page elsewhere."""
    if is_api_request(request):
        return error_response(500, "server_error", "Something went wrong on our side. Please try again.")
    return defaults.server_error(request)
