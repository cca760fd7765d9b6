// Live transcript of the history page: a read-only WebSocket that receives the conversation's
// transcript as it changes and inserts or updates its lines in position order (the order in
// which items entered the conversation, not the order in which their text arrived).
//
// Messages (conversations/transcript/live.py, live_consumer.py): on connect
// {"type": "snapshot", "status": "active", "utterances": [...]}, then
// {"type": "transcript.changed", "utterances": [...]} for every change and
// {"type": "conversation.ended", "ended_at": "…"} at the end, or {"type": "conversation.deleted"}
// (then the server closes with 4404). Lines are keyed by item_id, so a message seen twice (the
// snapshot racing an update) changes nothing.

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30000;
// The server's refusals: not signed in (4401), not yours or gone (4404). Retrying won't help.
const FINAL_CLOSE_CODES = new Map([
  [4401, "Live updates stopped: you are signed out. Reload the page after logging in."],
  [4404, "Live updates stopped: this conversation was deleted, or is not yours to watch."],
]);

export function lineIndex(list, position) {
  // The first line whose position is greater: the new line goes before it.
  const lines = list.querySelectorAll(":scope > .line");
  for (const [index, line] of lines.entries()) {
    if (Number(line.dataset.position) > position) return index;
  }
  return lines.length;
}

function formatTime(iso, timeZone) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleTimeString("en-GB", { hour12: false, timeZone: timeZone || undefined });
}

class LiveTranscript {
  constructor(list) {
    this.list = list;
    this.url = new URL(list.dataset.liveUrl, window.location.href);
    this.url.protocol = this.url.protocol === "https:" ? "wss:" : "ws:";
    this.timeZone = list.dataset.timeZone;
    this.template = document.getElementById("transcript-line");
    this.labels = JSON.parse(document.getElementById("transcript-labels").textContent);
    this.status = document.querySelector(".live-status");
    this.empty = document.querySelector(".transcript-empty");
    this.retryMs = RETRY_MIN_MS;
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
      this.retryMs = RETRY_MIN_MS;
      this.say("Live: new turns appear as they are said.", true);
    });
    socket.addEventListener("message", (event) => this.receive(event.data, socket));
    socket.addEventListener("close", (event) => {
      if (this.stopped) return;
      const final = FINAL_CLOSE_CODES.get(event.code);
      if (final) {
        this.say(final);
        return;
      }
      this.say("Connection lost, reconnecting…");
      setTimeout(() => this.connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    });
  }

  receive(data, socket) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message.type === "conversation.deleted") {
      // What is on the page is all there will be; reloading it would show "not found".
      this.stopped = true;
      this.say("This conversation has been deleted. What is shown here is no longer stored.");
      socket.close(1000);
      return;
    }
    if (message.type === "snapshot" || message.type === "transcript.changed") {
      for (const utterance of message.utterances || []) this.upsert(utterance);
    }
    const status = message.type === "conversation.ended" ? "ended" : message.status;
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

  upsert(utterance) {
    const itemId = String(utterance.item_id);
    let line = this.list.querySelector(`:scope > .line[data-item-id="${CSS.escape(itemId)}"]`);
    const position = Number(utterance.position);
    if (!line) {
      line = this.template.content.firstElementChild.cloneNode(true);
      line.dataset.itemId = itemId;
    }
    if (!line.isConnected || Number(line.dataset.position) !== position) {
      line.dataset.position = String(position);
      line.remove();
      const before = this.list.querySelectorAll(":scope > .line")[lineIndex(this.list, position)];
      this.list.insertBefore(line, before || null);
    }
    this.fill(line, utterance);
    if (this.empty) this.empty.hidden = true;
    const turns = document.querySelector("[data-turn-count]");
    if (turns) turns.textContent = String(this.list.querySelectorAll(":scope > .line").length);
  }

  fill(line, utterance) {
    const { labels } = this;
    const status = utterance.status || "pending";
    line.className = `line line-${utterance.role} is-${status}`;
    line.querySelector(".line-speaker").textContent = labels.roles[utterance.role] || utterance.role;
    const time = line.querySelector(".line-time");
    if (utterance.created_at) {
      time.dateTime = utterance.created_at;
      time.textContent = formatTime(utterance.created_at, this.timeZone);
    }
    const kind = line.querySelector(".line-kind");
    kind.textContent = labels.kinds.text;
    kind.hidden = utterance.kind !== "text";
    const badge = line.querySelector(".line-status");
    badge.className = `badge badge-${status} line-status`;
    badge.textContent = labels.statuses[status] || status;
    badge.hidden = status === "completed";
    line.querySelector(".line-text").textContent = utterance.text || "";
    const error = line.querySelector(".line-error");
    error.textContent = utterance.error || "";
    error.hidden = !utterance.error;
  }
}

// Guarded so that node's unit tests can import lineIndex without a DOM.
const list = typeof document === "undefined" ? null : document.querySelector(".transcript[data-live-url]");
if (list) new LiveTranscript(list).connect();
