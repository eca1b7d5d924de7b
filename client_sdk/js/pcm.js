/**
 * Pure audio helpers of the browser SDK: downmix, resample, convert to PCM16,
 * cut into frames. No DOM, no Web Audio: the AudioWorklet (pcm-worklet.js)
 * runs them on the audio thread, and `node --test` runs them in the tests.
 *
 * @module pcm
 */

/** The rate the SDK streams at: the model's own rate, so the server never resamples. */
export const TARGET_RATE = 16000;

function gcd(a, b) {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * Average the channels of one block into a mono signal.
 *
 * @param {Float32Array[]} channels - one array per channel, all the same length
 * @returns {Float32Array} the mono block (the first channel itself when there is one)
 */
export function downmix(channels) {
  if (channels.length === 1) return channels[0];
  const out = new Float32Array(channels[0].length);
  for (const channel of channels) {
    for (let i = 0; i < out.length; i++) out[i] += channel[i];
  }
  for (let i = 0; i < out.length; i++) out[i] /= channels.length;
  return out;
}

/**
 * Convert float samples (-1..1) to signed 16-bit, clipping what is outside.
 *
 * @param {Float32Array} samples
 * @returns {Int16Array}
 */
export function floatToPcm16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i] || 0)); // NaN becomes 0
    out[i] = Math.round(s < 0 ? s * 32768 : s * 32767);
  }
  return out;
}

/**
 * A streaming band-limited resampler: windowed-sinc interpolation (Blackman
 * window) with the cut-off below the lower of the two Nyquist frequencies, so
 * downsampling 48 kHz to 16 kHz does not fold 8-24 kHz into the speech band
 * the way dropping samples would. Rates with a small common divisor (48000,
 * 44100, 32000, 22050, ...) use a precomputed polyphase table; output sample n
 * sits exactly at input time n * inRate / outRate, with integer bookkeeping,
 * so there is no drift however long the stream. Every output is normalised by
 * its tap sum: a constant input gives that constant out.
 */
export class Resampler {
  /**
   * @param {number} inRate - input sample rate in Hz (an integer)
   * @param {number} [outRate=16000] - output sample rate in Hz (an integer)
   * @param {object} [options]
   * @param {number} [options.zeroCrossings=32] - sinc lobes on each side: longer is sharper and slower
   * @param {number} [options.rolloff=0.92] - cut-off as a fraction of the lower Nyquist frequency
   */
  constructor(inRate, outRate = TARGET_RATE, { zeroCrossings = 32, rolloff = 0.92 } = {}) {
    if (!Number.isInteger(inRate) || !Number.isInteger(outRate) || inRate <= 0 || outRate <= 0) {
      throw new RangeError(`sample rates must be positive integers, not ${inRate} and ${outRate}`);
    }
    this.inRate = inRate;
    this.outRate = outRate;
    const g = gcd(inRate, outRate);
    this._up = outRate / g; // output n is at input position n * down / up
    this._down = inRate / g;
    this._identity = inRate === outRate;
    const cutoff = (0.5 * rolloff * Math.min(inRate, outRate)) / inRate; // cycles per input sample
    this._cutoff = cutoff;
    this._halfWidth = zeroCrossings / (2 * cutoff); // in input samples
    this._taps = Math.ceil(this._halfWidth); // K: offsets -K+1 .. K around the base sample
    this._table = this._up <= 4096 ? this._buildTable() : null;
    // input not yet consumed, led by K-1 zeros of history so output 0 is centred on input 0
    this._buf = new Float32Array(4096 + 2 * this._taps);
    this._len = this._taps - 1;
    this._pos = this._taps - 1; // base input index of the next output
    this._phase = 0; // its fractional offset, in units of 1/up
  }

  _kernel(d) {
    // d: distance in input samples from the output's position
    const x = d / this._halfWidth;
    if (x <= -1 || x >= 1) return 0;
    const window = 0.42 + 0.5 * Math.cos(Math.PI * x) + 0.08 * Math.cos(2 * Math.PI * x);
    const t = 2 * this._cutoff * d;
    const sinc = t === 0 ? 1 : Math.sin(Math.PI * t) / (Math.PI * t);
    return window * sinc;
  }

  _weights(phase, into) {
    const K = this._taps;
    const frac = phase / this._up;
    let sum = 0;
    for (let j = -K + 1; j <= K; j++) {
      const w = this._kernel(j - frac);
      into[j + K - 1] = w;
      sum += w;
    }
    for (let i = 0; i < 2 * K; i++) into[i] /= sum;
    return into;
  }

  _buildTable() {
    const table = [];
    for (let p = 0; p < this._up; p++) table.push(this._weights(p, new Float32Array(2 * this._taps)));
    return table;
  }

  /**
   * Resample the next block of the stream.
   *
   * @param {Float32Array} input - the next samples at inRate (any length, may be empty)
   * @returns {Float32Array} every output sample that the input so far determines
   */
  process(input) {
    if (this._identity) return Float32Array.from(input);
    const K = this._taps;
    if (this._len + input.length > this._buf.length) {
      const bigger = new Float32Array(2 * (this._len + input.length));
      bigger.set(this._buf.subarray(0, this._len));
      this._buf = bigger;
    }
    this._buf.set(input, this._len);
    this._len += input.length;
    const buf = this._buf;
    const out = [];
    const scratch = this._table ? null : new Float32Array(2 * K);
    while (this._pos + K < this._len) {
      const w = this._table ? this._table[this._phase] : this._weights(this._phase, scratch);
      const first = this._pos - K + 1;
      let acc = 0;
      for (let i = 0; i < 2 * K; i++) acc += buf[first + i] * w[i];
      out.push(acc);
      this._phase += this._down;
      this._pos += Math.floor(this._phase / this._up);
      this._phase %= this._up;
    }
    // keep only the history the next outputs need
    const keep = this._pos - K + 1;
    if (keep > 0) {
      buf.copyWithin(0, keep, this._len);
      this._len -= keep;
      this._pos -= keep;
    }
    return Float32Array.from(out);
  }
}

/**
 * Collects PCM16 samples and hands them out in frames of a fixed size.
 */
export class Framer {
  /**
   * @param {number} frameSamples - samples per frame (e.g. 640: 40 ms at 16 kHz)
   */
  constructor(frameSamples) {
    if (!Number.isInteger(frameSamples) || frameSamples <= 0) throw new RangeError(`frame size must be a positive integer, not ${frameSamples}`);
    this.frameSamples = frameSamples;
    this._frame = new Int16Array(frameSamples);
    this._fill = 0;
  }

  /**
   * @param {Int16Array} samples
   * @returns {Int16Array[]} the frames completed by these samples (each a fresh array)
   */
  push(samples) {
    const frames = [];
    let i = 0;
    while (i < samples.length) {
      const n = Math.min(this.frameSamples - this._fill, samples.length - i);
      this._frame.set(samples.subarray(i, i + n), this._fill);
      this._fill += n;
      i += n;
      if (this._fill === this.frameSamples) {
        frames.push(this._frame);
        this._frame = new Int16Array(this.frameSamples);
        this._fill = 0;
      }
    }
    return frames;
  }

  /** Drop a partial frame (after a reconnect, say). */
  reset() {
    this._fill = 0;
  }
}
