"""
Static files as production serves them (DEBUG off): `collectstatic` with the project's storage
(voiceproject/storage.py) on the real files, then the pages and every file they load — the ES
modules they import included — through WhiteNoise, under content-hashed, cache-forever names.
"""

import re
from urllib.parse import urljoin

import pytest
from django.core.management import call_command

from tests.support.factories import make_conversation, make_user, signed_in

pytestmark = pytest.mark.django_db

# Relative module specifiers: `import … from "./x.js"`, `export … from "./x.js"`, `import "./x.js"`,
# `import("./x.js")` — written to find what Django's rewriting might have missed, not to mirror it.
RELATIVE_IMPORT = re.compile(r"""\b(?:from|import)\s*\(?\s*["'](\.{1,2}/[^"']+)["']""")
HASHED = re.compile(r"\.[0-9a-f]{12}\.\w+$")
STATIC_REFERENCE = re.compile(r"""(?:src|href)="(/static/[^"]+)\"""")


@pytest.fixture
def production_static(settings, tmp_path):
    """collectstatic into a fresh STATIC_ROOT with the production storage; WhiteNoise serving
    from it alone, as with DEBUG off (the test settings otherwise serve from the app folders)."""
    settings.STATIC_ROOT = tmp_path
    production = {"BACKEND": "voiceproject.storage.StaticFilesStorage"}
    settings.STORAGES = {**settings.STORAGES, "staticfiles": production}
    settings.WHITENOISE_USE_FINDERS = False
    settings.WHITENOISE_AUTOREFRESH = False
    call_command("collectstatic", interactive=False, verbosity=0)
    return tmp_path


def test_every_module_import_is_rewritten_to_a_hashed_name(production_static):
    modules = [p for p in production_static.rglob("*.js") if HASHED.search(p.name)]
    assert modules, "collectstatic produced no hashed JavaScript"
    for module in modules:
        for specifier in RELATIVE_IMPORT.findall(module.read_text()):
            assert HASHED.search(specifier), f"{module.name} imports {specifier}, not a hashed name"
            assert (module.parent / specifier).is_file(), f"{module.name} imports a missing {specifier}"


def test_pages_load_hashed_files_that_are_cached_forever(production_static):
    user = make_user("alice")
    conversation = make_conversation(user)  # active: its page loads the live-update module
    client = signed_in(user)  # made after the settings change, so WhiteNoise reads the new STATIC_ROOT

    pending = set()
    for page in ("/chat/", "/conversations/", conversation.get_absolute_url()):
        response = client.get(page)
        assert response.status_code == 200, page
        pending.update(STATIC_REFERENCE.findall(response.content.decode()))
    assert any(url.endswith(".js") for url in pending), "no page loaded a script"

    seen = set()
    while pending:  # the pages' files, then what their modules import, and so on
        url = pending.pop()
        seen.add(url)
        assert HASHED.search(url), f"{url} is not a hashed name"
        response = client.get(url)
        assert response.status_code == 200, url
        assert "immutable" in response.headers["Cache-Control"], url
        if url.endswith(".js"):
            body = b"".join(response.streaming_content).decode()
            pending.update({urljoin(url, s) for s in RELATIVE_IMPORT.findall(body)} - seen)
