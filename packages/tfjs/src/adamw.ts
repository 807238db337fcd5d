import { BadamOptionError, isNoDecayParameter, TRAINING_DEFAULTS } from '@badam/core';
import * as tf from '@tensorflow/tfjs-core';
import type { NamedTensor } from './named-tensor.js';

/**
 * Options of {@link AdamW}, named like `tf.train.adam`'s arguments plus decoupled weight decay. Defaults are
 * core's `TRAINING_DEFAULTS.adamw`, the same as an optimizer description's.
 */
export interface AdamWOptions {
  /** Default 1e-3 (tf.train.adam's). */
  learningRate?: number;
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Default 1e-8 (as PyTorch; tf.train.adam's default is the backend epsilon, 1e-7). */
  epsilon?: number;
  /**
   * Decoupled weight decay (`p *= 1 - lr * weightDecay` each step). Default 0, as Hugging Face's Trainer and
   * core's optimizer description (`torch.optim.AdamW`'s own default is 0.01: pass it to get that).
   */
  weightDecay?: number;
  /**
   * Names of variables that get no weight decay. Default: biases and normalisation weights by
   * `isNoDecayParameter` (@badam/core) on the variable's name.
   */
  excludeFromWeightDecay?: (variableName: string) => boolean;
}

interface Moments {
  readonly m: tf.Variable;
  readonly v: tf.Variable;
  step: number;
}

/**
 * AdamW for TensorFlow.js: Adam with decoupled weight decay that skips biases and normalisation weights,
 * following `torch.optim.AdamW` exactly (decay first, then the bias-corrected Adam step, eps added to
 * `sqrt(v) / sqrt(1 - beta2^t)`). Its state is kept per variable name — not by position in the gradient
 * list as `tf.train.adam` does — with its own step count, so it is safe with changing variable sets.
 *
 * @example
 * ```ts
 * const optimizer = new AdamW({ learningRate: 1e-3, weightDecay: 0.01 });
 * optimizer.minimize(() => loss(model, batch));
 * ```
 */
export class AdamW extends tf.Optimizer {
  static get className(): string {
    return 'BAdamAdamW';
  }

  learningRate: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  readonly weightDecay: number;
  private readonly excluded: (variableName: string) => boolean;
  private readonly moments = new Map<string, Moments>();
  /** Tensors made for the last getWeights() (iterations, steps): nobody else frees them (a checkpoint left them behind). */
  private lastWeights: tf.Tensor[] = [];

  constructor(options: AdamWOptions = {}) {
    super();
    const check = (name: string, value: number, ok: boolean, expected: string) => {
      if (!ok || !Number.isFinite(value)) throw new BadamOptionError(name, value, expected);
      return value;
    };
    const defaults = TRAINING_DEFAULTS.adamw;
    const {
      learningRate = defaults.learningRate,
      beta1 = defaults.betas[0],
      beta2 = defaults.betas[1],
      epsilon = defaults.epsilon,
      weightDecay = defaults.weightDecay,
    } = options;
    this.learningRate = check('learningRate', learningRate, learningRate >= 0, 'a finite number >= 0');
    this.beta1 = check('beta1', beta1, beta1 >= 0 && beta1 < 1, 'a number in [0, 1)');
    this.beta2 = check('beta2', beta2, beta2 >= 0 && beta2 < 1, 'a number in [0, 1)');
    this.epsilon = check('epsilon', epsilon, epsilon > 0, 'a number > 0');
    this.weightDecay = check('weightDecay', weightDecay, weightDecay >= 0, 'a finite number >= 0');
    this.excluded = options.excludeFromWeightDecay ?? isNoDecayParameter;
  }

  /** Sets the learning rate of the next steps. */
  setLearningRate(learningRate: number): void {
    if (!(learningRate >= 0) || !Number.isFinite(learningRate)) {
      throw new BadamOptionError('learningRate', learningRate, 'a finite number >= 0');
    }
    this.learningRate = learningRate;
  }

