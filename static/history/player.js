// The recordings of a conversation beside its transcript (templates/includes/recording_player.html,
// on the transcript page and the admin's): the parts (one per session) play in order, a click
// on a line plays the recording from when it was said, and the line being heard is highlighted.
// A line said at `data-at` is at data-at − started_at in the part it falls in (same server clock).

const FOLLOW_PAUSE_MS = 4000; // after the user scrolls, the highlighted line is not scrolled to
const PINNED_MS = 1000;

// parts: [{ start (ms since epoch), durationMs }] in order. The part that holds `at`, or null.
export function partAt(parts, at) {
  const index = parts.findIndex((part) => at >= part.start && at <= part.start + part.durationMs);
  return index < 0 ? null : { index, offsetMs: at - parts[index].start };
}

// times: the lines' times, in the list's order (NaN for a line without one). The line being
// heard at `at` in a part [from, to]: the latest said by then, within the part.
export function lineAt(times, at, from, to = Infinity) {
  let found = -1;
  times.forEach((time, index) => {
    if (time >= from && time <= Math.min(at, to) && (found < 0 || time >= times[found])) found = index;
  });
  return found;
}

export class RecordingPlayer {
  constructor(root, list) {
    this.parts = [...root.querySelectorAll("[data-started-at]")].map((figure) => ({
      figure,
      audio: figure.querySelector("audio"),
      start: Date.parse(figure.dataset.startedAt),
      durationMs: Number(figure.dataset.durationMs) || 0,
    })).filter((part) => part.audio && Number.isFinite(part.start));
    Object.assign(this, { root, list, heard: null, active: null, pinned: null, userScrolledAt: -Infinity });
    this.parts.forEach((part, index) => {
      const { audio } = part;
      // One part at a time; the others' events (a pause's timeupdate) do not move the mark.
      ["play", "seeking"].forEach((type) => audio.addEventListener(type, () => (this.active = part)));
      audio.addEventListener("play", () => this.parts.forEach((other) => other !== part && other.audio.pause()));
      // The next session's part goes on where this one ends.
      audio.addEventListener("ended", () => this.parts[index + 1] && this.play(index + 1, 0));
      if (list) ["timeupdate", "seeked"].forEach((type) => audio.addEventListener(type, () => this.follow(part)));
    });
    if (!this.parts.length || !list) return; // no transcript beside it (the admin's inline): play only
    list.classList.add("is-seekable");
    list.addEventListener("click", (event) => {
      const line = event.target.closest(".line");
      if (!line || event.target.closest("a, button") || String(getSelection?.() || "")) return; // selecting text is not a seek
      this.seekTo(line);
    });
    list.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && event.target.matches?.(".line")) this.seekTo(event.target);
    });
    const scrolled = () => (this.userScrolledAt = performance.now());
    ["wheel", "touchmove"].forEach((type) => addEventListener(type, scrolled, { passive: true }));
    addEventListener("keydown", (event) => /^(Page|Arrow(Up|Down)|Home|End)/.test(event.key) && scrolled());
    this.markLines();
  }

  lines() {
    return [...this.list.querySelectorAll(":scope > .line")];
  }

  // Lines that fall in a recording can be played from: keyboard users reach them too.
  markLines() {
    for (const line of this.lines()) {
      if (line.tabIndex < 0 && partAt(this.parts, Date.parse(line.dataset.at))) {
        line.tabIndex = 0;
        line.title = "Play the recording from here";
      }
    }
  }

  // The clicked line is the one marked for its first second, even when the next one was said
  // within milliseconds of it (a typed message and the start of its answer).
  seekTo(line) {
    const at = Date.parse(line.dataset.at);
    const found = partAt(this.parts, at);
    if (!found) return;
    this.pinned = { line, until: at + PINNED_MS };
    this.highlight(line);
    this.play(found.index, found.offsetMs / 1000);
  }

  play(index, seconds) {
    const { audio } = (this.active = this.parts[index]);
    audio.currentTime = seconds;
    audio.play().catch(() => {}); // refused autoplay: the position is set, the user presses play
  }

  follow(part) {
    if (part !== this.active) return;
    this.markLines(); // the live page may have added lines
    const lines = this.lines();
    const at = part.start + part.audio.currentTime * 1000;
    if (this.pinned && at < this.pinned.until && at >= this.pinned.until - PINNED_MS - 1000) return this.highlight(this.pinned.line);
    this.pinned = null;
    const index = lineAt(lines.map((line) => Date.parse(line.dataset.at)), at, part.start, part.start + part.durationMs);
    this.highlight(lines[index] || null);
  }

  highlight(line) {
    if (line === this.heard) return;
    this.heard?.classList.remove("is-heard");
    this.heard?.removeAttribute("aria-current");
    this.heard = line;
    if (!line) return;
    line.classList.add("is-heard");
    line.setAttribute("aria-current", "true");
    if (performance.now() - this.userScrolledAt > FOLLOW_PAUSE_MS) line.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }
}

if (typeof document !== "undefined") {
  const root = document.querySelector("[data-recordings]");
  if (root) new RecordingPlayer(root, document.querySelector(".transcript"));
}
