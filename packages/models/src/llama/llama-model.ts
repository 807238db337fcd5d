import {
  BadamOptionError,
  type LlamaConfig,
  ropeInverseFrequencies,
  ropeTables,
  SeededRandom,
} from '@badam/core';
import type { NamedVariable } from '@badam/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { maskedCrossEntropy } from '../ops/cross-entropy.js';
import { embeddingLookup } from '../ops/embedding.js';
import { gaussian } from '../ops/gaussian.js';
import { createLoraAdapter, type LoraAdapter, withAdapters } from '../ops/lora-adapter.js';
import { rmsNorm } from '../ops/rms-norm.js';

/** Options of {@link LlamaForCausalLM}. */
export interface LlamaModelOptions {
  /** Seed of the random initialisation. Default 0. */
  seed?: number;
  /** Standard deviation of the normal initialisation of matrices (Hugging Face's initializer_range). Default 0.02. */
  initializerRange?: number;
  /** Skip the random initialisation (all zeros), when weights are loaded right after. Default false. */
  skipInitialization?: boolean;
  /** Recompute each layer's activations in backward instead of keeping them. Default false. */
  gradientCheckpointing?: boolean;
  /** Longest sequence the RoPE tables cover. Default min(max_position_embeddings, 4096). */
  maxPositions?: number;
}

/** LoRA adapters as peft adds them. */
export interface LoraConfig {
  /** r. */
  rank: number;
  /** Scaling numerator: adapters are scaled by alpha / r. */
  alpha: number;
  /** Dropout on the adapter's input during training. Default 0. */
  dropout?: number;
  /** Module names to adapt (`q_proj`, `v_proj`, ... or `all` for every linear layer in the decoder layers). */
  targetModules: readonly string[] | 'all';
}

interface Linear {
  readonly name: string;
  readonly weight: tf.Variable;
  readonly bias: tf.Variable | undefined;
  lora: (LoraAdapter & { dropout: number }) | undefined;
}

interface DecoderLayer {
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly o: Linear;
  readonly gate: Linear;
  readonly up: Linear;
  readonly down: Linear;
  readonly inputNorm: tf.Variable;
  readonly postNorm: tf.Variable;
}

/** A batch for causal-LM training: token ids, labels (-100 = not trained on) and the padding mask, all [batch, seq]. */
export interface CausalLmBatch {
  readonly inputIds: tf.Tensor2D;
  readonly labels: tf.Tensor2D;
  readonly attentionMask?: tf.Tensor2D;
}

type Resolve = (v: tf.Variable) => tf.Tensor;
const identity: Resolve = (v) => v;
/** The Llama linear layers LoRA can adapt (`--lora_target` names). */
export const LLAMA_LORA_TARGETS = [
  'q_proj',
  'k_proj',
  'v_proj',
  'o_proj',
  'gate_proj',
  'up_proj',
  'down_proj',
] as const;

let instances = 0;

/**
 * A Llama-family causal language model on TensorFlow.js with Hugging Face's parameter names
 * (`model.embed_tokens`, `model.layers.N.self_attn.{q,k,v,o}_proj`, `mlp.{gate,up,down}_proj`,
 * `input_layernorm`, `post_attention_layernorm`, `model.norm`, `lm_head`): RMSNorm, rotary position
 * embeddings (with llama3 / linear scaling), grouped-query attention, SwiGLU, causal and padding masks,
 * cross-entropy with ignore index -100, per-layer gradient checkpointing, and LoRA adapters named like
 * peft's (`lora_A`, `lora_B`) so BAdam's LoRA mode applies.
 *
 * @example
 * ```ts
 * const model = new LlamaForCausalLM(llamaConfigFromHf(configJson));
 * const optimizer = new BlockOptimizer({ baseOptimizer: new AdamW({ learningRate: 1e-4 }), namedParameters: model.namedParameters });
 * optimizer.minimize(() => model.loss({ inputIds, labels, attentionMask }));
 * ```
 */
export class LlamaForCausalLM {
  readonly config: LlamaConfig;
  /** Recompute each layer's activations in backward. */
  gradientCheckpointing: boolean;
  readonly maxPositions: number;
  private readonly prefix: string;
  private readonly embed: tf.Variable;
  private readonly layers: DecoderLayer[] = [];
  private readonly norm: tf.Variable;
  private readonly lmHead: tf.Variable | undefined;
  private readonly cos: tf.Tensor2D;
  private readonly sin: tf.Tensor2D;
  private readonly causalMasks = new Map<number, tf.Tensor>();
  private readonly ordered: Array<[string, tf.Variable]> = [];
  private loraSettings: LoraConfig | undefined;
  private dropoutCalls = 0;

