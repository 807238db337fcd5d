import { join } from 'node:path';
import { writeResultsJson } from '@badam/callbacks';
import type { InstructionExample } from '@badam/data';
import { type ChatTemplate, encodeGenerationPrompt, type Tokenizer, templateStopIds } from '@badam/data';
import { generate, type LlamaForCausalLM } from '@badam/models';
import { writeFileAtomic } from '@badam/safetensors';
import { predictionScores } from './prediction-scores.js';
import type { TrainOptions } from './train-options.js';

/** One generated answer beside its reference, as LLaMA-Factory's generated_predictions.jsonl. */
export interface Prediction {
  prompt: string;
  predict: string;
  label: string;
}

/** Options of {@link predictExamples}. */
export interface PredictOptions {
  maxNewTokens: number;
  temperature?: number;
  topP?: number;
  seed?: number;
}

/**
 * Generates the assistant's answer to the last turn of each example (greedy unless a temperature is set)
 * and scores exact match against the reference answer (both trimmed).
 */
export function predictExamples(
  model: LlamaForCausalLM,
  tokenizer: Tokenizer,
  template: ChatTemplate,
  examples: readonly InstructionExample[],
  options: PredictOptions,
): { predictions: Prediction[]; exactMatch: number } {
  const stopTokenIds = templateStopIds(template, tokenizer);
  const predictions = examples.map((example) => {
    const last = example.turns[example.turns.length - 1]!;
    const promptIds = encodeGenerationPrompt(
      template,
      tokenizer,
      example.turns.slice(0, -1),
      last.user,
      example.system,
    );
    const ids = generate(model, promptIds, {
      maxNewTokens: options.maxNewTokens,
      temperature: options.temperature ?? 0,
      topP: options.topP ?? 1,
      stopTokenIds,
      seed: options.seed ?? 0,
    });
    return {
      prompt: tokenizer.decode(promptIds),
      predict: tokenizer.decode(ids, { skipSpecialTokens: true }),
      label: last.assistant,
    };
  });
  const exact = predictions.filter((p) => p.predict.trim() === p.label.trim()).length;
  return { predictions, exactMatch: predictions.length > 0 ? exact / predictions.length : 0 };
}

/**
 * Generates answers for `examples` (with the run's generation settings) and writes them as LLaMA-Factory
 * does: `generated_predictions.jsonl` (prompt, predict, label per line) and `predict_results.json`
 * (predict_bleu-4, predict_rouge-1 / -2 / -l as `predictionScores` computes them, predict_exact_match,
 * predict_runtime, predict_samples, predict_samples_per_second) in the output directory.
 */
export async function writePredictions(
  model: LlamaForCausalLM,
  tokenizer: Tokenizer,
  template: ChatTemplate,
  examples: readonly InstructionExample[],
  options: Pick<TrainOptions, 'maxNewTokens' | 'temperature' | 'topP' | 'seed' | 'outputDir'>,
): Promise<{ predictions: Prediction[]; exactMatch: number }> {
  const start = Date.now();
  const predicted = predictExamples(model, tokenizer, template, examples, {
    maxNewTokens: options.maxNewTokens,
    temperature: options.temperature,
    topP: options.topP,
    seed: options.seed,
  });
  const seconds = (Date.now() - start) / 1000;
  await writeFileAtomic(join(options.outputDir, 'generated_predictions.jsonl'), [
    predicted.predictions.map((p) => `${JSON.stringify(p)}\n`).join(''),
  ]);
  const scores = predictionScores(predicted.predictions);
  await writeResultsJson(join(options.outputDir, 'predict_results.json'), {
    ...Object.fromEntries(Object.entries(scores).map(([name, value]) => [`predict_${name}`, value])),
    predict_exact_match: predicted.exactMatch,
    predict_runtime: seconds,
    predict_samples: predicted.predictions.length,
    predict_samples_per_second: seconds > 0 ? predicted.predictions.length / seconds : 0,
  });
  return predicted;
}
