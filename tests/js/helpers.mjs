// Test doubles shared by the node tests: a Storage over a Map, a controllable WebSocket and
// manual timers.

export class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  get length() {
    return this.map.size;
  }
  key(i) {
    return [...this.map.keys()][i] ?? null;
  }
  getItem(key) {
    return this.map.has(key) ? this.map.get(key) : null;
  }
  setItem(key, value) {
    this.map.set(key, String(value));
  }
  removeItem(key) {
    this.map.delete(key);
  }
}

export class FakeWebSocket {
  static instances = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeWebSocket.instances.push(this);
  }
  static last() {
    return FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
  }
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close() {
    this.readyState = 3;
  }
  // server side
  open() {
    this.readyState = 1;
    this.onopen && this.onopen();
  }
  message(payload) {
    this.onmessage && this.onmessage({ data: JSON.stringify(payload) });
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose && this.onclose({ code });
  }
  frames() {
    return this.sent.filter((m) => m.type === "event").map((m) => m.seq);
  }
}

export class ManualTimers {
  constructor() {
    this.now = 0;
    this.next = 1;
    this.pending = new Map();
  }
  setTimeout(fn, ms) {
    const id = this.next++;
    this.pending.set(id, { fn, at: this.now + ms });
    return id;
  }
  clearTimeout(id) {
    this.pending.delete(id);
  }
  setInterval(fn, ms) {
    return this.setTimeout(fn, ms); // one shot is enough for these tests
  }
  clearInterval(id) {
    this.pending.delete(id);
  }
  advance(ms) {
    this.now += ms;
    for (const [id, t] of [...this.pending]) {
      if (t.at <= this.now) {
        this.pending.delete(id);
        t.fn();
      }
    }
  }
}