  constructor(config: LlamaConfig, options: LlamaModelOptions = {}) {
    this.config = config;
    if (config.hiddenSize !== config.numHeads * config.headDim && config.numHeads * config.headDim <= 0) {
      throw new BadamOptionError('config', config.hiddenSize, 'a hidden size with numHeads * headDim > 0');
    }
    if (config.headDim % 2 !== 0)
      throw new BadamOptionError('headDim', config.headDim, 'an even number (RoPE rotates pairs)');
    this.gradientCheckpointing = options.gradientCheckpointing ?? false;
    this.maxPositions = options.maxPositions ?? Math.min(config.maxPositionEmbeddings, 4096);
    this.prefix = `llama${instances++}`;
    const rng = SeededRandom.fromSeed(options.seed ?? 0);
    const std = options.initializerRange ?? 0.02;
    const skip = options.skipInitialization ?? false;
    const make = (name: string, shape: number[], init: 'normal' | 'ones' | 'zeros') => {
      const size = shape.reduce((a, b) => a * b, 1);
      const values = new Float32Array(size);
      if (!skip) {
        if (init === 'ones') values.fill(1);
        else if (init === 'normal') for (let i = 0; i < size; i++) values[i] = std * gaussian(rng);
      }
      // In a tidy: the initial tensor is freed once the variable holds its data (it leaked 1.8 MB per model).
      const variable = tf.tidy(() =>
        tf.variable(tf.tensor(values, shape, 'float32'), true, `${this.prefix}/${name}`),
      );
      this.ordered.push([name, variable]);
      return variable;
    };
    const h = config.hiddenSize;
    const q = config.numHeads * config.headDim;
    const kv = config.numKeyValueHeads * config.headDim;
    const linear = (name: string, out: number, inp: number, bias: boolean): Linear => ({
      name,
      weight: make(`${name}.weight`, [out, inp], 'normal'),
      bias: bias ? make(`${name}.bias`, [out], 'zeros') : undefined,
      lora: undefined,
    });
    this.embed = make('model.embed_tokens.weight', [config.vocabSize, h], 'normal');
    for (let i = 0; i < config.numLayers; i++) {
      const p = `model.layers.${i}`;
      this.layers.push({
        q: linear(`${p}.self_attn.q_proj`, q, h, config.qkvBias),
        k: linear(`${p}.self_attn.k_proj`, kv, h, config.qkvBias),
        v: linear(`${p}.self_attn.v_proj`, kv, h, config.qkvBias),
        o: linear(`${p}.self_attn.o_proj`, h, q, config.outputBias),
        gate: linear(`${p}.mlp.gate_proj`, config.intermediateSize, h, config.mlpBias),
        up: linear(`${p}.mlp.up_proj`, config.intermediateSize, h, config.mlpBias),
        down: linear(`${p}.mlp.down_proj`, h, config.intermediateSize, config.mlpBias),
        inputNorm: make(`${p}.input_layernorm.weight`, [h], 'ones'),
        postNorm: make(`${p}.post_attention_layernorm.weight`, [h], 'ones'),
      });
    }
    this.norm = make('model.norm.weight', [h], 'ones');
    this.lmHead = config.tieWordEmbeddings
      ? undefined
      : make('lm_head.weight', [config.vocabSize, h], 'normal');
    const { cos, sin } = ropeTables(
      this.maxPositions,
      ropeInverseFrequencies(config.headDim, config.ropeTheta, config.ropeScaling),
    );
    this.cos = tf.keep(tf.tensor2d(cos, [this.maxPositions, config.headDim / 2]));
    this.sin = tf.keep(tf.tensor2d(sin, [this.maxPositions, config.headDim / 2]));
  }

  /**
   * The parameters as `[Hugging Face name, variable]` in model order (`named_parameters()` order), with LoRA
   * adapters right after the weight they adapt. Tied `lm_head` is not listed (it is the embedding).
   */
  get namedParameters(): NamedVariable[] {
    return withAdapters(this.ordered, (name) => this.linearOfWeight(name));
  }

  /** The variable of parameter `name`. */
  parameter(name: string): tf.Variable {
    const found = this.namedParameters.find(([n]) => n === name);
    if (found === undefined) throw new BadamOptionError('parameter name', name, 'a parameter of this model');
    return found[1];
  }

