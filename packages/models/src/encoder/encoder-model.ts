import { BadamOptionError, parametersOf, SeededRandom } from '@badam/core';
import type { NamedVariable } from '@badam/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import type { LoraConfig } from '../llama/llama-model.js';
import { embeddingLookup } from '../ops/embedding.js';
import { gaussian } from '../ops/gaussian.js';
import { layerNorm } from '../ops/layer-norm.js';
import { createLoraAdapter, type LoraAdapter, withAdapters } from '../ops/lora-adapter.js';
import type { EncoderConfig } from './encoder-config.js';

/** Options of {@link EncoderClassifier}. */
export interface EncoderModelOptions {
  /** Seed of the random initialisation (and of dropout). Default 0. */
  seed?: number;
  /** Standard deviation of the normal initialisation (Hugging Face's initializer_range). Default 0.02. */
  initializerRange?: number;
  /** Skip the random initialisation (all zeros), when weights are loaded right after. Default false. */
  skipInitialization?: boolean;
}

/** A batch for an encoder: token ids, padding mask and (BERT) segment ids, [rows, seq]; labels [examples]. */
export interface EncoderBatch {
  readonly inputIds: tf.Tensor2D;
  readonly attentionMask?: tf.Tensor2D;
  readonly tokenTypeIds?: tf.Tensor2D;
  /** Class index per example (int32). For multiple choice: the index of the right choice. */
  readonly labels?: tf.Tensor1D;
  /** Multiple choice: rows per example (the rows of one example are consecutive). */
  readonly numChoices?: number;
}

interface Linear {
  readonly name: string;
  readonly weight: tf.Variable;
  readonly bias: tf.Variable;
  lora: LoraAdapter | undefined;
}

interface EncoderLayer {
  readonly query: Linear;
  readonly key: Linear;
  readonly value: Linear;
  readonly attentionOutput: Linear;
  readonly attentionNorm: [tf.Variable, tf.Variable];
  readonly intermediate: Linear;
  readonly output: Linear;
  readonly outputNorm: [tf.Variable, tf.Variable];
}

const LORA_MODULES = ['query', 'key', 'value', 'dense'] as const;

let instances = 0;

/**
 * A BERT-style encoder (RoBERTa or BERT) with a task head, on TensorFlow.js, with Hugging Face's parameter
 * names — `roberta.embeddings.{word,position,token_type}_embeddings`, `roberta.encoder.layer.N.attention.
 * self.{query,key,value}`, `attention.output.{dense,LayerNorm}`, `intermediate.dense`,
 * `output.{dense,LayerNorm}`, `roberta.pooler.dense`, and the head of `RobertaForSequenceClassification`
 * (`classifier.dense`, `classifier.out_proj`) or `…ForMultipleChoice` (`classifier`) — so BAdam's
 * `encoder.layer.N.` blocks and Hugging Face checkpoints line up. RoBERTa's positions start after the
 * padding id, GELU is the exact (erf) one, padded keys are masked, dropout follows config.json in training.
 *
 * @example
 * ```ts
 * const model = new EncoderClassifier(encoderConfigFromHf(configJson, { head: 'sequence-classification', numLabels: 3 }));
 * const loss = model.loss({ inputIds, attentionMask, labels });
 * ```
 */
export class EncoderClassifier {
  readonly config: EncoderConfig;
  private readonly prefix: string;
  private readonly ordered: Array<[string, tf.Variable]> = [];
  private readonly byName = new Map<string, tf.Variable>();
  private readonly layers: EncoderLayer[] = [];
  private readonly linears = new Map<string, Linear>();
  private loraSettings: LoraConfig | undefined;
  private readonly seed: number;
  private dropoutCalls = 0;
  private dropoutStep = 0;

