// node --test tests/js/ — the ordering rule of transcript lines (both pages).
import assert from "node:assert/strict";
import { test } from "node:test";

import { lineIndex } from "../../static/common/line.js";

const list = (...positions) => ({
  querySelectorAll: () => positions.map((position) => ({ dataset: { position: String(position) } })),
});

test("a new line goes after every line with a lower or equal position", () => {
  assert.equal(lineIndex(list(), 0), 0);
  assert.equal(lineIndex(list(0, 1, 2), 3), 3);
  assert.equal(lineIndex(list(0, 1, 2), 2), 3);
});

test("a line whose item entered earlier goes before the later ones, whenever it arrives", () => {
  assert.equal(lineIndex(list(0, 2, 3), 1), 1);
  assert.equal(lineIndex(list(1, 2), 0), 0);
});

test("positions compare as numbers, not strings", () => {
  assert.equal(lineIndex(list(2, 9, 10, 11), 3), 1);
});
