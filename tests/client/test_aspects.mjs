// The browser SDK's aspect helper (client_sdk/js/multipa.js) under Node's test runner:
// `node --test tests/client/test_aspects.mjs` (run by test_pcm_js.py). Aspects a newer
// server adds (docs/protocol.md) are kept after the known ones, and nothing a server sends throws.
import assert from "node:assert/strict";
import { test } from "node:test";

import { SENTENCE_ASPECTS, WORD_ASPECTS, aspectScores } from "../../client_sdk/js/multipa.js";

test("sentence scores: the known aspects in display order, then the unknown ones", () => {
  const sentence = { total: 8, rhythm: 7.25, accuracy: 7.9, prosody: 8.1, fluency: 8.4 };
  assert.deepEqual(aspectScores(sentence, SENTENCE_ASPECTS), [["accuracy", 7.9], ["fluency", 8.4], ["prosody", 8.1], ["total", 8], ["rhythm", 7.25]]);
});

test("word scores: times, text, flags and lists are not aspects", () => {
  const word = { text: "this", start_ms: 210, end_ms: 420, accuracy: 8.7, stress: 9.6, total: 8.8, intonation: 6.5, needs_improvement: false, phones: [], errors: null, stress_check: { ok: true } };
  assert.deepEqual(aspectScores(word, WORD_ASPECTS), [["accuracy", 8.7], ["stress", 9.6], ["total", 8.8], ["intonation", 6.5]]);
});

test("whatever a server sends, it never throws", () => {
  assert.deepEqual(aspectScores({ completeness: null, total: "8", accuracy: Number.NaN }), []);
  assert.deepEqual(aspectScores(null), []);
  assert.deepEqual(aspectScores(undefined), []);
  assert.deepEqual(aspectScores({ completeness: 6 }), [["completeness", 6]]);
});