  constructor(config: EncoderConfig, options: EncoderModelOptions = {}) {
    if (config.head !== 'sequence-classification' && config.head !== 'multiple-choice') {
      throw new BadamOptionError(
        'encoder head',
        config.head,
        '"sequence-classification" or "multiple-choice" (pick one with encoderConfigFromHf(json, { head }))',
      );
    }
    if (config.hiddenSize % config.numHeads !== 0) {
      throw new BadamOptionError(
        'hidden_size',
        config.hiddenSize,
        `a multiple of num_attention_heads (${config.numHeads})`,
      );
    }
    this.config = config;
    this.prefix = `encoder${instances++}`;
    this.seed = options.seed ?? 0;
    const rng = SeededRandom.fromSeed(options.seed ?? 0);
    const std = options.initializerRange ?? 0.02;
    const skip = options.skipInitialization ?? false;
    for (const p of parametersOf({ kind: 'encoder', ...config }, 'float32')) {
      const size = p.shape.reduce((a, b) => a * b, 1);
      const values = new Float32Array(size);
      if (!skip) {
        // Hugging Face's _init_weights: normal(0, std) for linear and embedding weights, LayerNorm weight 1,
        // biases 0; the padding embedding row zero.
        if (/LayerNorm\.weight$/.test(p.name)) values.fill(1);
        else if (p.name.endsWith('.weight')) for (let i = 0; i < size; i++) values[i] = std * gaussian(rng);
        if (p.name.endsWith('word_embeddings.weight'))
          values.fill(0, config.padTokenId * config.hiddenSize, (config.padTokenId + 1) * config.hiddenSize);
      }
      // In a tidy: the initial tensor is freed once the variable holds its data.
      const variable = tf.tidy(() =>
        tf.variable(tf.tensor(values, [...p.shape], 'float32'), true, `${this.prefix}/${p.name}`),
      );
      this.ordered.push([p.name, variable]);
      this.byName.set(p.name, variable);
    }
    const base = `${config.family}.encoder.layer`;
    for (let i = 0; i < config.numLayers; i++) {
      const l = `${base}.${i}`;
      this.layers.push({
        query: this.linear(`${l}.attention.self.query`),
        key: this.linear(`${l}.attention.self.key`),
        value: this.linear(`${l}.attention.self.value`),
        attentionOutput: this.linear(`${l}.attention.output.dense`),
        attentionNorm: [
          this.v(`${l}.attention.output.LayerNorm.weight`),
          this.v(`${l}.attention.output.LayerNorm.bias`),
        ],
        intermediate: this.linear(`${l}.intermediate.dense`),
        output: this.linear(`${l}.output.dense`),
        outputNorm: [this.v(`${l}.output.LayerNorm.weight`), this.v(`${l}.output.LayerNorm.bias`)],
      });
    }
  }

