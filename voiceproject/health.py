"""
/healthz for load balancers and orchestrators: is this process able to serve?

It checks what every request depends on — the database answers a query, and the channel layer
carries a message (with Redis, this proves the Redis connection; in memory, it is trivially
true). 200 when both work, 503 otherwise; never a detail that helps an attacker.
"""

import asyncio
import logging

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)

CHANNEL_LAYER_TIMEOUT = 2.0


def _database_ok() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _channel_layer_ok() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel("healthz.")
    await layer.send(channel, {"type": "healthz.ping"})
    message = await asyncio.wait_for(layer.receive(channel), CHANNEL_LAYER_TIMEOUT)
    if message.get("type") != "healthz.ping":
        raise RuntimeError("channel layer returned another message")


@never_cache
@require_GET
async def healthz(request):
    checks = {}
    for name, check in (("database", sync_to_async(_database_ok)), ("channel_layer", _channel_layer_ok)):
        try:
            await check()
            checks[name] = "ok"
        except Exception:
            logger.exception("health check %s failed", name)
            checks[name] = "failing"
    healthy = all(state == "ok" for state in checks.values())
    return JsonResponse({"status": "ok" if healthy else "failing", "checks": checks}, status=200 if healthy else 503)
