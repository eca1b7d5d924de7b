/**
 * MultiPA Live browser SDK: stream the microphone to a `multipa-server` and
 * receive pronunciation feedback for every turn the learner speaks.
 *
 * A plain ES module, no build step: `import { MultipaClient } from "https://HOST/sdk/multipa.js"`.
 * The microphone is captured with an AudioWorklet (pcm-worklet.js, loaded from
 * beside this file), resampled to 16 kHz PCM16 with a band-limited filter, and
 * sent in 40 ms binary frames over the `multipa.v1` websocket protocol
 * (docs/protocol.md) with `realtime: true`.
 *
 * @example
 * const client = new MultipaClient({ apiKey: "KEY" });
 * client.addEventListener("turn.assessed", (e) => console.log(e.detail.assessment.transcript));
 * client.addEventListener("state", (e) => console.log(e.detail.state));
 * await client.start();   // from a click handler: browsers start audio only after a gesture
 * // ... the learner talks ...
 * await client.stop();    // resolves with the session.ended summary
 *
 * @module multipa
 */

import { TARGET_RATE } from "./pcm.js";

export const PROTOCOL_VERSION = "multipa.v1";

/** The protocol's server events, each dispatched as a CustomEvent of that name with the message as `detail`. */
export const EVENT_TYPES = Object.freeze(["session.started", "turn.started", "turn.ended", "turn.assessed", "turn.failed", "session.ended", "error", "pong"]);

/** The score aspects this SDK knows, in display order (multipa_core/aspects.py; `completeness`: closed turns only). */
export const SENTENCE_ASPECTS = Object.freeze(["accuracy", "fluency", "prosody", "completeness", "total"]);
export const WORD_ASPECTS = Object.freeze(["accuracy", "stress", "total"]);
const WORD_TIMES = new Set(["start_ms", "end_ms"]); // a word's only numbers that are not scores

/**
 * The aspect scores of a `sentence` or a word object as `[name, value]` pairs: the known
 * aspects present, in `known`'s order, then any other (a newer server's, docs/protocol.md),
 * in the order they came. Every number there is an aspect score except a word's times;
 * anything that is not a number is left out, so this never throws on what a server adds.
 * @param {object} scores - `assessment.sentence` or one of `assessment.words`
 * @param {readonly string[]} [known=SENTENCE_ASPECTS] - WORD_ASPECTS for a word
 * @returns {Array<[string, number]>}
 */
export function aspectScores(scores, known = SENTENCE_ASPECTS) {
  const isScore = ([name, value]) => typeof value === "number" && Number.isFinite(value) && !WORD_TIMES.has(name);
  const entries = Object.entries(scores ?? {}).filter(isScore);
  const byName = new Map(entries);
  return [...known.filter((name) => byName.has(name)).map((name) => [name, byName.get(name)]), ...entries.filter(([name]) => !known.includes(name))];
}

/**
 * Client states, dispatched as a `state` event with `detail: {state, previous}`.
 * - `idle`: before start()
 * - `connecting`: opening the microphone and the connection (also while reconnecting)
 * - `listening`: streaming, no turn waiting for feedback
 * - `assessing`: streaming, at least one finished turn waiting for its feedback
 * - `stopping`: stop() called: microphone released, waiting for the last feedback
 * - `closed`: done (after stop(), a fatal error, or when reconnecting gave up)
 */
export const STATES = Object.freeze(["idle", "connecting", "listening", "assessing", "stopping", "closed"]);

// close codes after which a new connection would only fail the same way
const FINAL_CLOSE_CODES = new Set([1000, 1008, 1009]);

