"""Server mode (REALTIME_CONNECT=server) without OpenAI: POST /api/realtime/calls from a test
client, and OpenAI's /realtime/calls as an httpx.MockTransport. The `openai` and `server_mode`
fixtures (tests/conftest.py) put them in place."""

import email.parser
import email.policy
import json

import httpx

CALLS_URL = "/api/realtime/calls"
API_KEY = "sk-proj-server-mode-key-0123456789abcdef"
BASE_URL = "https://openai.invalid/v1"
OFFER = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
ANSWER = "v=0\r\no=- 99 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
CALL_ID = "rtc_u1_9c4e7f0b2a"


class FakeOpenAI:
    """Answers POST /realtime/calls like OpenAI; `reply` can be swapped for a failure."""

    def __init__(self):
        self.requests: list[httpx.Request] = []
        self.reply = self.accept

    @staticmethod
    def accept(request):
        return httpx.Response(201, text=ANSWER, headers={"Content-Type": "application/sdp",
                                                         "Location": f"/v1/realtime/calls/{CALL_ID}"})

    def handler(self, request):
        self.requests.append(request)
        return self.reply(request)

    def client(self):
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))


def use_fake_openai(settings, monkeypatch) -> FakeOpenAI:
    """The app's upstream client talks to a FakeOpenAI, with the real key's settings."""
    from conversations.realtime import upstream

    settings.OPENAI_API_KEY = API_KEY
    settings.OPENAI_BASE_URL = BASE_URL
    settings.KEY_RATE_LIMIT_PER_USER = settings.KEY_RATE_LIMIT_PER_IP = "1000/minute"
    fake = FakeOpenAI()
    monkeypatch.setattr(upstream, "http_client", fake.client)
    return fake


def parts(request: httpx.Request) -> dict:
    """The multipart/form-data parts of a request: name -> (content type, text)."""
    head = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.content)
    assert message.is_multipart()
    return {
        part.get_param("name", header="content-disposition"): (
            part.get_content_type(), part.get_payload(decode=True).decode()
        )
        for part in message.iter_parts()
    }


def post_call(client, body=None, **extra):
    body = {"sdp": OFFER} if body is None else body
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(CALLS_URL, data=data, content_type="application/json", **extra)