  /** Total parameter count (adapters included). */
  get parameterCount(): number {
    return this.namedParameters.reduce((s, [, v]) => s + v.size, 0);
  }

  /** Logits [batch, seq, vocab] for `inputIds` [batch, seq]; `attentionMask` (1 = token, 0 = padding) masks keys. */
  forward(
    inputIds: tf.Tensor2D,
    attentionMask?: tf.Tensor2D,
    options: { training?: boolean } = {},
  ): tf.Tensor3D {
    return tf.tidy(() => {
      const [b, t] = inputIds.shape;
      const hidden = this.hiddenStates(inputIds, attentionMask, options.training ?? false);
      return tf.reshape(this.logitsOf(hidden), [b, t, this.config.vocabSize]) as tf.Tensor3D;
    });
  }

  /**
   * Mean next-token cross-entropy: position i predicts label i + 1 (labels are shifted inside, as Hugging
   * Face does), positions labelled -100 excluded.
   */
  loss(batch: CausalLmBatch): tf.Scalar {
    return tf.tidy(() => {
      const [b, t] = batch.inputIds.shape;
      if (t < 2)
        throw new BadamOptionError(
          'inputIds',
          `sequence length ${t}`,
          'at least 2 tokens for next-token loss',
        );
      const hidden = tf.reshape(this.hiddenStates(batch.inputIds, batch.attentionMask, true), [
        b,
        t,
        this.config.hiddenSize,
      ]);
      const shifted = tf.reshape(tf.slice(hidden, [0, 0, 0], [b, t - 1, this.config.hiddenSize]), [
        b * (t - 1),
        this.config.hiddenSize,
      ]);
      const labels = tf.reshape(tf.slice(batch.labels, [0, 1], [b, t - 1]), [-1]) as tf.Tensor1D;
      return maskedCrossEntropy(
        this.logitsOf(shifted) as tf.Tensor2D,
        tf.cast(labels, 'int32') as tf.Tensor1D,
      );
    });
  }

  /** Adds LoRA adapters (B zero, A Kaiming-uniform as peft) to the target modules of every layer. */
  addLora(config: LoraConfig, seed = 0): void {
    if (this.loraSettings !== undefined)
      throw new BadamOptionError('addLora', 'called twice', 'one LoRA configuration per model');
    if (!Number.isSafeInteger(config.rank) || config.rank < 1)
      throw new BadamOptionError('lora rank', config.rank, 'an integer >= 1');
    if (!(config.alpha > 0)) throw new BadamOptionError('lora alpha', config.alpha, 'a number > 0');
    const dropout = config.dropout ?? 0;
    if (!(dropout >= 0 && dropout < 1))
      throw new BadamOptionError('lora dropout', dropout, 'a number in [0, 1)');
    const targets = config.targetModules === 'all' ? [...LLAMA_LORA_TARGETS] : [...config.targetModules];
    for (const t of targets) {
      if (!(LLAMA_LORA_TARGETS as readonly string[]).includes(t)) {
        throw new BadamOptionError(
          'lora target module',
          t,
          `one of ${LLAMA_LORA_TARGETS.join(', ')} or "all"`,
        );
      }
    }
    const rng = SeededRandom.fromSeed(seed);
    for (const layer of this.layers) {
      for (const linear of this.linearsOf(layer)) {
        if (!targets.some((t) => linear.name.endsWith(`.${t}`))) continue;
        linear.lora = {
          ...createLoraAdapter(rng, linear.weight, linear.name, this.prefix, config.rank, config.alpha),
          dropout,
        };
      }
    }
    this.loraSettings = { ...config, dropout, targetModules: targets };
  }

  /** The LoRA configuration, when adapters were added. */
  get lora(): LoraConfig | undefined {
    return this.loraSettings;
  }

  /** Folds every adapter into its weight (`W += alpha / r * B A`) and removes the adapters. */
  mergeLora(): void {
    for (const layer of this.layers) {
      for (const linear of this.linearsOf(layer)) {
        if (linear.lora === undefined) continue;
        const { a, b, scale } = linear.lora;
        tf.tidy(() => linear.weight.assign(tf.add(linear.weight, tf.mul(tf.matMul(b, a), scale))));
        a.dispose();
        b.dispose();
        linear.lora = undefined;
      }
    }
    this.loraSettings = undefined;
  }