  /** The parameters as `[Hugging Face name, variable]` in `named_parameters()` order, LoRA adapters after their weight. */
  get namedParameters(): NamedVariable[] {
    return withAdapters(this.ordered, (name) =>
      name.endsWith('.weight') ? this.linears.get(name.slice(0, -'.weight'.length)) : undefined,
    );
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

  /**
   * Makes dropout a function of (seed, `step`, call within the step), so that a run resumed from a
   * checkpoint draws the same masks as the uninterrupted run. Trainers call it at the start of each step.
   */
  setDropoutStep(step: number): void {
    this.dropoutStep = step;
    this.dropoutCalls = 0;
  }

  /** Names of the task head's parameters (and the pooler's, when the head uses it): randomly initialised when fine-tuning starts. */
  get headParameterNames(): string[] {
    return this.ordered.map(([n]) => n).filter((n) => n.startsWith('classifier') || n.includes('.pooler.'));
  }

  /**
   * Class logits: [rows, numLabels] for sequence classification, [rows / numChoices, numChoices] for multiple
   * choice. Dropout applies when `training`.
   */
  logits(batch: EncoderBatch, training = false): tf.Tensor2D {
    return tf.tidy(() => {
      const [rows, t] = batch.inputIds.shape;
      const hidden = this.encode(batch, training); // [rows * t, hidden]
      const h = this.config.hiddenSize;
      const first = tf.reshape(tf.slice(tf.reshape(hidden, [rows, t, h]), [0, 0, 0], [rows, 1, h]), [
        rows,
        h,
      ]);
      const drop = (x: tf.Tensor) => this.dropout(x, this.config.hiddenDropout, training);
      if (this.config.head === 'sequence-classification' && this.config.family === 'roberta') {
        // RobertaClassificationHead: dropout, dense, tanh, dropout, out_proj on the <s> token.
        const x = tf.tanh(this.apply(drop(first), this.linear('classifier.dense'), training));
        return this.apply(drop(x), this.linear('classifier.out_proj'), training) as tf.Tensor2D;
      }
      const pooled = tf.tanh(this.apply(first, this.linear(`${this.config.family}.pooler.dense`), training));
      const scores = this.apply(drop(pooled), this.linear('classifier'), training);
      if (this.config.head === 'sequence-classification') return scores as tf.Tensor2D;
      const choices = batch.numChoices ?? 0;
      if (!Number.isSafeInteger(choices) || choices < 1 || rows % choices !== 0) {
        throw new BadamOptionError(
          'numChoices',
          batch.numChoices,
          `a divisor of the ${rows} rows (rows of one example are consecutive)`,
        );
      }
      return tf.reshape(scores, [rows / choices, choices]) as tf.Tensor2D;
    });
  }

  /** Mean cross-entropy of the logits against `batch.labels`. */
  loss(batch: EncoderBatch, training = true): tf.Scalar {
    if (batch.labels === undefined)
      throw new BadamOptionError('batch.labels', undefined, 'class indices (int32)');
    return tf.tidy(() => {
      const logits = this.logits(batch, training);
      const [n, classes] = logits.shape;
      if (batch.labels!.shape[0] !== n)
        throw new BadamOptionError(
          'batch.labels',
          `${batch.labels!.shape[0]} labels`,
          `${n} (one per example)`,
        );
      const logp = tf.logSoftmax(logits);
      const picked = tf.sum(tf.mul(logp, tf.oneHot(tf.cast(batch.labels!, 'int32'), classes)), 1);
      return tf.neg(tf.mean(picked)) as tf.Scalar;
    });
  }

  /** Adds LoRA adapters (B zero, A Kaiming-uniform as peft) to the encoder layers' `query`, `key`, `value` or `dense` modules. */
  addLora(config: LoraConfig, seed = 0): void {
    if (this.loraSettings !== undefined)
      throw new BadamOptionError('addLora', 'called twice', 'one LoRA configuration per model');
    if (!Number.isSafeInteger(config.rank) || config.rank < 1)
      throw new BadamOptionError('lora rank', config.rank, 'an integer >= 1');
    if (!(config.alpha > 0)) throw new BadamOptionError('lora alpha', config.alpha, 'a number > 0');
    const targets = config.targetModules === 'all' ? [...LORA_MODULES] : [...config.targetModules];
    for (const t of targets) {
      if (!(LORA_MODULES as readonly string[]).includes(t))
        throw new BadamOptionError('lora target module', t, `one of ${LORA_MODULES.join(', ')} or "all"`);
    }
    const rng = SeededRandom.fromSeed(seed);
    for (const layer of this.layers) {
      for (const linear of [
        layer.query,
        layer.key,
        layer.value,
        layer.attentionOutput,
        layer.intermediate,
        layer.output,
      ]) {
        if (!targets.some((t) => linear.name.endsWith(`.${t}`))) continue;
        linear.lora = createLoraAdapter(
          rng,
          linear.weight,
          linear.name,
          this.prefix,
          config.rank,
          config.alpha,
        );
      }
    }
    this.loraSettings = { ...config, targetModules: targets };
  }

  /** The LoRA configuration, when adapters were added. */
  get lora(): LoraConfig | undefined {
    return this.loraSettings;
  }

  /** Frees every variable of the model. */
  dispose(): void {
    for (const [, v] of this.namedParameters) v.dispose();
  }

  /** Final hidden states [rows * seq, hidden]. */
  private encode(batch: EncoderBatch, training: boolean): tf.Tensor2D {
    const {
      family,
      hiddenSize: h,
      numHeads,
      padTokenId,
      layerNormEps: eps,
      maxPositionEmbeddings,
    } = this.config;
    const [rows, t] = batch.inputIds.shape;
    const ids = tf.cast(batch.inputIds, 'int32') as tf.Tensor2D;
    // RoBERTa numbers non-padding tokens from padding_idx + 1; BERT counts from 0.
    let positions: tf.Tensor2D;
    if (family === 'roberta') {
      const notPad = tf.cast(tf.notEqual(ids, padTokenId), 'int32');
      positions = tf.cast(
        tf.add(tf.mul(tf.cumsum(notPad, 1), notPad), tf.scalar(padTokenId, 'int32')),
        'int32',
      ) as tf.Tensor2D;
    } else {
      positions = tf.tile(tf.reshape(tf.range(0, t, 1, 'int32'), [1, t]), [rows, 1]) as tf.Tensor2D;
    }
    const maxPosition = family === 'roberta' ? padTokenId + t : t - 1;
    if (maxPosition >= maxPositionEmbeddings) {
      throw new BadamOptionError(
        'sequence length',
        t,
        `at most ${family === 'roberta' ? maxPositionEmbeddings - padTokenId - 1 : maxPositionEmbeddings} tokens for this model`,
      );
    }
    const types = batch.tokenTypeIds ? tf.cast(batch.tokenTypeIds, 'int32') : tf.zerosLike(ids);
    const flat = (x: tf.Tensor) => tf.reshape(x, [-1]) as tf.Tensor1D;
    const e = `${family}.embeddings`;
    let x: tf.Tensor = tf.addN([
      embeddingLookup(this.v(`${e}.word_embeddings.weight`) as tf.Tensor2D, flat(ids)),
      embeddingLookup(this.v(`${e}.position_embeddings.weight`) as tf.Tensor2D, flat(positions)),
      embeddingLookup(this.v(`${e}.token_type_embeddings.weight`) as tf.Tensor2D, flat(types)),
    ]);
    x = this.dropout(
      layerNorm(x, this.v(`${e}.LayerNorm.weight`), this.v(`${e}.LayerNorm.bias`), eps),
      this.config.hiddenDropout,
      training,
    );
    const mask = batch.attentionMask
      ? tf.reshape(tf.mul(tf.sub(1, tf.cast(batch.attentionMask, 'float32')), -1e9), [rows, 1, 1, t])
      : undefined;
    const d = h / numHeads;
    const split = (y: tf.Tensor) =>
      tf.transpose(tf.reshape(y, [rows, t, numHeads, d]), [0, 2, 1, 3]) as tf.Tensor4D;
    for (const layer of this.layers) {
      const q = split(this.apply(x, layer.query, training));
      const k = split(this.apply(x, layer.key, training));
      const v = split(this.apply(x, layer.value, training));
      let scores: tf.Tensor = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(d));
      if (mask) scores = tf.add(scores, mask);
      const probs = this.dropout(tf.softmax(scores), this.config.attentionDropout, training);
      const context = tf.reshape(tf.transpose(tf.matMul(probs as tf.Tensor4D, v), [0, 2, 1, 3]), [
        rows * t,
        h,
      ]);
      const attended = this.dropout(
        this.apply(context, layer.attentionOutput, training),
        this.config.hiddenDropout,
        training,
      );
      x = layerNorm(tf.add(attended, x), layer.attentionNorm[0], layer.attentionNorm[1], eps);
      const inner = this.activation(this.apply(x, layer.intermediate, training));
      const out = this.dropout(
        this.apply(inner, layer.output, training),
        this.config.hiddenDropout,
        training,
      );
      x = layerNorm(tf.add(out, x), layer.outputNorm[0], layer.outputNorm[1], eps);
    }
    return x as tf.Tensor2D;
  }

