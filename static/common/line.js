// One transcript line as every page draws it: the server's transcript_line.html has the same
// markup (a browser test compares them). `line`: an utterance as the server sends it.

const INSIDE = '<div class="line-meta"><span class="line-speaker"></span><time class="line-time"></time><span class="line-kind"></span><span></span><span class="line-verified"></span></div><p class="line-text"></p><p class="line-error"></p>';

export function fillLine(li, line, labels, timeZone) {
  const { role, status, error, created_at: at } = line;
  li.className = `line line-${role}`;
  // verified: the server's witness saw the line end itself (the voice page's own lines never are).
  // at: when it was said (ISO), for the recording player (static/history/player.js).
  Object.assign(li.dataset, { itemId: line.item_id, position: line.position, status, verified: Boolean(line.verified), at: at || "" });
  li.setAttribute("aria-busy", status === "pending" || status === "live"); // still being said
  const [speaker, time, kind, badge, verified] = li.firstElementChild.children;
  speaker.textContent = labels.roles[role] || role;
  time.dateTime = at || "";
  time.textContent = at ? new Date(at).toLocaleTimeString("en-GB", { hourCycle: "h23", timeZone: timeZone || undefined }) : "";
  Object.assign(kind, { textContent: labels.kinds.text, hidden: line.kind !== "text" });
  Object.assign(badge, { className: `badge badge-${status} line-status`, textContent: labels.statuses[status] || status, hidden: status === "completed" });
  const mark = labels.verified || { mark: "", title: "" };
  Object.assign(verified, { title: mark.title, textContent: mark.mark, hidden: !line.verified });
  li.children[1].textContent = line.text || "";
  Object.assign(li.lastElementChild, { textContent: error || "", hidden: !error });
}

// Before the first line with a greater position: items keep the order they entered in.
export function lineIndex(list, position) {
  const lines = [...list.querySelectorAll(":scope > .line")];
  const index = lines.findIndex((line) => Number(line.dataset.position) > position);
  return index < 0 ? lines.length : index;
}

// A list's lines by item_id: showing one twice changes nothing.
export class LineList {
  constructor(list, labels, { empty, timeZone } = {}) {
    Object.assign(this, { list, labels, empty, timeZone });
  }

  get lines() {
    return this.list.querySelectorAll(":scope > .line");
  }

  show(line) {
    let li = this.find(line.item_id);
    const moved = li?.dataset.position !== String(line.position);
    if (!li) (li = document.createElement("li")).innerHTML = INSIDE;
    fillLine(li, line, this.labels, this.timeZone);
    if (moved) {
      li.remove();
      this.list.insertBefore(li, this.lines[lineIndex(this.list, line.position)] || null);
    }
    this.changed();
  }

  find(id) {
    return this.list.querySelector(`:scope > [data-item-id="${CSS.escape(id)}"]`);
  }

  remove(id) {
    this.find(id)?.remove();
    this.changed();
  }

  clear() {
    this.list.replaceChildren();
    this.changed();
  }

  changed() {
    if (this.empty) this.empty.hidden = this.lines.length > 0;
  }
}
