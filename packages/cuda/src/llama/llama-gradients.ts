import { BadamOptionError } from '@badam/core';
import type { DeviceTensor } from '../device-tensor.js';
import type { DeviceLlamaDType } from './llama-net.js';

/**
 * The dtype a parameter's gradient buffer may have: fp32 always; for a weight matrix of a layer or the untied
 * head also the model's 16-bit dtype (its GEMMs accumulate into it; the fused AdamW widens it exactly). The
 * embedding's gradient is fp32 (a scatter-add of rows), as are the norms' and biases' (column sums).
 */
export function gradientDtypesOf(
  name: string,
  shape: readonly number[],
  dtype: DeviceLlamaDType,
): DeviceLlamaDType[] {
  const matrix = shape.length === 2 && !name.startsWith('model.embed_tokens.');
  return matrix && dtype !== 'float32' ? [dtype, 'float32'] : ['float32'];
}

/**
 * The gradient buffers of one step's trainable parameters, fetched from `gradientOf` when first asked for (a
 * backend such as CudaBlockBackend allocates a buffer on its first request, so a layer's gradients exist
 * only from its backward on), and checked once against the parameter.
 */
export class GradientBuffers {
  private readonly fetched = new Map<string, DeviceTensor>();
  private readonly names: ReadonlySet<string>;

  constructor(
    private readonly weights: ReadonlyMap<string, DeviceTensor>,
    trainable: readonly string[],
    private readonly gradientOf: (name: string) => DeviceTensor,
    private readonly dtype: DeviceLlamaDType,
    tiedHead: boolean,
  ) {
    for (const name of trainable) {
      if (!weights.has(name))
        throw new BadamOptionError(
          'trainable parameter',
          name,
          'a parameter name of this model (see parameters())',
          tiedHead && name === 'lm_head.weight'
            ? 'the head is tied: train model.embed_tokens.weight instead'
            : undefined,
        );
    }
    this.names = new Set(trainable);
  }

  /** Whether `name` trains this step. */
  has(name: string): boolean {
    return this.names.has(name);
  }

  /** The trainable names, in the order given. */
  get trainable(): string[] {
    return [...this.names];
  }

  /** The buffer of `name` (fetched now if it was not yet), or null when `name` does not train. */
  get(name: string): DeviceTensor | null {
    if (!this.names.has(name)) return null;
    let grad = this.fetched.get(name);
    if (grad === undefined) {
      const w = this.weights.get(name)!;
      grad = this.gradientOf(name);
      const allowed = gradientDtypesOf(name, w.shape, this.dtype);
      if (!allowed.includes(grad.dtype as DeviceLlamaDType) || grad.numel !== w.numel)
        throw new BadamOptionError(
          `gradientOf(${JSON.stringify(name)})`,
          `a ${grad.dtype} tensor of ${grad.numel} values`,
          `a ${allowed.join(' or ')} tensor of ${w.numel} values`,
        );
      this.fetched.set(name, grad);
    }
    return grad;
  }

  /** Fetches the buffers of every trainable name `select` picks (a layer's, the head's), in model order. */
  fetch(select: (name: string) => boolean): void {
    for (const name of this.names) if (select(name)) this.get(name);
  }
}