  private activation(x: tf.Tensor): tf.Tensor {
    switch (this.config.hiddenAct) {
      case 'relu':
        return tf.relu(x);
      case 'gelu_new':
        return tf.mul(
          tf.mul(x, 0.5),
          tf.add(1, tf.tanh(tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3)))))),
        );
      default:
        return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
    }
  }

  private apply(x: tf.Tensor, l: Linear, _training: boolean): tf.Tensor {
    let y = tf.add(tf.matMul(x as tf.Tensor2D, l.weight as tf.Tensor2D, false, true), l.bias);
    if (l.lora) {
      const low = tf.matMul(x as tf.Tensor2D, l.lora.a as tf.Tensor2D, false, true);
      y = tf.add(y, tf.mul(tf.matMul(low, l.lora.b as tf.Tensor2D, false, true), l.lora.scale));
    }
    return y;
  }

  private dropout(x: tf.Tensor, rate: number, training: boolean): tf.Tensor {
    if (!training || rate <= 0) return x;
    const seed =
      (Math.imul(this.seed + 1, 0x9e3779b1) ^
        Math.imul(this.dropoutStep + 1, 0x85ebca6b) ^
        this.dropoutCalls++) >>>
      0;
    return tf.dropout(x, rate, undefined, seed);
  }

  private v(name: string): tf.Variable {
    const variable = this.byName.get(name);
    if (variable === undefined)
      throw new BadamOptionError('parameter name', name, 'a parameter of this model');
    return variable;
  }

  private linear(name: string): Linear {
    let l = this.linears.get(name);
    if (l === undefined) {
      l = { name, weight: this.v(`${name}.weight`), bias: this.v(`${name}.bias`), lora: undefined };
      this.linears.set(name, l);
    }
    return l;
  }
}
