// The page's controls and status; chat.js passes the handlers in.
// Phases: idle → starting → live ⇄ lost (→ starting …) → ended → starting …

export function formatClock(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const [h, m, s] = [Math.floor(total / 3600), Math.floor(total / 60) % 60, total % 60];
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

const BADGE = {
  idle: ["Not started", "badge-ended"],
  starting: ["Connecting", "badge-pending"],
  live: ["Live", "badge-active"],
  lost: ["Paused", "badge-pending"],
  ended: ["Ended", "badge-ended"],
};

const camel = (id) => id.replace(/-(\w)/g, (_, c) => c.toUpperCase());

export class Controls {
  constructor(handlers) {
    const root = document.getElementById("voice");
    // el.voiceAlertTitle is #voice-alert-title.
    this.el = Object.fromEntries([root, ...root.querySelectorAll("[id]")].map((node) => [camel(node.id), node]));
    Object.assign(this, { handlers, phase: "idle", pressing: false, alertActions: {}, startBlocked: false });
    this.bind();
    this.showMode();
  }

  // server_vad | semantic_vad | manual (push-to-talk)
  get mode() {
    const checked = document.querySelector("[name=mode]:checked");
    return checked?.value === "push-to-talk" ? "manual" : this.el.detectionSelect.value;
  }

  get voice() {
    return this.el.voiceSelect.value;
  }

  bind() {
    const { el, handlers } = this;
    const on = (node, type, listener) => node.addEventListener(type, listener);
    const clicks = { start: "start", stop: "stop", continue: "resume", alertContinue: "resume", interrupt: "interrupt" };
    Object.entries(clicks).forEach(([id, name]) => on(el[id], "click", () => handlers[name]()));
    on(el.alertReload, "click", () => location.reload());
    on(el.mute, "click", () => {
      const muted = el.mute.getAttribute("aria-pressed") !== "true";
      this.showMute(muted);
      handlers.mute(muted);
    });
    on(el.composer, "submit", (event) => {
      event.preventDefault();
      const text = el.message.value.trim();
      if (!text || this.phase !== "live") return;
      el.message.value = "";
      handlers.send(text);
    });
    on(el.settings, "change", (event) => {
      if (event.target === el.voiceSelect) return;
      this.showMode();
      handlers.mode(this.mode);
    });
    on(document, "keydown", (event) => {
      if (event.key === "Escape" && !el.interrupt.disabled) handlers.interrupt();
    });
    this.bindPushToTalk(on);
  }

  // Hold the button or Space (left alone in fields and on other controls).
  bindPushToTalk(on) {
    const { el } = this;
    const pushable = () => this.phase === "live" && this.mode === "manual";
    const press = (pressing) => {
      this.pressing = pressing;
      el.ptt.setAttribute("aria-pressed", String(pressing));
      pressing ? this.handlers.pushStart() : this.handlers.pushEnd();
    };
    const down = () => !this.pressing && pushable() && press(true);
    const up = () => this.pressing && press(false);
    this.releasePushToTalk = up;
    on(el.ptt, "pointerdown", (event) => {
      if (event.button !== 0) return;
      el.ptt.setPointerCapture(event.pointerId);
      down();
    });
    ["pointerup", "pointercancel", "lostpointercapture"].forEach((type) => on(el.ptt, type, up));
    on(el.ptt, "contextmenu", (event) => event.preventDefault()); // a long press on touch screens
    const isSpace = (event) => event.code === "Space" && (event.target === el.ptt || !event.target.closest?.("input, select, textarea, button, a, [contenteditable]"));
    on(document, "keydown", (event) => {
      if (!isSpace(event) || !pushable()) return;
      event.preventDefault();
      if (!event.repeat) down();
    });
    on(document, "keyup", (event) => {
      if (event.code === "Space" && this.pressing) {
        event.preventDefault();
        up();
      }
    });
    on(window, "blur", up); // a key released in another window never comes back
  }

  showMode() {
    const manual = this.mode === "manual";
    this.el.detectionField.hidden = manual;
    this.el.ptt.hidden = this.el.pttHelp.hidden = !manual;
    this.el.voice.dataset.mode = manual ? "push-to-talk" : "hands-free";
    this.refresh();
  }

  showMute(muted) {
    this.el.mute.setAttribute("aria-pressed", String(muted));
    this.el.mute.textContent = muted ? "Unmute" : "Mute";
  }

  setPhase(phase) {
    this.phase = this.el.voice.dataset.phase = phase;
    if (phase !== "live") this.releasePushToTalk();
    const [label, cls] = BADGE[phase];
    this.el.sessionBadge.textContent = label;
    this.el.sessionBadge.className = `badge ${cls}`;
    this.refresh();
  }

  refresh() {
    const { el, phase } = this;
    const live = phase === "live";
    const inSession = live || phase === "starting" || phase === "lost";
    el.start.hidden = inSession;
    el.start.disabled = phase === "starting" || this.startBlocked;
    el.stop.hidden = !inSession;
    el.continue.hidden = phase !== "lost";
    el.voiceSelect.disabled = inSession;
    if (el.recordAudio) el.recordAudio.disabled = inSession; // applies from the next Start
    el.mute.disabled = !live || this.mode === "manual";
    el.ptt.disabled = el.message.disabled = el.send.disabled = !live;
    if (!live) el.interrupt.disabled = true;
    el.sessionTimer.hidden = !(live || phase === "lost");
    // The alert's own Continue only while the main one is hidden ("ends soon").
    const { resume, login, reload } = this.alertActions;
    el.alertContinue.hidden = !resume || !el.continue.hidden;
    el.alertLogin.hidden = !login;
    el.alertReload.hidden = !reload;
    el.voiceAlertActions.hidden = el.alertContinue.hidden && !login && !reload;
  }

  // While the server cannot issue keys, or a rate limit runs out.
  blockStart(blocked) {
    this.startBlocked = blocked;
    this.refresh();
  }

  setInterruptible(on) {
    this.el.interrupt.disabled = !(on && this.phase === "live");
  }

  setStatus(text) {
    if (this.el.voiceStatus.textContent !== text) this.el.voiceStatus.textContent = text;
  }

  setNote(scope, text) {
    this.el[`${scope}Note`].textContent = text;
  }

  // tone: error | warning | info
  showAlert({ title, message, tone = "error", resume, login, reload }) {
    const { el } = this;
    el.voiceAlertBox.className = `alert alert-${tone}`;
    el.voiceAlertBox.setAttribute("role", tone === "info" ? "status" : "alert");
    el.voiceAlertTitle.textContent = title;
    el.voiceAlertMessage.textContent = message;
    el.voiceAlert.hidden = false;
    this.alertActions = { resume, login, reload };
    this.refresh();
  }

  clearAlert() {
    this.el.voiceAlert.hidden = true;
  }

  setTimer(ms, leftMs = null) {
    this.el.sessionClock.textContent = formatClock(ms);
    this.el.sessionLeft.hidden = leftMs == null;
    if (leftMs != null) this.el.sessionLeft.textContent = `${formatClock(leftMs)} left`;
  }

  setContinueLabel(text) {
    this.el.continue.textContent = text;
  }

  setSaveState({ pending, state, retryInMs }) {
    const retry = retryInMs > 0 ? `, retrying in ${Math.ceil(retryInMs / 1000)} s` : "";
    let [kind, text] = ["saved", ""];
    if (state === "denied") [kind, text] = ["error", `Signed out — ${pending} waiting to be saved`];
    else if (state === "gone") [kind, text] = ["error", "The conversation was deleted; this transcript is not saved"];
    else if (state === "crowded") [kind, text] = ["offline", `Too many tabs open to save — ${pending} waiting${retry}`];
    else if (state === "offline" || state === "connecting") [kind, text] = ["offline", pending ? `Saving paused — ${pending} waiting${retry}` : `Reconnecting to save${retry}`];
    else if (pending) [kind, text] = ["saving", `Saving… ${pending} waiting`];
    else if (state !== "idle") text = "All saved"; // online, finished, closed
    Object.assign(this.el.saveState.dataset, { state: text ? kind : "idle", pending: String(pending) });
    this.el.saveState.textContent = text;
  }

  showConversationLink(url) {
    this.el.conversationLink.href = url || "#";
    this.el.conversationLink.hidden = !url;
  }

  // Keep the focus on a control that still exists.
  focusMain() {
    const active = document.activeElement;
    if (active && active !== document.body && !active.hidden && !active.disabled) return;
    const { el } = this;
    (this.phase === "live" ? el.stop : el.start.hidden ? el.continue : el.start).focus();
  }
}
