import { createLrSchedule, planTraining, Trainer, type TrainerCallback } from '@badam/core';
import {
  alpacaExamples,
  ByteTokenizer,
  batchedDataSource,
  chatTemplate,
  encodeGenerationPrompt,
  encodeSupervised,
  type PaddedBatch,
  templateStopIds,
} from '@badam/data';
// The embedded default of badam-llama: the same tiny Llama, generated instructions and causal-LM task, so
// the page fine-tunes exactly what `pnpm start` does, planned by core and assembled by @badam/tfjs as a run is.
import { builtinLlamaConfig, generatedInstructions } from '@badam/embedded';
import { assignLlamaWeights, causalLmTask, generate, LlamaForCausalLM } from '@badam/models';
import { SafetensorsBytes } from '@badam/safetensors';
import { tfjsBackendModel } from '@badam/tfjs';

/** The in-page run's settings (the page's URL parameters override them). */
export interface BrowserFineTuneSettings {
  /** Optimizer steps. */
  readonly steps: number;
  /** BAdam's K: steps per block. */
  readonly switchBlockEvery: number;
  /** Evaluate every N steps. */
  readonly evalSteps: number;
  readonly loggingSteps: number;
  readonly learningRate: number;
  readonly batchSize: number;
  readonly trainExamples: number;
  readonly evalExamples: number;
  readonly seed: number;
}

/**
 * The page's defaults: the main job's (`pnpm start`: 800 steps of 16, K = 50, AdamW 2e-3 cosine with 5 %
 * warmup, 800 generated instructions, 80 held out); tests shorten them through the URL.
 */
export const DEFAULT_BROWSER_SETTINGS: BrowserFineTuneSettings = {
  steps: 800,
  switchBlockEvery: 50,
  evalSteps: 200,
  loggingSteps: 20,
  learningRate: 2e-3,
  batchSize: 16,
  trainExamples: 800,
  evalExamples: 80,
  seed: 42,
};

/** What `badam-llama pretrain` recorded for the shipped start (its pretraining.json, in part). */
export interface PretrainedStartRecord {
  readonly settings: { readonly steps: number };
  readonly final_loss: number;
}

/** Where the board serves the shipped pretrained start (copied from @badam/embedded when the page is bundled). */
export const PRETRAINED_START_URL = '/assets/embedded-pretrained/';

const CUTOFF = 64;

/**
 * The embedded default's tiny Llama and generated instruction data, built in the browser, and BAdam
 * fine-tuning it as every run is: @badam/core's plan, @badam/tfjs's trainer backend factory and core's
 * Trainer, on whatever tfjs backend is active. Nothing leaves the page.
 */
export class BrowserFineTune {
  readonly tokenizer = new ByteTokenizer();
  readonly template = chatTemplate('default');
  private readonly trainSet;
  private readonly evalSet;

  /**
   * The run, starting from the shipped pretrained tiny Llama fetched from `baseUrl` (its
   * model.safetensors and pretraining.json), as the main job does. A relative `baseUrl` is the board
   * serving the page; an absolute one works outside a page too.
   */
  static async fromPretrained(
    settings: BrowserFineTuneSettings,
    baseUrl = PRETRAINED_START_URL,
  ): Promise<BrowserFineTune> {
    const fetchOk = async (file: string) => {
      // A relative base resolves against the page; an absolute one (a test in Node) stands alone.
      const page = typeof location === 'undefined' ? undefined : location.href;
      const response = await fetch(new URL(file, new URL(baseUrl, page)));
      if (!response.ok)
        throw new Error(`${response.url}: HTTP ${response.status}; the page needs the shipped start`);
      return response;
    };
    const weightsResponse = await fetchOk('model.safetensors');
    const weights = SafetensorsBytes.parse(
      new Uint8Array(await weightsResponse.arrayBuffer()),
      weightsResponse.url,
    );
    const record = (await (await fetchOk('pretraining.json')).json()) as PretrainedStartRecord;
    const model = new LlamaForCausalLM(builtinLlamaConfig(), { skipInitialization: true });
    try {
      await assignLlamaWeights(model, weights, weightsResponse.url);
    } catch (error) {
      model.dispose();
      throw error;
    }
    return new BrowserFineTune(settings, model, record);
  }

  private constructor(
    readonly settings: BrowserFineTuneSettings,
    readonly model: LlamaForCausalLM,
    /** What the shipped start's pretraining recorded. */
    readonly pretrained: PretrainedStartRecord,
  ) {
    const data = generatedInstructions(settings.trainExamples, settings.evalExamples, settings.seed);
    const encode = (records: typeof data.train) =>
      encodeSupervised(alpacaExamples(records), this.tokenizer, this.template, { cutoffLen: CUTOFF })
        .examples;
    this.trainSet = encode(data.train);
    this.evalSet = encode(data.eval);
  }

  /** Parameters of the model. */
  get parameterCount(): number {
    return this.model.parameterCount;
  }

  private evalData() {
    return batchedDataSource(this.evalSet, { batchSize: 16, padTokenId: this.tokenizer.padTokenId });
  }

  /** Mean eval loss over the held-out instructions (token-weighted), with the model as it is now. */
  async evalLoss(): Promise<number> {
    const task = causalLmTask(this.model);
    const data = this.evalData();
    let sum = 0;
    let weight = 0;
    for await (const batch of data.batches(0)) {
      const result = task.evaluate!(batch as PaddedBatch);
      sum += result.loss * result.weight;
      weight += result.weight;
      await new Promise((r) => setTimeout(r, 0)); // let the page paint between batches
    }
    return sum / Math.max(weight, 1);
  }

  /** The model's greedy answer to an instruction (a first line, and optionally the input after a newline). */
  answer(question: string, maxNewTokens = 16): string {
    const promptIds = encodeGenerationPrompt(this.template, this.tokenizer, [], question);
    const ids = generate(this.model, promptIds, {
      maxNewTokens,
      temperature: 0,
      stopTokenIds: templateStopIds(this.template, this.tokenizer),
    });
    return this.tokenizer.decode(ids, { skipSpecialTokens: true });
  }

  /** Fine-tunes with BAdam (one layer per block, ascending, AdamW, cosine schedule) for the set steps. */
  async train(callbacks: readonly TrainerCallback[]): Promise<void> {
    const s = this.settings;
    const model = tfjsBackendModel<PaddedBatch>({
      namedParameters: () => this.model.namedParameters,
      task: causalLmTask(this.model),
    });
    const plan = planTraining({
      settings: {
        method: 'block',
        learningRate: s.learningRate,
        switchBlockEvery: s.switchBlockEvery,
        switchMode: 'ascending',
        clipGradNorm: 1,
        seed: s.seed,
        verbose: 0,
      },
      parameters: model.parameters(),
    });
    const backend = await model.createTrainerBackend(plan);
    try {
      const trainer = new Trainer<PaddedBatch>({
        backend: backend.trainer,
        trainData: batchedDataSource(this.trainSet, {
          batchSize: s.batchSize,
          padTokenId: this.tokenizer.padTokenId,
          shuffleSeed: s.seed,
          padToMultipleOf: 8,
        }),
        evalData: this.evalData(),
        maxSteps: s.steps,
        lrSchedule: createLrSchedule({
          type: 'cosine',
          learningRate: s.learningRate,
          totalSteps: s.steps,
          warmupRatio: 0.05,
        }),
        loggingSteps: s.loggingSteps,
        evalSteps: s.evalSteps,
        callbacks: [...callbacks],
      });
      await trainer.train();
    } finally {
      backend.dispose();
    }
  }
}
