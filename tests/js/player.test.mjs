import assert from "node:assert/strict";
import { test } from "node:test";

import { lineAt, partAt } from "../../static/history/player.js";

const T = Date.parse("2026-11-29T10:00:00Z");
// Two sessions: 0–60 s and 120–150 s.
const parts = [{ start: T, durationMs: 60000 }, { start: T + 120000, durationMs: 30000 }];

test("a time falls in the part of the session it was said in, at its offset there", () => {
  assert.deepEqual(partAt(parts, T + 5000), { index: 0, offsetMs: 5000 });
  assert.deepEqual(partAt(parts, T + 125500), { index: 1, offsetMs: 5500 });
  assert.deepEqual(partAt(parts, T), { index: 0, offsetMs: 0 });
  assert.equal(partAt(parts, T + 90000), null); // between sessions: not recorded
  assert.equal(partAt(parts, T - 1), null);
  assert.equal(partAt(parts, NaN), null);
});

test("the line heard is the latest said by then, within the part playing", () => {
  const times = [T + 1000, T + 8000, T + 20000, NaN, T + 121000];
  assert.equal(lineAt(times, T + 500, T, T + 60000), -1); // nothing said yet
  assert.equal(lineAt(times, T + 9000, T, T + 60000), 1);
  assert.equal(lineAt(times, T + 59000, T, T + 60000), 2);
  assert.equal(lineAt(times, T + 120500, T + 120000, T + 150000), -1); // not a line of the first session
  assert.equal(lineAt(times, T + 122000, T + 120000, T + 150000), 4);
});
