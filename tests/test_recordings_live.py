"""
The recordings' HTTP path through a real daphne server (ASGI: the request body as daphne hands it
over, the streamed audio as a client receives it): upload, resume, Range, the bound on a chunk.
"""

import httpx
import pytest

from tests.support.factories import PASSWORD, make_conversation, make_user
from tests.support.processes import LiveServer, server_environment, wait_for_server_sessions_to_close
from tests.support.recordings import TONE, WEBM, WHOLE

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with LiveServer(server_environment()) as live:
        yield live
    with django_db_blocker.unblock():
        wait_for_server_sessions_to_close()


def signed_in(server, username) -> tuple[httpx.Client, str]:
    """A client signed in through the real log-in form, and its CSRF token."""
    client = httpx.Client(base_url=server.url, headers={"Origin": server.url}, timeout=20)
    client.get("/accounts/login/")
    form = {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": client.cookies["csrftoken"]}
    assert client.post("/accounts/login/", data=form).status_code == 302
    return client, client.cookies["csrftoken"]


def test_upload_resume_and_seek_through_daphne(server):
    user = make_user("alice")
    talk = make_conversation(user, segments=1)
    client, token = signed_in(server, "alice")
    try:
        base = f"/api/conversations/{talk.uuid}/recordings/1/"
        for index in range(2):
            response = client.put(
                f"{base}chunks/{index}",
                content=TONE[index],
                headers={"Content-Type": WEBM, "X-Recording-Duration-Ms": str(1000 * (index + 1)), "X-CSRFToken": token},
            )
            assert response.status_code == 201, response.text
        # A reloaded page asks where to resume, then sends the rest.
        assert client.get(base).json()["recording"]["chunks"] == 2
        for index in (2, 3):
            response = client.put(
                f"{base}chunks/{index}",
                content=TONE[index],
                headers={"Content-Type": WEBM, "X-Recording-Duration-Ms": str(1000 * (index + 1)), "X-CSRFToken": token},
            )
            assert response.status_code == 201, response.text
        too_big = client.put(
            f"{base}chunks/4",
            content=b"\0" * (2 * 1024 * 1024),
            headers={"Content-Type": WEBM, "X-Recording-Duration-Ms": "5000", "X-CSRFToken": token},
        )
        assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "chunk_too_large"

        whole = client.get(f"/conversations/{talk.uuid}/recording/")
        assert whole.status_code == 200 and whole.content == WHOLE
        first, last = len(TONE[0]) - 100, len(TONE[0]) + len(TONE[1]) + 100
        piece = client.get(f"/conversations/{talk.uuid}/recording/1/", headers={"Range": f"bytes={first}-{last}"})
        assert piece.status_code == 206
        assert piece.content == WHOLE[first : last + 1]
        assert piece.headers["content-range"] == f"bytes {first}-{last}/{len(WHOLE)}"
    finally:
        client.close()
