// Live transcript of the history page (and the admin's live page): a read-only WebSocket that
// receives the conversation's transcript as it changes and shows or updates its lines, drawn by
// common/line.js like the server's own.
//
// Messages (conversations/transcript/live.py, live_consumer.py): on connect
// {"type": "snapshot", "status": "active", "utterances": [...]}, then
// {"type": "transcript.changed", "utterances": [...]} for every change and
// {"type": "conversation.ended", "ended_at": "…"} at the end, or {"type": "conversation.deleted"}
// (then the server closes with 4404). Lines are keyed by item_id, so a message seen twice (the
// snapshot racing an update) changes nothing.

import { LineList } from "../common/line.js";
import { Retry, closeMeaning, isFinal, parseJson, socketUrl } from "../common/websocket.js";

const SAY = {
  denied: "Live updates stopped: you are signed out. Reload the page after logging in.",
  gone: "Live updates are not available for this conversation.",
  crowded: "Too many live pages are open for your account: close some. Retrying…",
  retry: "Connection lost, reconnecting…",
};

class LiveTranscript {
  constructor(list) {
    this.url = socketUrl(list.dataset.liveUrl);
    this.labels = JSON.parse(document.getElementById("transcript-labels").textContent);
    const empty = document.querySelector(".transcript-empty");
    this.list = new LineList(list, this.labels, { empty, timeZone: list.dataset.timeZone });
    this.status = document.querySelector(".live-status");
    this.retry = new Retry({ min: 1000, max: 30000 });
    this.stopped = false;
  }

  say(text, live = false) {
    if (!this.status) return;
    this.status.textContent = text;
    this.status.hidden = !text;
    this.status.classList.toggle("is-live", live);
  }

  connect() {
    const socket = new WebSocket(this.url);
    socket.addEventListener("open", () => {
      this.retry.attempt = 0;
      this.say("Live: new turns appear as they are said.", true);
    });
    socket.addEventListener("message", (event) => this.receive(event.data, socket));
    socket.addEventListener("close", (event) => {
      if (this.stopped) return;
      const meaning = closeMeaning(event.code);
      this.say(SAY[meaning]);
      if (!isFinal(meaning)) this.retry.schedule(() => this.connect());
    });
  }

  receive(data, socket) {
    const message = parseJson(data);
    if (message?.type === "snapshot" || message?.type === "transcript.changed") {
      for (const utterance of message.utterances || []) this.list.show(utterance);
      const turns = document.querySelector("[data-turn-count]");
      if (turns) turns.textContent = String(this.list.lines.length);
    }
    if (message?.type === "conversation.deleted") {
      // What is on the page is all there will be; reloading it would show "not found".
      this.stopped = true;
      this.say("This conversation has been deleted. What is shown here is no longer stored.");
      socket.close(1000);
      return;
    }
    const status = message?.type === "conversation.ended" ? "ended" : message?.status;
    if (status) this.showStatus(status);
    if (status && status !== "active") {
      // The conversation ended: nothing more will arrive.
      this.stopped = true;
      this.say("This conversation has ended.");
      socket.close(1000);
    }
  }

  showStatus(status) {
    const badge = document.querySelector("[data-conversation-status]");
    if (!badge) return;
    badge.className = `badge badge-${status}`;
    badge.textContent = this.labels.conversation[status] || status;
  }
}

const list = document.querySelector(".transcript[data-live-url]");
if (list) new LiveTranscript(list).connect();
