/**
 * The AudioWorklet processor of the browser SDK, registered as `multipa-pcm`.
 * On the audio thread: downmix each 128-sample block, resample it to 16 kHz,
 * convert to PCM16 and post whole frames (transferred ArrayBuffers, little-endian
 * on every platform a browser runs on) to the node's port. It outputs silence.
 *
 * processorOptions: `{frameSamples}` (samples per posted frame at 16 kHz).
 * Port messages in: `{type: "reset"}` drops a partial frame.
 */
import { Framer, Resampler, TARGET_RATE, downmix, floatToPcm16 } from "./pcm.js";

class MultipaPcmProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { frameSamples = 640 } = options.processorOptions || {};
    this.resampler = new Resampler(sampleRate, TARGET_RATE); // sampleRate: the context's, a global here
    this.framer = new Framer(frameSamples);
    this.port.onmessage = (event) => {
      if (event.data && event.data.type === "reset") this.framer.reset();
    };
  }

  process(inputs) {
    const input = inputs[0];
    if (input && input.length > 0) {
      const pcm = floatToPcm16(this.resampler.process(downmix(input)));
      for (const frame of this.framer.push(pcm)) this.port.postMessage(frame.buffer, [frame.buffer]);
    }
    return true; // keep running while the microphone is connected
  }
}

registerProcessor("multipa-pcm", MultipaPcmProcessor);
