import { llamaConfigFromHf } from '@badam/core';
import { afterAll, describe, expect, it } from 'vitest';
import { Device, DeviceLlama, type DeviceTensor, type GemmShape } from '../src/index.js';
import { llamaStepGemms } from '../src/llama/step-gemms.js';

// The device check times the GEMMs of the 8B and TinyLlama steps from llamaStepGemms' list; here a real
// step on the CPU device records the GEMMs it issues, and the list must be exactly those, in order.
const device = Device.cpu();
afterAll(() => device.emptyCache());

/** A GEMM's identity: shape, transposes, leading dimensions (packed ones written out), scalars, dtypes. */
function key(s: GemmShape, ab: string, c: string): string {
  const [ta, tb] = [s.transA ?? false, s.transB ?? false];
  const lda = s.lda ?? (ta ? s.m : s.k);
  const ldb = s.ldb ?? (tb ? s.k : s.n);
  const ldc = s.ldc ?? s.n;
  return `${s.m}x${s.n}x${s.k} ${ta ? 'T' : 'N'}${tb ? 'T' : 'N'} ld ${lda}/${ldb}/${ldc} alpha ${s.alpha ?? 1} beta ${s.beta ?? 0} ${ab} -> ${c}`;
}

describe("llamaStepGemms lists a step's GEMMs exactly", () => {
  const config = llamaConfigFromHf({
    model_type: 'llama',
    vocab_size: 131,
    hidden_size: 64,
    intermediate_size: 96,
    num_hidden_layers: 3,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 64,
    tie_word_embeddings: false,
  });
  const blocks: Array<[string, (name: string) => boolean]> = [
    ["the bottom layer (the benchmark's longest backward)", (n) => n.startsWith('model.layers.0.')],
    ['the top layer, the norm and the head', (n) => /^model\.layers\.2\.|^model\.norm|^lm_head/.test(n)],
    ['the embedding', (n) => n.startsWith('model.embed_tokens.')],
  ];
  for (const checkpointing of [true, false])
    for (const [what, select] of blocks) {
      it(`${what}, checkpointing ${checkpointing}`, () => {
        const model = DeviceLlama.create(device, config, {
          dtype: 'bfloat16',
          gradientCheckpointing: checkpointing,
          lossChunkTokens: 9,
        });
        const recorded: string[] = [];
        const gemm = device.gemm.bind(device);
        device.gemm = (a: DeviceTensor, b: DeviceTensor, c: DeviceTensor, shape: GemmShape) => {
          recorded.push(key(shape, a.dtype, c.dtype));
          gemm(a, b, c, shape);
        };
        try {
          const params = model.parameters();
          const trainable = params.filter((p) => select(p.name)).map((p) => p.name);
          const buffers = new Map(
            params.map((p) => [p.name, device.zeros(p.shape, p.gradientDtype ?? 'float32', 'gradients')]),
          );
          const [b, s] = [2, 11];
          const ids = Int32Array.from({ length: b * s }, (_, i) => (i * 5) % 131);
          model.lossAndGradients(
            { batchSize: b, seqLen: s, inputIds: ids, labels: ids },
            trainable,
            (n) => buffers.get(n)!,
          );
          const listed = llamaStepGemms(config, {
            batchSize: b,
            seqLength: s,
            dtype: 'bfloat16',
            gradientCheckpointing: checkpointing,
            trainable,
            lossChunkTokens: 9,
          }).map((g) => key(g.shape, g.ab, g.c));
          expect(listed).toEqual(recorded);
          for (const t of buffers.values()) t.free();
        } finally {
          // Restores the prototype's gemm.
          delete (device as { gemm?: unknown }).gemm;
          model.dispose();
        }
      });
    }
});
