// The browser SDK's audio helpers (client_sdk/js/pcm.js) under Node's test runner:
// `node --test tests/client/test_pcm.mjs` (run by test_pcm_js.py).
import assert from "node:assert/strict";
import { test } from "node:test";

import { Framer, Resampler, TARGET_RATE, downmix, floatToPcm16 } from "../../client_sdk/js/pcm.js";

const sine = (hz, rate, n, phase = 0) => Float32Array.from({ length: n }, (_, i) => Math.sin(2 * Math.PI * hz * (i / rate) + phase));
const rms = (x) => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);

function resampleInChunks(inRate, input, sizes) {
  const r = new Resampler(inRate);
  const parts = [];
  let i = 0;
  for (let k = 0; i < input.length; k++) {
    const n = sizes[k % sizes.length];
    parts.push(r.process(input.subarray(i, i + n)));
    i += n;
  }
  return Float32Array.from(parts.flatMap((p) => Array.from(p)));
}

test("floatToPcm16 scales, rounds and clips", () => {
  const out = floatToPcm16(Float32Array.from([0, 1, -1, 0.5, -0.5, 2, -2, NaN, 1e-6]));
  assert.deepEqual(Array.from(out), [0, 32767, -32768, 16384, -16384, 32767, -32768, 0, 0]);
});

test("downmix averages the channels", () => {
  assert.deepEqual(Array.from(downmix([Float32Array.from([1, 0.5]), Float32Array.from([0, -0.5])])), [0.5, 0]);
  const mono = Float32Array.from([0.25]);
  assert.equal(downmix([mono]), mono);
});

for (const inRate of [48000, 44100, 32000, 22050]) {
  test(`${inRate} Hz: a 1 kHz tone keeps its amplitude and its phase at 16 kHz`, () => {
    const out = resampleInChunks(inRate, sine(1000, inRate, inRate), [128]);
    // output n sits at time n / 16000: compare with the ideal tone there, past the start-up
    const expected = sine(1000, TARGET_RATE, out.length);
    const error = out.slice(200).map((v, i) => Math.abs(v - expected[i + 200]));
    assert.ok(Math.max(...error) < 0.01, `max error ${Math.max(...error)}`);
    // one second in gives one second out, less the filter's look-ahead
    assert.ok(out.length <= TARGET_RATE && out.length > TARGET_RATE - 40, `${out.length} samples`);
  });
}

test("48 kHz: a 12 kHz tone is filtered out, not folded to 4 kHz as dropping samples would", () => {
  const input = sine(12000, 48000, 48000, 0.3);
  const out = resampleInChunks(48000, input, [128]).slice(200);
  assert.ok(rms(out) < 0.003, `rms ${rms(out)} (the tone's is 0.707)`);
  const naive = input.filter((_, i) => i % 3 === 0);
  assert.ok(rms(naive) > 0.5); // what the filter prevents
});

test("44.1 kHz: 8.5 kHz (above the new Nyquist) is filtered out; 6.5 kHz (in the band) passes whole", () => {
  const level = (hz) => 20 * Math.log10(rms(resampleInChunks(44100, sine(hz, 44100, 44100), [128]).slice(300, -300)) / Math.SQRT1_2);
  assert.ok(level(8500) < -60, `8.5 kHz at ${level(8500)} dB`);
  assert.ok(Math.abs(level(6500)) < 0.1, `6.5 kHz at ${level(6500)} dB`);
});

test("a constant stays that constant (unit gain at 0 Hz)", () => {
  const out = resampleInChunks(44100, new Float32Array(4410).fill(0.5), [128]).slice(100);
  for (const v of out) assert.ok(Math.abs(v - 0.5) < 1e-5, String(v));
});

test("the output does not depend on how the input is cut into blocks", () => {
  const input = Float32Array.from({ length: 20000 }, (_, i) => Math.sin(i * 0.01) * 0.5 + ((i * 7919) % 13) / 100);
  for (const inRate of [48000, 44100]) {
    const whole = resampleInChunks(inRate, input, [input.length]);
    const blocks = resampleInChunks(inRate, input, [128, 1, 77, 513, 0 + 3]);
    assert.equal(blocks.length, whole.length);
    for (let i = 0; i < whole.length; i++) assert.ok(Math.abs(whole[i] - blocks[i]) < 1e-6, `sample ${i}`);
  }
});

test("16 kHz in is passed through; bad rates are refused", () => {
  const x = Float32Array.from([0.1, 0.2, 0.3]);
  assert.deepEqual(Array.from(new Resampler(16000).process(x)), Array.from(x));
  assert.throws(() => new Resampler(44100.5), RangeError);
  assert.throws(() => new Resampler(0), RangeError);
});

test("Framer hands out whole frames in order and keeps the rest", () => {
  const framer = new Framer(4);
  const pushed = (values) => framer.push(Int16Array.from(values)).map((f) => Array.from(f));
  assert.deepEqual(pushed([1, 2, 3]), []);
  assert.deepEqual(pushed([4, 5, 6, 7, 8, 9, 10]), [[1, 2, 3, 4], [5, 6, 7, 8]]);
  framer.reset();
  assert.deepEqual(pushed([11, 12, 13, 14]), [[11, 12, 13, 14]]);
  assert.throws(() => new Framer(0), RangeError);
});