  /** Frees every variable and table of the model. */
  dispose(): void {
    for (const [, v] of this.namedParameters) v.dispose();
    this.cos.dispose();
    this.sin.dispose();
    for (const m of this.causalMasks.values()) m.dispose();
    this.causalMasks.clear();
  }

  private linearsOf(layer: DecoderLayer): Linear[] {
    return [layer.q, layer.k, layer.v, layer.o, layer.gate, layer.up, layer.down];
  }

  private linearOfWeight(weightName: string): Linear | undefined {
    const match = /^model\.layers\.(\d+)\./.exec(weightName);
    if (match === null || !weightName.endsWith('.weight')) return undefined;
    return this.linearsOf(this.layers[Number(match[1])]!).find((l) => `${l.name}.weight` === weightName);
  }

  private logitsOf(hidden: tf.Tensor): tf.Tensor {
    return tf.matMul(hidden as tf.Tensor2D, (this.lmHead ?? this.embed) as tf.Tensor2D, false, true);
  }

  /** Hidden states after the final norm, [batch * seq, hidden]. */
  private hiddenStates(
    inputIds: tf.Tensor2D,
    attentionMask: tf.Tensor2D | undefined,
    training: boolean,
  ): tf.Tensor2D {
    const [b, t] = inputIds.shape;
    if (t > this.maxPositions) {
      throw new BadamOptionError(
        'sequence length',
        t,
        `at most ${this.maxPositions} (the RoPE table; raise maxPositions)`,
      );
    }
    let x: tf.Tensor = embeddingLookup(
      this.embed as tf.Tensor2D,
      tf.reshape(tf.cast(inputIds, 'int32'), [-1]) as tf.Tensor1D,
    );
    const mask = this.attentionBias(b, t, attentionMask);
    for (const layer of this.layers) {
      x =
        this.gradientCheckpointing && training
          ? this.checkpointedLayer(layer, x, mask, b, t)
          : this.decoderLayer(layer, x, mask, b, t, identity, training);
    }
    return rmsNorm(x, this.norm, this.config.rmsNormEps) as tf.Tensor2D;
  }