/** The stream endpoint of the server this module was loaded from (`/sdk/multipa.js` -> `/v1/stream`). */
function defaultUrl() {
  const url = new URL("../v1/stream", import.meta.url);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

/**
 * Streams the microphone to a MultiPA Live server; an EventTarget.
 *
 * Events (all CustomEvents; read `event.detail`):
 * - every protocol event by its type: `session.started`, `turn.started`, `turn.ended`,
 *   `turn.assessed`, `turn.failed`, `session.ended`, `error`, `pong`: detail is the server's message;
 *   a diagnosing server adds to `turn.assessed` per phone `ipa`, `heard`, `error`, `nbest`, per word
 *   `errors`, and per turn `assessment.feedback` (ranked sentences) and `assessment.diagnosis`;
 * - `state`: `{state, previous}` (see STATES);
 * - `reconnecting`: `{attempt, delayMs, closeCode}` before each new connection attempt.
 *
 * Client-side failures are `error` events too, shaped like the server's (`{code, message, fatal}`):
 * `microphone_unavailable` (no permission or no device), `audio_unsupported` (no AudioWorklet:
 * an old browser, or a page that is not a secure context), `unauthorized` (the server refused
 * the API key), `connection_failed` (no server there) and `connection_lost` (reconnecting gave up).
 * Turns that were waiting for feedback when a connection dropped end with a `turn.failed`
 * of code `connection_lost`, so every `turn.started` still gets exactly one terminal event.
 */
export class MultipaClient extends EventTarget {
  /**
   * @param {object} [options]
   * @param {string} [options.url] - stream endpoint, `ws(s)://HOST/v1/stream`; defaults to the server this module came from
   * @param {string} [options.apiKey] - sent as `?api_key=` (browsers cannot set websocket headers)
   * @param {"open"|"closed"} [options.mode="open"] - `closed`: every turn needs a reference(); see docs/protocol.md
   * @param {object} [options.vad] - VAD options of session.start (`hangover_ms`, `enabled`, ...)
   * @param {object} [options.metadata] - free-form, logged with the session on the server
   * @param {number} [options.frameMs=40] - audio per websocket frame, 20 to 100
   * @param {MediaTrackConstraints} [options.audio] - getUserMedia audio constraints; by default
   *   echo cancellation and gain control on, noise suppression off (it alters the very speech sounds being scored)
   * @param {MediaStream} [options.stream] - use this stream instead of opening the microphone (not stopped by stop())
   * @param {number} [options.maxReconnects=6] - attempts after a dropped connection before giving up
   * @param {number} [options.backoffMs=500] - first reconnect delay; doubles each attempt, up to 8 s, with jitter
   * @param {number} [options.stopTimeoutMs=120000] - how long stop() waits for the remaining feedback
   */
  constructor(options = {}) {
    super();
    const frameMs = options.frameMs ?? 40;
    if (!(frameMs >= 20 && frameMs <= 100)) throw new RangeError(`frameMs must be 20 to 100, not ${frameMs}`);
    this.options = {
      url: options.url ?? defaultUrl(),
      apiKey: options.apiKey || "",
      mode: options.mode ?? "open",
      vad: options.vad,
      metadata: options.metadata ?? {},
      frameSamples: Math.round((frameMs * TARGET_RATE) / 1000),
      audio: options.audio ?? { channelCount: 1, echoCancellation: true, autoGainControl: true, noiseSuppression: false },
      stream: options.stream ?? null,
      maxReconnects: options.maxReconnects ?? 6,
      backoffMs: options.backoffMs ?? 500,
      stopTimeoutMs: options.stopTimeoutMs ?? 120000,
    };
    /** @type {string} the current state, one of STATES */
    this.state = "idle";
    /** @type {string|null} the server's id of the current session */
    this.sessionId = null;
    /** @type {number} audio frames dropped while no session was open (during a reconnect) */
    this.droppedFrames = 0;
    this._ws = null;
    this._open = false; // session.started seen on the current connection
    this._pending = new Map(); // turn_id -> turn.started/ended message, awaiting feedback
    this._ended = new Set(); // turn ids that ended and await feedback
    this._attempt = 0;
    this._stopping = null;
    this._summary = null;
    this._references = []; // turn.reference texts to re-send after a reconnect
  }

  /** @type {MediaStream|null} the audio being streamed (null before start() and after stop()) */
  get mediaStream() {
    return this._stream ?? null;
  }

  /** @type {AudioContext|null} the context that captures it (closed by stop()) */
  get audioContext() {
    return this._context ?? null;
  }

  /**
   * Open the microphone and the connection, and start streaming. Call it from a
   * user gesture (a click): browsers keep audio suspended until one.
   *
   * @returns {Promise<object>} the session.started message
   * @throws {Error} with `code` (microphone_unavailable, audio_unsupported, unauthorized,
   *   connection_failed, or a server error code); an `error` event is dispatched too
   */
  async start() {
    if (this.state !== "idle") throw new Error(`start() once per client (state: ${this.state})`);
    this._setState("connecting");
    try {
      if (!globalThis.AudioContext || !globalThis.AudioWorkletNode) {
        throw codedError("audio_unsupported", "this browser has no AudioWorklet; it needs a current browser and a secure context (https or localhost)");
      }
      this._context = new AudioContext(); // created inside the gesture, so it may run
      const workletLoaded = this._context.audioWorklet.addModule(new URL("./pcm-worklet.js", import.meta.url));
      const stream = this.options.stream ?? (await openMicrophone(this.options.audio));
      this._stream = stream;
      await workletLoaded;
      if (this._stopping) {
        if (stream !== this.options.stream) for (const track of stream.getTracks()) track.stop();
        throw codedError("stopped", "stop() was called while starting");
      }
      this._node = new AudioWorkletNode(this._context, "multipa-pcm", { numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1], processorOptions: { frameSamples: this.options.frameSamples } });
      this._node.port.onmessage = (event) => this._sendAudio(event.data);
      this._source = this._context.createMediaStreamSource(this._stream);
      this._source.connect(this._node);
      this._node.connect(this._context.destination); // silent; keeps the node in the rendering graph
      await this._context.resume();
      return await this._connect();
    } catch (err) {
      const error = err.code ? err : codedError("audio_unsupported", `the audio graph could not be set up (${err.name}: ${err.message})`);
      if (!this._stopping) this._fail(error);
      throw error;
    }
  }

  /**
   * The sentence the learner is about to say (closed response), for the turn in
   * progress or the next one; see `turn.reference` in docs/protocol.md.
   *
   * @param {string} text - 1 to 1000 characters
   */
  reference(text) {
    this._send({ type: "turn.reference", text });
  }

  /** End the turn in progress now (push-to-talk release). */
  endTurn() {
    this._send({ type: "turn.end" });
  }

  /**
   * An application-level round trip; the answer is a `pong` event.
   *
   * @param {string} [id]
   */
  ping(id) {
    this._send(id === undefined ? { type: "ping" } : { type: "ping", id });
  }

  /**
   * Stop cleanly: release the microphone at once, send session.end, wait for the
   * feedback of the turns in flight and `session.ended`, then close the
   * connection and the AudioContext. Safe to call in any state, and more than once.
   *
   * @returns {Promise<object|null>} the session.ended summary (null if the connection was already gone)
   */
  stop() {
    if (!this._stopping) this._stopping = this._stop();
    return this._stopping;
  }

  async _stop() {
    this._releaseAudio();
    clearTimeout(this._retryTimer);
    const ws = this._ws;
    if (ws && ws.readyState === WebSocket.OPEN && this._open && !this._summary) {
      this._setState("stopping");
      const closed = new Promise((resolve) => ws.addEventListener("close", resolve, { once: true }));
      ws.send(JSON.stringify({ type: "session.end" }));
      const timeout = new Promise((resolve) => setTimeout(resolve, this.options.stopTimeoutMs));
      await Promise.race([closed, timeout]);
    }
    this._closeSocket(1000);
    this._failPending("connection_lost", "the client stopped before this turn's feedback arrived");
    this._setState("closed");
    return this._summary;
  }

  // ---- connection -------------------------------------------------------

  _connect() {
    return new Promise((resolve, reject) => {
      const url = new URL(this.options.url);
      if (this.options.apiKey) url.searchParams.set("api_key", this.options.apiKey);
      const ws = new WebSocket(url.href);
      ws.binaryType = "arraybuffer";
      this._ws = ws;
      this._open = false;
      let settled = false;
      ws.onopen = () => {
        const start = { type: "session.start", protocol: PROTOCOL_VERSION, sample_rate: TARGET_RATE, realtime: true, mode: this.options.mode, metadata: this.options.metadata };
        if (this.options.vad) start.vad = this.options.vad;
        ws.send(JSON.stringify(start));
      };
      ws.onmessage = (event) => {
        if (typeof event.data !== "string") return;
        let message;
        try {
          message = JSON.parse(event.data);
        } catch {
          return; // the server only sends JSON; ignore anything else
        }
        if (message.type === "session.started" && !settled) {
          settled = true;
          this._open = true;
          this._attempt = 0;
          this.sessionId = message.session_id;
          this._node?.port.postMessage({ type: "reset" });
          for (const text of this._references) ws.send(JSON.stringify({ type: "turn.reference", text }));
          this._references = [];
          this._handle(message);
          resolve(message);
          return;
        }
        if (message.type === "error" && message.fatal && !settled) {
          settled = true; // start() rejects and _fail() dispatches the error
          reject(codedError(message.code, message.message, true));
          return;
        }
        this._handle(message);
      };
      ws.onclose = async (event) => {
        if (!settled) {
          settled = true;
          if (this._stopping) reject(codedError("stopped", "stop() was called while connecting"));
          else reject(await this._diagnose(url)); // browsers hide the handshake's HTTP status: ask the server why
          return;
        }
        if (this._ws !== ws) return;
        this._open = false;
        this._closed(event.code);
      };
    });
  }

  _closed(code) {
    if (this._stopping || this.state === "closed") return;
    if (this._summary || FINAL_CLOSE_CODES.has(code) || this.options.maxReconnects <= 0) {
      // the session ended on the server's side (a fatal error, idle timeout): nothing to resume
      this._releaseAudio();
      this._failPending("connection_lost", `the connection closed (code ${code}) before this turn's feedback arrived`);
      this._setState("closed");
      return;
    }
    this._failPending("connection_lost", `the connection dropped (code ${code}) before this turn's feedback arrived`);
    this._reconnect(code);
  }

  _reconnect(closeCode) {
    this._attempt += 1;
    if (this._attempt > this.options.maxReconnects) {
      this._fail(codedError("connection_lost", `the connection dropped and ${this.options.maxReconnects} attempts to reconnect failed`));
      return;
    }
    const base = Math.min(8000, this.options.backoffMs * 2 ** (this._attempt - 1));
    const delayMs = Math.round(base * (0.75 + 0.5 * Math.random()));
    this._setState("connecting");
    this._emit("reconnecting", { attempt: this._attempt, delayMs, closeCode });
    this._retryTimer = setTimeout(() => {
      if (this._stopping) return;
      this._connect().catch((err) => {
        if (this._stopping) return;
        if (err.code === "connection_failed") this._reconnect(1006); // not back yet: try again later
        else this._fail(err); // refused (a key revoked meanwhile, a fatal error): retrying cannot help
      });
    }, delayMs);
  }

  async _diagnose(url) {
    // a plain GET of the stream path answers 401 for a refused key (426 otherwise)
    try {
      const http = new URL(url.href);
      http.protocol = url.protocol === "wss:" ? "https:" : "http:";
      const response = await fetch(http.href, { cache: "no-store" });
      if (response.status === 401) return codedError("unauthorized", "the server refused the API key (missing or wrong)", true);
    } catch {
      // unreachable, or another origin without CORS: no more to learn
    }
    const where = new URL(url.href);
    where.search = "";
    return codedError("connection_failed", `could not connect to ${where.href}: is the server running there?`);
  }

  _closeSocket(code) {
    const ws = this._ws;
    this._ws = null;
    this._open = false;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(code);
  }

  // ---- messages ---------------------------------------------------------

  _handle(message) {
    switch (message.type) {
      case "turn.started":
        this._pending.set(message.turn_id, message);
        break;
      case "turn.ended":
        this._pending.set(message.turn_id, message);
        this._ended.add(message.turn_id);
        break;
      case "turn.assessed":
      case "turn.failed":
        this._pending.delete(message.turn_id);
        this._ended.delete(message.turn_id);
        break;
      case "session.ended":
        this._summary = message;
        break;
    }
    this._emit(message.type, message);
    if (this.state === "listening" || this.state === "assessing" || (this.state === "connecting" && this._open)) {
      this._setState(this._ended.size > 0 ? "assessing" : "listening");
    }
  }

  _send(message) {
    if (this._ws && this._open && this._ws.readyState === WebSocket.OPEN) this._ws.send(JSON.stringify(message));
    else if (message.type === "turn.reference") this._references.push(message.text); // sent once the session opens
  }

  _sendAudio(buffer) {
    if (this._ws && this._open && this._ws.readyState === WebSocket.OPEN && !this._stopping) this._ws.send(buffer);
    else this.droppedFrames += 1; // real time cannot wait: audio during a reconnect is lost
  }

  _failPending(code, message) {
    for (const [turnId, last] of this._pending) {
      this._emit("turn.failed", { type: "turn.failed", turn_id: turnId, start_ms: last.start_ms, end_ms: last.end_ms ?? last.start_ms, code, message, session_id: this.sessionId });
    }
    this._pending.clear();
    this._ended.clear();
  }

  _fail(error) {
    this._emit("error", { type: "error", code: error.code, message: error.message, fatal: true });
    this._releaseAudio();
    this._closeSocket(1000);
    this._failPending("connection_lost", error.message);
    this._setState("closed");
  }

  _releaseAudio() {
    if (this._node) {
      this._node.port.onmessage = null;
      this._node.disconnect();
    }
    this._source?.disconnect();
    if (this._stream && this._stream !== this.options.stream) for (const track of this._stream.getTracks()) track.stop();
    if (this._context && this._context.state !== "closed") this._context.close().catch(() => {});
    this._node = this._source = this._stream = null;
  }

  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._emit("state", { state, previous });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

async function openMicrophone(constraints) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw codedError("audio_unsupported", "no microphone access here: getUserMedia needs a secure context (https or localhost)");
  }
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: constraints, video: false });
  } catch (err) {
    throw codedError("microphone_unavailable", `the microphone could not be opened (${err.name}: ${err.message})`);
  }
}

function codedError(code, message, fatal = true) {
  const error = new Error(message);
  error.code = code;
  error.fatal = fatal;
  return error;
}
