// Draws a TranscriptModel into the <ol role="log">, touching only the lines an event changed.

const LABEL = { pending: "Transcribing…", live: "Speaking…", failed: "Not transcribed", interrupted: "Interrupted" };

export class TranscriptView {
  constructor({ list, empty, scroller }) {
    Object.assign(this, { list, empty, scroller, nodes: new Map() });
  }

  clear() {
    this.list.replaceChildren();
    this.nodes.clear();
    this.empty.hidden = false;
  }

  update(model, changedIds) {
    if (!changedIds.length) return;
    const s = this.scroller;
    const follow = s.scrollHeight - s.scrollTop - s.clientHeight < 48; // the reader is at the end
    for (const id of changedIds) {
      const line = model.byId.get(id);
      let node = this.nodes.get(id);
      if (!line) {
        node?.remove();
        this.nodes.delete(id);
        continue;
      }
      if (!node) {
        node = document.createElement("li");
        node.className = `line line-${line.role}`;
        node.dataset.itemId = id;
        node.innerHTML = '<div class="line-meta"><span class="line-who"></span><span class="badge line-badge"></span></div><p class="line-text"></p>';
        node.querySelector(".line-who").textContent = line.role === "user" ? "You" : "Assistant";
        this.nodes.set(id, node);
        // Before the first drawn line that comes later in the conversation.
        const later = model.order.slice(model.order.indexOf(id) + 1).map((other) => this.nodes.get(other)).find(Boolean);
        this.list.insertBefore(node, later || null);
      }
      render(node, line);
    }
    this.empty.hidden = this.nodes.size > 0;
    if (follow) s.scrollTop = s.scrollHeight;
  }
}

function render(node, line) {
  const badge = node.querySelector(".line-badge");
  const typed = line.status === "completed" && line.kind === "text" && line.role === "user";
  const label = typed ? "Typed" : LABEL[line.status];
  Object.assign(node.dataset, { status: line.status, kind: line.kind });
  node.classList.toggle("is-partial", line.partial);
  // Screen readers hold announcements back while a line is still being spoken.
  node.setAttribute("aria-busy", String(line.partial || line.status === "pending" || line.status === "live"));
  badge.hidden = !label;
  badge.textContent = label || "";
  badge.className = `badge line-badge${typed ? "" : ` badge-${line.status === "live" ? "active" : line.status}`}`;
  node.querySelector(".line-text").textContent = line.status === "failed" && !line.text
    ? `Could not transcribe this${line.error ? ` (${line.error})` : ""}.`
    : line.text || (line.status === "pending" ? "…" : "");
}