  override applyGradients(variableGradients: tf.NamedTensorMap | NamedTensor[]): void {
    const entries: Array<[string, tf.Tensor | null]> = Array.isArray(variableGradients)
      ? variableGradients.map((g) => [g.name, g.tensor])
      : Object.entries(variableGradients);
    const lr = this.learningRate;
    for (const [name, gradient] of entries) {
      if (gradient == null) continue;
      const variable = tf.engine().registeredVariables[name];
      if (variable === undefined) {
        throw new BadamOptionError('gradient name', name, 'the name of a registered tf.Variable');
      }
      let moments = this.moments.get(name);
      if (moments === undefined) {
        // Inside tidy, so the zeros the variables start from are released once the variables hold them.
        moments = tf.tidy(() => ({
          m: tf.variable(tf.zerosLike(variable), false),
          v: tf.variable(tf.zerosLike(variable), false),
          step: 0,
        }));
        this.moments.set(name, moments);
      }
      const t = moments.step + 1;
      // One tidy per variable: the update's temporaries (a few tensors of the variable's size) are freed
      // before the next variable, so the update's peak is one variable's worth, not the whole model's.
      tf.tidy(() => {
        const state = moments!;
        const m = tf.add(tf.mul(state.m, this.beta1), tf.mul(gradient, 1 - this.beta1));
        const v = tf.add(tf.mul(state.v, this.beta2), tf.mul(tf.square(gradient), 1 - this.beta2));
        const decayed =
          this.weightDecay > 0 && !this.excluded(name)
            ? tf.mul(variable, 1 - lr * this.weightDecay)
            : variable;
        const denom = tf.add(tf.div(tf.sqrt(v), Math.sqrt(1 - this.beta2 ** t)), this.epsilon);
        const stepSize = lr / (1 - this.beta1 ** t);
        variable.assign(tf.sub(decayed, tf.mul(tf.div(m, denom), stepSize)));
        state.m.assign(m);
        state.v.assign(v);
      });
      moments.step = t;
    }
    this.incrementIterations();
  }

  /** Bytes of optimizer state held (m and v of every variable seen). */
  stateBytes(): number {
    let bytes = 0;
    for (const { m, v } of this.moments.values()) bytes += 4 * (m.size + v.size);
    return bytes;
  }

  override dispose(): void {
    for (const { m, v } of this.moments.values()) {
      m.dispose();
      v.dispose();
    }
    this.moments.clear();
    tf.dispose(this.lastWeights);
    this.lastWeights = [];
    super.dispose();
  }

  /** The iteration count, and m, v and step of every variable seen; valid until the next call or {@link dispose}. */
  override async getWeights(): Promise<NamedTensor[]> {
    tf.dispose(this.lastWeights);
    const iterations = await this.saveIterations();
    const made: tf.Tensor[] = [iterations.tensor];
    const weights: NamedTensor[] = [iterations];
    for (const [name, { m, v, step }] of this.moments) {
      const count = tf.scalar(step, 'int32');
      made.push(count);
      weights.push({ name: `${name}/m`, tensor: m }, { name: `${name}/v`, tensor: v });
      weights.push({ name: `${name}/step`, tensor: count });
    }
    this.lastWeights = made;
    return weights;
  }

  override async setWeights(weightValues: NamedTensor[]): Promise<void> {
    const rest = await this.extractIterations(weightValues);
    for (const { m, v } of this.moments.values()) {
      m.dispose();
      v.dispose();
    }
    this.moments.clear();
    const byName = new Map(rest.map((w) => [w.name, w.tensor]));
    for (const [key, tensor] of byName) {
      if (!key.endsWith('/m')) continue;
      const name = key.slice(0, -2);
      const v = byName.get(`${name}/v`);
      const step = byName.get(`${name}/step`);
      if (v === undefined || step === undefined) {
        throw new BadamOptionError('AdamW weights', name, 'an m, v and step entry for every variable');
      }
      this.moments.set(name, {
        m: tf.variable(tensor, false),
        v: tf.variable(v, false),
        step: (await step.data())[0]!,
      });
    }
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      learningRate: this.learningRate,
      beta1: this.beta1,
      beta2: this.beta2,
      epsilon: this.epsilon,
      weightDecay: this.weightDecay,
    };
  }

  static override fromConfig<T extends tf.serialization.Serializable>(
    cls: tf.serialization.SerializableConstructor<T>,
    config: tf.serialization.ConfigDict,
  ): T {
    return new cls(config as AdamWOptions);
  }
}

tf.serialization.registerClass(AdamW);
