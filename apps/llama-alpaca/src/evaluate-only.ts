import { join } from 'node:path';
import { type RunIO, writeResultsJson } from '@badam/callbacks';
import { UsageError } from '@badam/core';
import { batchedDataSource, type ChatTemplate, encodeSupervised } from '@badam/data';
import { causalLmTask } from '@badam/models';
import { type Prediction, writePredictions } from './predict.js';
import type { RunModel, TrainRunResult } from './run-training.js';
import { loadRunExamples } from './run-training.js';
import type { TrainOptions } from './train-options.js';

/**
 * `--do_train false`: the model as it is (a model folder, a checkpoint, or a base with its adapters merged),
 * evaluated (`--do_eval`: loss and token accuracy over the validation set, into `eval_results.json`) and / or
 * predicting (`--do_predict`: generated answers into `generated_predictions.jsonl` and
 * `predict_results.json`), as LLaMA-Factory's `llamafactory-cli train` with `do_train: false` does.
 */
export async function evaluateOnly(
  options: TrainOptions,
  io: RunIO,
  loaded: RunModel,
  template: ChatTemplate,
): Promise<TrainRunResult> {
  const { model, tokenizer } = loaded;
  if (model === undefined)
    throw new UsageError('--do_train false evaluates with TensorFlow.js: drop --backend cuda for it');
  const { validation } = await loadRunExamples(options);
  if (validation.length === 0)
    throw new UsageError(
      'no examples to evaluate or predict: check --eval_dataset (or --dataset and --val_size)',
    );
  io.log(
    `badam-llama: ${options.doEval ? 'evaluating' : ''}${options.doEval && options.doPredict ? ' and ' : ''}${options.doPredict ? 'predicting' : ''} on ${validation.length} examples (template ${template.name}), no training`,
  );
  const metrics: Record<string, number | string> = {};
  if (options.doEval) {
    const { examples, dropped } = encodeSupervised(validation, tokenizer, template, {
      cutoffLen: options.cutoffLen,
      vocabSize: loaded.config.vocabSize,
    });
    if (dropped > 0)
      io.warn(`badam-llama: ${dropped} example(s) had no response token within cutoff_len and were dropped`);
    if (examples.length === 0)
      throw new UsageError('no evaluation examples left after tokenization: check --cutoff_len');
    const task = causalLmTask(model);
    const start = Date.now();
    let weight = 0;
    let loss = 0;
    let accuracy = 0;
    let batches = 0;
    const data = batchedDataSource(examples, {
      batchSize: options.evalBatchSize,
      padTokenId: tokenizer.padTokenId,
    });
    for await (const batch of data.batches(0)) {
      const result = await task.evaluate!(batch);
      weight += result.weight;
      loss += result.loss * result.weight;
      accuracy += (result.metrics?.accuracy ?? 0) * result.weight;
      batches += 1;
    }
    const seconds = (Date.now() - start) / 1000;
    const results = {
      eval_loss: loss / weight,
      eval_accuracy: accuracy / weight,
      eval_runtime: seconds,
      eval_samples_per_second: seconds > 0 ? examples.length / seconds : 0,
      eval_steps_per_second: seconds > 0 ? batches / seconds : 0,
    };
    Object.assign(metrics, results);
    await writeResultsJson(join(options.outputDir, 'eval_results.json'), results);
    io.log(
      `badam-llama: eval_loss ${Number(results.eval_loss.toPrecision(6))}, eval_accuracy ${Number(results.eval_accuracy.toPrecision(6))}`,
    );
  }
  let predictions: Prediction[] | undefined;
  if (options.doPredict) {
    const predicted = await writePredictions(model, tokenizer, template, validation, options);
    predictions = predicted.predictions;
    metrics.predict_exact_match = predicted.exactMatch;
  }
  await writeResultsJson(join(options.outputDir, 'all_results.json'), metrics);
  return {
    outputDir: options.outputDir,
    metrics,
    model,
    deviceModel: undefined,
    tokenizer,
    template,
    validation,
    predictions,
    estimate: undefined,
    stopReason: undefined,
  };
}
