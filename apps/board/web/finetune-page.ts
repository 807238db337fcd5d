import 'uplot/dist/uPlot.min.css';
import './board.css';
import * as tf from '@tensorflow/tfjs-core';
import {
  BrowserFineTune,
  type BrowserFineTuneSettings,
  DEFAULT_BROWSER_SETTINGS,
} from './browser-fine-tune.js';
import { PageLogCallback } from './page-log-callback.js';
import { RunCharts } from './run-charts.js';
import { BROWSER_BACKENDS, type BrowserBackend, useBestBrowserBackend } from './tfjs-browser-backend.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);

function settingsFromUrl(): BrowserFineTuneSettings {
  const number = (name: string, fallback: number, integer = true) => {
    const text = params.get(name);
    if (text === null) return fallback;
    const value = Number(text);
    if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
      throw new Error(`URL parameter ${name}=${text}: expected a positive ${integer ? 'integer' : 'number'}`);
    }
    return value;
  };
  const d = DEFAULT_BROWSER_SETTINGS;
  return {
    ...d,
    steps: number('steps', d.steps),
    switchBlockEvery: number('k', d.switchBlockEvery),
    evalSteps: number('eval', d.evalSteps),
    loggingSteps: number('log', d.loggingSteps),
    learningRate: number('lr', d.learningRate, false),
    trainExamples: number('train', d.trainExamples),
    evalExamples: number('heldout', d.evalExamples),
  };
}

function setText(id: string, text: string): void {
  $(id).textContent = text;
}

async function main(): Promise<void> {
  const settings = settingsFromUrl();
  const wanted = params.get('backend') ?? undefined;
  if (wanted !== undefined && !(BROWSER_BACKENDS as readonly string[]).includes(wanted)) {
    throw new Error(`URL parameter backend=${wanted}: expected one of ${BROWSER_BACKENDS.join(', ')}`);
  }
  setText('state', 'starting TensorFlow.js...');
  const { backend, tried } = await useBestBrowserBackend(
    '/assets/wasm/',
    wanted as BrowserBackend | undefined,
  );
  const threads = backend === 'wasm' && crossOriginIsolated ? ', threads' : '';
  setText('backend', `${backend}${threads}`);
  setText('backend-note', tried.length > 0 ? `(passed over: ${tried.join('; ')})` : '');
  $('backend').dataset.backend = backend;

  setText('state', 'loading the shipped pretrained tiny Llama...');
  const run = await BrowserFineTune.fromPretrained(settings);
  setText(
    'model',
    `tiny Llama, ${run.parameterCount.toLocaleString('en')} parameters, pretrained as the main job's start (${run.pretrained.settings.steps} steps of full AdamW on generated text, loss ${run.pretrained.final_loss.toFixed(4)}), byte tokenizer; ${settings.trainExamples} generated instructions, ${settings.evalExamples} held out`,
  );
  setText(
    'plan',
    `BAdam: one layer per block, ${settings.switchBlockEvery} steps each, ${settings.steps} steps of ${settings.batchSize}, AdamW lr ${settings.learningRate} (cosine)`,
  );
  const charts = new RunCharts($('charts'), [{ id: 0, name: `in-page BAdam (${backend})` }]);
  const ask = (slot: 'before' | 'after') => {
    const question = $<HTMLTextAreaElement>('question').value.trim();
    if (question === '') return;
    const started = performance.now();
    const answer = run.answer(question);
    $(`answer-${slot}`).textContent = answer === '' ? '(an empty answer)' : answer;
    $(`answer-${slot}`).title = `${((performance.now() - started) / 1000).toFixed(1)} s`;
  };
  let trained = false;
  $('ask').addEventListener('click', () => ask(trained ? 'after' : 'before'));

  setText('state', 'measuring eval loss before fine-tuning...');
  const before = await run.evalLoss();
  setText('eval-before', before.toFixed(4));
  charts.addLines(0, [{ current_steps: 0, total_steps: settings.steps, eval_loss: before }]);
  // ask=0 leaves the question to the button (each generated token is a new shape: slow on a software WebGL).
  const askAutomatically = params.get('ask') !== '0';
  if (askAutomatically) ask('before');

  const start = async () => {
    $<HTMLButtonElement>('start').disabled = true;
    setText('state', 'fine-tuning with BAdam...');
    setText('state', `fine-tuning with BAdam: timing the first ${settings.loggingSteps} steps...`);
    const started = performance.now();
    const log = new PageLogCallback((line) => {
      charts.addLines(0, [line]);
      const done = line.current_steps as number;
      const left = timeLeft(performance.now() - started, done, settings.steps);
      $('state').dataset.secondsLeft = left.seconds.toFixed(0);
      setText('state', `fine-tuning with BAdam: step ${done} / ${settings.steps}, ${left.text}`);
    });
    await run.train([log]);
    const after =
      log.lines.filter((l) => typeof l.eval_loss === 'number').at(-1)?.eval_loss ?? (await run.evalLoss());
    trained = true;
    setText('eval-after', (after as number).toFixed(4));
    const seconds = (performance.now() - started) / 1000;
    setText(
      'state',
      `done: ${settings.steps} steps in ${seconds.toFixed(1)} s on ${backend}; tensors held: ${tf.memory().numTensors}`,
    );
    $('state').dataset.done = 'true';
    $('state').dataset.seconds = seconds.toFixed(1);
    charts.setResults(0, {
      'all_results.json': { eval_loss: after, train_runtime: seconds, train_steps: settings.steps },
    });
    if (askAutomatically) ask('after');
  };
  $('start').addEventListener('click', () => void start().catch(fail));
  $<HTMLButtonElement>('start').disabled = false;
  setText('state', 'ready: press start');
  if (params.get('autostart') === '1') await start();
}

/** The time the remaining steps will take at the rate so far (evaluations included), as a person reads it. */
function timeLeft(
  elapsedMs: number,
  stepsDone: number,
  totalSteps: number,
): { seconds: number; text: string } {
  const seconds = stepsDone > 0 ? ((elapsedMs / 1000) * (totalSteps - stepsDone)) / stepsDone : Number.NaN;
  if (!Number.isFinite(seconds)) return { seconds: Number.NaN, text: 'timing...' };
  const whole = Math.round(seconds);
  const text =
    whole >= 60 ? `about ${Math.floor(whole / 60)} min ${whole % 60} s left` : `about ${whole} s left`;
  return { seconds, text };
}

function fail(error: unknown): void {
  setText('state', `error: ${(error as Error).message}`);
  $('state').dataset.error = 'true';
  console.error(error);
}

main().catch(fail);
