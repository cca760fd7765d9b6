"""
What the server serves plays in a real Chromium: the recording's player on the transcript page
and in the admin loads the audio (its chunks concatenated, under the page's Content Security
Policy), seeks into it and plays on. The audio is four real MediaRecorder chunks
(tests/fixtures/recordings/), stored through the upload's own function. The exact bytes of
Range answers are checked in tests/test_recordings.py.
"""

import pytest

from tests.support.browser import sign_in
from tests.support.factories import make_conversation, make_superuser
from tests.support.recordings import record

pytestmark = pytest.mark.browser

SEEK_AND_PLAY = """
async (seconds) => {
  const audio = document.querySelector("audio");
  if (audio.readyState < 1) {
    await new Promise((resolve, reject) => {
      audio.addEventListener("loadedmetadata", resolve, { once: true });
      audio.addEventListener("error", () => reject(new Error("media error " + audio.error.code)), { once: true });
    });
  }
  audio.currentTime = seconds;
  await new Promise((resolve) => audio.addEventListener("seeked", resolve, { once: true }));
  const seekedTo = audio.currentTime;
  audio.muted = true;
  await audio.play();
  await new Promise((resolve) => setTimeout(resolve, 400));
  audio.pause();
  return { seekedTo, playedTo: audio.currentTime, error: audio.error && audio.error.code };
}
"""


def recorded(user):
    conversation = make_conversation(user, segments=1)
    record(conversation)
    return conversation


@pytest.mark.parametrize("where", ["transcript", "admin"])
def test_the_player_seeks_and_plays_what_the_server_serves(daphne_server, user, page, where):
    conversation = recorded(user)
    if where == "admin":
        viewer = make_superuser(f"staff{user.pk}")
        url = f"/admin/conversations/conversation/{conversation.pk}/change/"
    else:
        viewer, url = user, conversation.get_absolute_url()
    sign_in(page.context, viewer, daphne_server.url)
    ranges = []
    page.on("request", lambda request: "/recording/" in request.url and ranges.append(request.headers.get("range")))
    page.goto(daphne_server.url + url)
    result = page.evaluate(SEEK_AND_PLAY, 2.5)
    assert result["error"] is None
    assert 2.4 <= result["seekedTo"] <= 2.6
    assert result["playedTo"] > result["seekedTo"]  # it decoded and played on from there
    assert ranges and all(r and r.startswith("bytes=") for r in ranges)  # the media element reads by range
    page.context.close()
