import type { AttentionDims, Device } from '../device.js';
import { hostLlamaOps } from './host-llama-ops.js';

/** Shapes of one attention call (the Device's {@link AttentionDims}). */
export type LlamaAttentionDims = AttentionDims;

/** The op names the model needs from the device. */
export const LLAMA_OP_NAMES = [
  'embedding',
  'embeddingBackward',
  'rmsNorm',
  'rmsNormBackward',
  'rope',
  'attention',
  'attentionBackward',
  'swiglu',
  'swigluBackward',
  'add',
  'addBias',
  'biasBackward',
  'crossEntropy',
  'argmaxRows',
  'sum',
] as const satisfies readonly (keyof Device)[];

/**
 * The Llama ops as the model calls them: the {@link Device}'s own methods (every shape is taken from the
 * tensors; see each method), or their host versions for the ops named in BADAM_LLAMA_HOST_OPS.
 */
export type LlamaOps = Pick<Device, (typeof LLAMA_OP_NAMES)[number]>;

/**
 * The ops for `device`: its own kernels, except any named in `hostOps` (default: the environment variable
 * BADAM_LLAMA_HOST_OPS, a comma list of op names or `all`), which run on the host: the tensors are read, the op computed in fp32 in
 * JavaScript and the result written back rounded to its dtype. That is slow, meant for tests, small
 * models, and for ruling a kernel in or out when a model's numbers look wrong on one device.
 */
export function llamaOpsOf(
  device: Device,
  hostOps: readonly string[] = (process.env.BADAM_LLAMA_HOST_OPS ?? '').split(',').filter((s) => s !== ''),
): LlamaOps {
  const host = hostLlamaOps();
  const ops = {} as Record<keyof LlamaOps, unknown>;
  for (const name of LLAMA_OP_NAMES) {
    const onHost = hostOps.includes('all') || hostOps.includes(name);
    ops[name] = onHost ? host[name] : device[name].bind(device);
  }
  return ops as LlamaOps;
}
