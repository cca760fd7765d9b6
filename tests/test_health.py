import pytest
from channels.layers import get_channel_layer


@pytest.mark.django_db
def test_healthz_reports_database_and_channel_layer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "channel_layer": "ok"}}
    assert "no-cache" in response.headers["Cache-Control"]


@pytest.mark.django_db
def test_healthz_is_503_when_the_channel_layer_fails(client, monkeypatch):
    layer = get_channel_layer()

    async def broken_send(channel, message):
        raise ConnectionError("redis went away")

    monkeypatch.setattr(layer, "send", broken_send)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "channel_layer": "failing"}


def test_healthz_needs_no_login_and_only_answers_get(client, db):
    assert client.post("/healthz").status_code == 405