  /** Additive attention bias [batch or 1, 1, seq, seq]: -1e9 above the diagonal and on padded keys. */
  private attentionBias(b: number, t: number, attentionMask: tf.Tensor2D | undefined): tf.Tensor {
    let causal = this.causalMasks.get(t);
    if (causal === undefined) {
      causal = tf.keep(
        tf.tidy(() =>
          tf.reshape(tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([t, t]), -1, 0)), -1e9), [1, 1, t, t]),
        ),
      );
      this.causalMasks.set(t, causal);
    }
    if (attentionMask === undefined) return causal;
    const padding = tf.reshape(tf.mul(tf.sub(1, tf.cast(attentionMask, 'float32')), -1e9), [b, 1, 1, t]);
    return tf.add(causal, padding);
  }

  private linear(x: tf.Tensor, l: Linear, resolve: Resolve, training: boolean): tf.Tensor {
    let y = tf.matMul(x as tf.Tensor2D, resolve(l.weight) as tf.Tensor2D, false, true) as tf.Tensor;
    if (l.bias !== undefined) y = tf.add(y, resolve(l.bias));
    if (l.lora !== undefined) {
      const { a, b, scale, dropout } = l.lora;
      const input = training && dropout > 0 ? tf.dropout(x, dropout, undefined, this.dropoutCalls++) : x;
      const low = tf.matMul(input as tf.Tensor2D, resolve(a) as tf.Tensor2D, false, true);
      y = tf.add(y, tf.mul(tf.matMul(low, resolve(b) as tf.Tensor2D, false, true), scale));
    }
    return y;
  }

  private rope(x: tf.Tensor, t: number): tf.Tensor {
    const half = this.config.headDim / 2;
    const [b, h] = x.shape as [number, number, number, number];
    const cos = tf.slice(this.cos, [0, 0], [t, half]);
    const sin = tf.slice(this.sin, [0, 0], [t, half]);
    const x1 = tf.slice(x, [0, 0, 0, 0], [b, h, t, half]);
    const x2 = tf.slice(x, [0, 0, 0, half], [b, h, t, half]);
    return tf.concat([tf.sub(tf.mul(x1, cos), tf.mul(x2, sin)), tf.add(tf.mul(x2, cos), tf.mul(x1, sin))], 3);
  }

  /** One decoder layer on x [batch * seq, hidden]; `resolve` lets gradient checkpointing substitute weights. */
  private decoderLayer(
    layer: DecoderLayer,
    x: tf.Tensor,
    mask: tf.Tensor,
    b: number,
    t: number,
    resolve: Resolve,
    training: boolean,
  ): tf.Tensor {
    const { numHeads: heads, numKeyValueHeads: kvHeads, headDim: d, rmsNormEps: eps } = this.config;
    const split = (y: tf.Tensor, n: number) => tf.transpose(tf.reshape(y, [b, t, n, d]), [0, 2, 1, 3]);
    const h = rmsNorm(x, resolve(layer.inputNorm), eps);
    const q = this.rope(split(this.linear(h, layer.q, resolve, training), heads), t);
    let k = this.rope(split(this.linear(h, layer.k, resolve, training), kvHeads), t);
    let v = split(this.linear(h, layer.v, resolve, training), kvHeads);
    if (kvHeads !== heads) {
      // Grouped-query attention: each key/value head serves heads / kvHeads query heads (HF's repeat_kv).
      const repeat = heads / kvHeads;
      // Rank-4 tile: tfjs has no tile gradient for rank 5.
      const expand = (y: tf.Tensor) =>
        tf.reshape(tf.tile(tf.reshape(y, [b, kvHeads, 1, t * d]), [1, 1, repeat, 1]), [b, heads, t, d]);
      k = expand(k);
      v = expand(v);
    }
    const scores = tf.add(
      tf.mul(tf.matMul(q as tf.Tensor4D, k as tf.Tensor4D, false, true), 1 / Math.sqrt(d)),
      mask,
    );
    const attention = tf.matMul(tf.softmax(scores), v as tf.Tensor4D);
    const merged = tf.reshape(tf.transpose(attention, [0, 2, 1, 3]), [b * t, heads * d]);
    const afterAttention = tf.add(x, this.linear(merged, layer.o, resolve, training));
    const h2 = rmsNorm(afterAttention, resolve(layer.postNorm), eps);
    const gate = this.linear(h2, layer.gate, resolve, training);
    const swiglu = tf.mul(tf.mul(gate, tf.sigmoid(gate)), this.linear(h2, layer.up, resolve, training));
    return tf.add(afterAttention, this.linear(swiglu, layer.down, resolve, training));
  }

  /** A decoder layer whose activations are recomputed in backward (only its input is kept). */
  private checkpointedLayer(
    layer: DecoderLayer,
    x: tf.Tensor,
    mask: tf.Tensor,
    b: number,
    t: number,
  ): tf.Tensor {
    const variables: tf.Variable[] = [];
    for (const l of this.linearsOf(layer)) {
      variables.push(l.weight);
      if (l.bias) variables.push(l.bias);
      if (l.lora) variables.push(l.lora.a, l.lora.b);
    }
    variables.push(layer.inputNorm, layer.postNorm);
    const trainable = variables.filter((v) => v.trainable);
    const run = tf.customGrad(((...args: unknown[]) => {
      const save = args.pop() as tf.GradSaveFunc;
      const [xIn, maskIn] = args as [tf.Tensor, tf.Tensor];
      save([xIn, maskIn]);
      const value = tf.tidy(() => this.decoderLayer(layer, xIn, maskIn, b, t, identity, true));
      return {
        value,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [xs, ms] = saved as [tf.Tensor, tf.Tensor];
          const recompute = (xx: tf.Tensor, ...ws: tf.Tensor[]) => {
            const substitute = new Map<tf.Variable, tf.Tensor>(trainable.map((v, i) => [v, ws[i]!]));
            const out = this.decoderLayer(layer, xx, ms, b, t, (v) => substitute.get(v) ?? v, true);
            return tf.sum(tf.mul(out, dy)) as tf.Scalar;
          };
          // A gradient computation nested in the outer backward: tfjs's engine keeps one `activeTape`, which
          // the inner computation replaces and then clears, so the outer one is put back afterwards.
          const state = (tf.engine() as unknown as { state: { activeTape: unknown } }).state;
          const outerTape = state.activeTape;
          try {
            const grads = tf.grads(recompute)([xs, ...trainable]);
            return [grads[0]!, tf.zerosLike(ms), ...grads.slice(1)];
          } finally {
            state.activeTape = outerTape;
          }
        },
      };
    }) as never) as (...inputs: tf.Tensor[]) => tf.Tensor;
    return run(x, mask, ...trainable);
  }
}
