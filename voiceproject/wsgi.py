"""WSGI entry point (management tools only: the application is served over ASGI by daphne)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceproject.settings")

application = get_wsgi_application()
