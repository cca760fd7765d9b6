"""
The Origin check of WebSocket handshakes: the same origins as the HTTP API's CSRF check.

A browser sends `Origin` with every WebSocket handshake, and session cookies go along whatever
page opened the socket, so the origin is all that stops another site from talking on a signed-in
user's sockets. Channels' AllowedHostsOriginValidator compares host names only: `http://` and
`:8443` origins of an allowed host passed. This check accepts exactly what Django's
CsrfViewMiddleware accepts for a POST: the request's own origin (scheme from the connection or,
behind a proxy, from SECURE_PROXY_SSL_HEADER; host from the Host header, which must be in
ALLOWED_HOSTS), or one of CSRF_TRUSTED_ORIGINS (`https://*.example.com` wildcards included).
A handshake without an Origin header is refused too (browsers always send one).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

DEFAULT_PORTS = {"http": "80", "https": "443"}


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _is_secure(scope) -> bool:
    if scope.get("scheme") in ("wss", "https"):
        return True
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        name, secure_value = proxy
        # HTTP_X_FORWARDED_PROTO -> x-forwarded-proto; the first value, as Django reads it.
        value = _header(scope, name.removeprefix("HTTP_").replace("_", "-").lower().encode())
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return False


def _allowed_hosts() -> list[str]:
    hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not hosts:  # as HttpRequest.get_host()
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return hosts


def own_origin(scope) -> str | None:
    """`scheme://host[:port]` of the site the handshake was sent to; None for a disallowed Host."""
    host = _header(scope, b"host")
    if not host:
        return None
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, _allowed_hosts()):
        return None
    return f"{'https' if _is_secure(scope) else 'http'}://{host}"


def _normalized(origin: str) -> str | None:
    """Lower-case scheme and host, default port dropped (`https://A.com:443` == `https://a.com`)."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path or parts.query:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and str(port) != DEFAULT_PORTS[parts.scheme]:
        host += f":{port}"
    return f"{parts.scheme}://{host}"


def origin_allowed(scope) -> bool:
    origin = _header(scope, b"origin")
    if not origin:
        return False
    normalized = _normalized(origin)
    if normalized is None:
        return False
    own = own_origin(scope)
    if own is not None and _normalized(own) == normalized:
        return True
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        if "*" in trusted:
            scheme, _, pattern = trusted.partition("://")
            netloc = normalized.partition("://")[2]
            if normalized.startswith(scheme + "://") and is_same_domain(netloc, pattern.replace("*", "", 1)):
                return True
        elif _normalized(trusted) == normalized:
            return True
    return False


class SameOriginValidator:
    """ASGI middleware: WebSocket handshakes from other origins are refused (HTTP 403)."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            denier = WebsocketDenier()
            return await denier(scope, receive, send)
        return await self.application(scope, receive, send)
