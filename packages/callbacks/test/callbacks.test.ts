import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Trainer } from '@badam/core';
import { createCanvas, loadImage } from '@napi-rs/canvas';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BlockSwitchLogCallback,
  bandOf,
  EarlyStoppingCallback,
  fitCallbacks,
  LossPlotCallback,
  LossSpikeMonitor,
  lossPlotDatasets,
  MARKER_COLOR,
  MetricsLogCallback,
  NonFiniteLossGuard,
  ProgressCallback,
  readTrainerLog,
  renderBandPlot,
  renderLossPlot,
  runCallbacks,
  SafetensorsCheckpointStore,
  smoothSeries,
} from '../src/index.js';
import { backend, data } from './fixtures/linear-task.mjs';

const root = mkdtempSync(join(tmpdir(), 'badam-callbacks-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let runs = 0;
const freshDir = () => join(root, `run-${runs++}`);

class Capture extends Writable {
  text = '';
  isTTY = false;
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

describe('ProgressCallback', () => {
  it('prints plain periodic lines off a terminal', async () => {
    const out = new Capture();
    await new Trainer({
      backend: backend(),
      trainData: data(),
      maxSteps: 20,
      callbacks: [new ProgressCallback({ stream: out as never, every: 5 })],
    }).train();
    const lines = out.text.split('\n').filter((l) => l.startsWith('step '));
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(
      /^step 5\/20 \(25%\) \| epoch 0\.50 \| loss \d+\.\d{4} \| lr 5\.00e-2 \| \d+ tok\/s \| block \d \| mem [\d.]+ MB( \([^)]*\))? \| \d:\d\d:\d\d < \d:\d\d:\d\d$/,
    );
    expect(out.text).toMatch(/BAdam \(reference backend\): 3 blocks/);
    expect(out.text).toMatch(/training done at step 20/);
  });

  it("prints the same loss as trainer_log.jsonl: the mean of the steps since the last line, not the last step's", async () => {
    const out = new Capture();
    const outputDir = freshDir();
    await new Trainer({
      backend: backend(),
      trainData: data(),
      maxSteps: 12,
      loggingSteps: 5,
      callbacks: [
        new ProgressCallback({ stream: out as never, every: 5 }),
        new MetricsLogCallback({ outputDir }),
      ],
    }).train();
    const printed = out.text
      .split('\n')
      .filter((l) => l.startsWith('step '))
      .map((l) => /\| loss (\S+) \|/.exec(l)![1]);
    const logged = (await readTrainerLog(join(outputDir, 'trainer_log.jsonl'))).map((l) =>
      (l.loss as number).toFixed(4),
    );
    expect(printed).toHaveLength(3); // steps 5, 10 and the last, 12
    expect(printed).toEqual(logged);
  });

  it('draws a live bar on a terminal', async () => {
    const out = new Capture();
    out.isTTY = true;
    (out as unknown as { columns: number }).columns = 200;
    (out as unknown as { cursorTo: () => boolean }).cursorTo = () => true;
    (out as unknown as { clearLine: () => boolean }).clearLine = () => true;
    await new Trainer({
      backend: backend(),
      trainData: data(),
      maxSteps: 10,
      callbacks: [new ProgressCallback({ stream: out as never })],
    }).train();
    expect(out.text).toMatch(/step 10\/10 \|.+\| 100% \| epoch 1\.00 \| loss \d/);
  });
});

describe('MetricsLogCallback', () => {
  it('writes trainer_log.jsonl with LLaMA-Factory keys, one line per logging step and evaluation', async () => {
    const outputDir = freshDir();
    await new Trainer({
      backend: backend(),
      trainData: data(),
      evalData: data(8, 4),
      maxSteps: 20,
      loggingSteps: 5,
      evalSteps: 10,
      callbacks: [new MetricsLogCallback({ outputDir })],
    }).train();
    const lines = await readTrainerLog(join(outputDir, 'trainer_log.jsonl'));
    expect(lines.map((l) => l.current_steps)).toEqual([5, 10, 10, 15, 20, 20]);
    expect(lines[0]).toMatchObject({
      total_steps: 20,
      eval_loss: null,
      learning_rate: 0.05,
      epoch: 0.5,
      percentage: 25,
    });
    expect(Object.keys(lines[0]!)).toEqual(
      expect.arrayContaining([
        'loss',
        'elapsed_time',
        'remaining_time',
        'active_block',
        'tokens_per_second',
        'memory_bytes',
      ]),
    );
    expect(lines[2]).toMatchObject({
      loss: null,
      eval_loss: expect.any(Number),
      eval_accuracy: expect.any(Number),
    });
  });
  it('records each block switch at its exact step, and memory by kind, between logging steps', async () => {
    const outputDir = freshDir();
    await new Trainer({
      backend: backend({ switchBlockEvery: 3 }),
      trainData: data(),
      maxSteps: 10,
      loggingSteps: 5,
      callbacks: [new MetricsLogCallback({ outputDir })],
    }).train();
    const lines = await readTrainerLog(join(outputDir, 'trainer_log.jsonl'));
    // K = 3 over 3 blocks: switches after steps 3, 6 and 9, logged on the lines of steps 5 and 10.
    expect(lines.map((l) => l.block_switches)).toEqual([
      [{ step: 3, from: 0, to: 1 }],
      [
        { step: 6, from: 1, to: 2 },
        { step: 9, from: 2, to: 0 },
      ],
    ]);
    expect(lines.map((l) => l.active_block)).toEqual([1, 0]);
    expect(lines[0]!.memory_by_kind).toEqual(expect.objectContaining({ weights: expect.any(Number) }));
  });
});

describe('LossPlotCallback', () => {
  it('writes training_loss.png: a real PNG of the expected size, with the eval curve', async () => {
    const outputDir = freshDir();
    await new Trainer({
      backend: backend(),
      trainData: data(),
      evalData: data(8, 4),
      maxSteps: 40,
      loggingSteps: 2,
      evalSteps: 10,
      callbacks: [new LossPlotCallback({ outputDir })],
    }).train();
    const path = join(outputDir, 'training_loss.png');
    const bytes = readFileSync(path);
    expect([...bytes.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    expect(bytes.readUInt32BE(16)).toBe(900); // IHDR width
    expect(bytes.readUInt32BE(20)).toBe(540); // IHDR height
    const image = await loadImage(bytes); // decodes
    expect([image.width, image.height]).toEqual([900, 540]);
  });

  it('marks block switches, writes training_eval_loss.png beside it, and keeps the switches across a resume', async () => {
    const outputDir = freshDir();
    const plot = new LossPlotCallback({ outputDir });
    const store = new SafetensorsCheckpointStore({ outputDir: join(outputDir, 'ckpt') });
    const run = {
      trainData: data(),
      evalData: data(8, 4),
      loggingSteps: 1,
      evalSteps: 3,
      checkpoints: store,
    };
    await new Trainer({ ...run, backend: backend(), maxSteps: 5, callbacks: [plot] }).train();
    // K = 2: the fixture's three blocks switch after steps 2 and 4.
    expect(plot.saveState()).toEqual({ blockSwitches: [2, 4] });
    const resumed = new LossPlotCallback({ outputDir });
    await new Trainer({ ...run, backend: backend(), maxSteps: 8, callbacks: [resumed] }).train({
      resumeFrom: await store.load(),
    });
    expect(resumed.saveState()).toEqual({ blockSwitches: [2, 4, 6, 8] });
    expect(readdirSync(outputDir)).toEqual(
      expect.arrayContaining(['training_loss.png', 'training_eval_loss.png']),
    );
  });

  it('draws markers as dashed grey lines, and raw and smoothed loss in two different colours', async () => {
    const series = [
      {
        label: 'train loss',
        points: Array.from({ length: 40 }, (_, i) => ({ step: i + 1, value: 3 - i / 20 })),
      },
    ];
    const greyPixels = async (markers: number[]) => {
      const image = await loadImage(Buffer.from(await renderLossPlot(series, { markers })));
      const canvas = createCanvas(image.width, image.height);
      const ctx = canvas.getContext('2d');
      ctx.drawImage(image, 0, 0);
      const { data: rgba } = ctx.getImageData(0, 0, image.width, image.height);
      const grey = Number.parseInt(MARKER_COLOR.slice(1, 3), 16);
      let count = 0;
      for (let i = 0; i < rgba.length; i += 4)
        if (rgba[i] === grey && rgba[i + 1] === grey && rgba[i + 2] === grey) count++;
      return count;
    };
    const without = await greyPixels([]);
    // Three dashed lines over the plot's height (about 400 px, dashes 6 on 4 off): hundreds of grey pixels.
    expect((await greyPixels([10, 20, 30])) - without).toBeGreaterThan(500);
    const datasets = lossPlotDatasets(series, { markers: [10] });
    expect(datasets.map((d) => d.label)).toEqual([
      'train loss (raw)',
      'train loss (smoothed)',
      'block switch',
    ]);
    const rgb = (d: (typeof datasets)[number]) => String(d.borderColor).slice(0, 7);
    expect(rgb(datasets[0]!)).not.toBe(rgb(datasets[1]!));
  });

  it('smooths like LLaMA-Factory: weight grows with the series length', () => {
    expect(smoothSeries([1, 1, 1])).toEqual([1, 1, 1]);
    const s = smoothSeries(Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? 0 : 2)));
    expect(Math.abs(s[99]! - 1)).toBeLessThan(0.2);
  });

  it("training_loss.png's smoothed curve starts at the first loss and does not drag it along", () => {
    // The embedded default's shape: 40 points, the loss falling from 6.5 to 0.85 by the fifth.
    const values = [6.5, 3, 1.5, 1, 0.85, ...Array.from({ length: 35 }, () => 0.8)];
    const [, smoothed] = lossPlotDatasets([
      { label: 'train loss', points: values.map((value, i) => ({ step: 20 * (i + 1), value })) },
    ]);
    expect(smoothed!.data[0]!.y).toBe(6.5);
    // Started from the first value (LLaMA-Factory's start), it read 2.44 here.
    expect(smoothed!.data[4]!.y).toBeLessThan(1.8);
  });
});

describe('band plot', () => {
  it('bandOf: mean, min and max per step over the curves, only at steps every curve has', () => {
    expect(
      bandOf([
        [
          { step: 1, value: 2 },
          { step: 2, value: 1 },
        ],
        [{ step: 1, value: 4 }],
      ]),
    ).toEqual([{ step: 1, mean: 3, low: 2, high: 4 }]);
  });

  it('renderBandPlot fills the band between the edges', async () => {
    const nonWhite = async (spread: number) => {
      const points = Array.from({ length: 30 }, (_, i) => ({
        step: i + 1,
        mean: 3 - i / 20,
        low: 3 - i / 20 - spread,
        high: 3 - i / 20 + spread,
      }));
      // The same y range in both plots: a second, fixed series spans it.
      const frame = [
        { step: 1, mean: 0, low: 0, high: 0 },
        { step: 30, mean: 5, low: 5, high: 5 },
      ];
      const png = await renderBandPlot(
        [
          { label: 'a', points },
          { label: 'frame', points: frame },
        ],
        { bandLabel: 'min-max' },
      );
      const image = await loadImage(Buffer.from(png));
      const canvas = createCanvas(image.width, image.height);
      const ctx = canvas.getContext('2d');
      ctx.drawImage(image, 0, 0);
      const { data: rgba } = ctx.getImageData(0, 0, image.width, image.height);
      let count = 0;
      for (let i = 0; i < rgba.length; i += 4) if (rgba[i]! < 250 || rgba[i + 2]! < 250) count++;
      return count;
    };
    // A band of +-0.5 over about a tenth of the plot's height, 30 steps wide: thousands of tinted pixels.
    expect((await nonWhite(0.5)) - (await nonWhite(0))).toBeGreaterThan(5000);
  });
});

describe('EarlyStoppingCallback', () => {
  it('stops after `patience` evaluations without improvement, and its counters survive a resume', async () => {
    const early = new EarlyStoppingCallback({ metric: 'eval_accuracy', patience: 2, minDelta: 2 }); // impossible to improve by 2
    const result = await new Trainer({
      backend: backend(),
      trainData: data(),
      evalData: data(8, 4),
      maxSteps: 50,
      evalSteps: 5,
      callbacks: [early],
    }).train();
    expect(early.mode).toBe('max');
    expect(result.state.globalStep).toBe(15);
    expect(result.stopReason).toMatch(
      /early stopping: eval_accuracy has not improved on [\d.]+ \(step 5\) for 2 evaluations/,
    );
    const copy = new EarlyStoppingCallback({ metric: 'eval_accuracy', patience: 2 });
    copy.loadState(early.saveState());
    expect(copy.best).toEqual(early.best);
  });
});

describe('LossSpikeMonitor', () => {
  it('warns once when the loss jumps far above its running level and stays finite; not on a healthy run', async () => {
    const warnings: string[] = [];
    const run = (schedule: (step: number) => number) =>
      new Trainer({
        backend: backend(),
        trainData: data(),
        maxSteps: 40,
        lrSchedule: schedule,
        callbacks: [new LossSpikeMonitor({ warn: (m) => warnings.push(m) })],
      }).train();
    await run(() => 0.05);
    expect(warnings).toEqual([]);
    // From step 20 on, a learning rate of 1e3: Adam's steps of about lr throw the weights far off.
    const result = await run((step) => (step >= 20 ? 1e3 : 0.05));
    expect(result.metrics.train_loss).toBeLessThan(Number.POSITIVE_INFINITY);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      /^BAdam: loss \d+\.\d{4} at step 2\d is [\d.]+x its running level \d+\.\d{4}: training may be diverging \(learning rate 1\.00e\+3 too high\?\)$/,
    );
  });
});

describe('NonFiniteLossGuard', () => {
  it('skips a NaN step with a warning, and stops after M in a row', async () => {
    const warnings: string[] = [];
    const flaky = backend();
    const forwardBackward = flaky.forwardBackward.bind(flaky);
    let calls = 0;
    flaky.forwardBackward = (batch) => {
      const result = forwardBackward(batch);
      calls += 1;
      return calls === 3 || calls >= 10 ? { ...result, loss: Number.NaN } : result;
    };
    const result = await new Trainer({
      backend: flaky,
      trainData: data(),
      maxSteps: 50,
      callbacks: [new NonFiniteLossGuard({ maxConsecutive: 3, warn: (m) => warnings.push(m) })],
    }).train();
    expect(warnings[0]).toMatch(/loss NaN at step 2: skipping this step's gradients \(1\/3 in a row\)/);
    expect(warnings.at(-1)).toMatch(/loss NaN for 3 micro-batches in a row at step 8: stopping/);
    expect(result.state.globalStep).toBe(8);
    expect(result.state.skippedMicroBatches).toBe(4);
  });
});

describe('BlockSwitchLogCallback', () => {
  it('logs each switch with the memory held', async () => {
    const lines: string[] = [];
    await new Trainer({
      backend: backend(),
      trainData: data(),
      maxSteps: 6,
      callbacks: [new BlockSwitchLogCallback({ log: (m) => lines.push(m) })],
    }).train();
    expect(lines[0]).toMatch(/starting on block 0; holding [\d.]+ MB/);
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(
        /step 2: block 0 -> 1; holding [\d.]+ MB \(weights [\d.]+ MB, masters|step 2: block 0 -> 1; holding [\d.]+ MB \(weights/,
      ),
      expect.stringMatching(/step 4: block 1 -> 2/),
      expect.stringMatching(/step 6: block 2 -> 0/),
    ]);
  });
});

describe('runCallbacks', () => {
  it("is the runners' set: progress, trainer_log.jsonl, block-switch log and the loss plot, on real files", async () => {
    const outputDir = freshDir();
    const progress = new Capture();
    const logged: string[] = [];
    await new Trainer({
      backend: backend(),
      trainData: data(),
      maxSteps: 6,
      loggingSteps: 2,
      callbacks: runCallbacks({
        outputDir,
        loggingSteps: 2,
        plotLoss: true,
        blockSwitchVerbose: 1,
        log: (m) => logged.push(m),
        warn: (m) => logged.push(`warn: ${m}`),
        stream: progress as unknown as NodeJS.WriteStream,
      }),
    }).train();
    expect(progress.text).toMatch(/step 6\/6/);
    expect((await readTrainerLog(join(outputDir, 'trainer_log.jsonl'))).map((l) => l.current_steps)).toEqual([
      2, 4, 6,
    ]);
    expect(existsSync(join(outputDir, 'training_loss.png'))).toBe(true);
    expect(logged.filter((m) => /block \d -> \d/.test(m))).toHaveLength(3);
  });

  it('leaves the block-switch log and the plot out when asked', () => {
    const callbacks = runCallbacks({
      outputDir: freshDir(),
      loggingSteps: 1,
      plotLoss: false,
      blockSwitchVerbose: 0,
      log: () => {},
      warn: () => {},
    });
    expect(callbacks.map((c) => c.constructor.name)).toEqual([
      'ProgressCallback',
      'MetricsLogCallback',
      'NonFiniteLossGuard',
      'LossSpikeMonitor',
      'InterruptCallback',
    ]);
  });
});

describe('fitCallbacks (the LayersModel.fit adapter)', () => {
  it("turns fit's batch and epoch hooks into trainer events, and a stop request into model.stopTraining", async () => {
    const outputDir = freshDir();
    const model = { stopTraining: false };
    const optimizer = {
      lr: 0.01,
      activeBlock: { index: 2 },
      lastStep: { switched: true, updatedBlock: 1, activeBlock: 2 },
    };
    const switches: unknown[] = [];
    const hooks = fitCallbacks({
      callbacks: [
        new MetricsLogCallback({ outputDir }),
        { onBlockSwitch: (_c, change) => void switches.push(change) },
        new EarlyStoppingCallback({ patience: 1 }),
      ],
      totalSteps: 6,
      batchesPerEpoch: 3,
      optimizer,
      model,
      loggingSteps: 3,
    });
    await hooks.onTrainBegin();
    for (let epoch = 0; epoch < 2; epoch++) {
      for (let b = 0; b < 3; b++) await hooks.onBatchEnd(b, { loss: 1 - 0.1 * (3 * epoch + b) });
      await hooks.onEpochEnd(epoch, { loss: 0.5, val_loss: 0.7 });
    }
    await hooks.onTrainEnd();
    const lines = await readTrainerLog(join(outputDir, 'trainer_log.jsonl'));
    expect(
      lines.map((l) => [
        l.current_steps,
        l.loss === null ? null : Number((l.loss as number).toFixed(2)),
        l.eval_loss,
      ]),
    ).toEqual([
      [3, 0.9, null],
      [3, null, 0.7],
      [6, 0.6, null],
      [6, null, 0.7],
    ]);
    expect(lines[0]).toMatchObject({ learning_rate: 0.01, active_block: 2 });
    expect(switches).toHaveLength(6);
    expect(model.stopTraining).toBe(true); // eval_loss did not improve at the second epoch: patience 1
  });
});

describe('InterruptCallback (Ctrl-C)', () => {
  it('finishes the step, saves a checkpoint and exits with 130; the run resumes from it', async () => {
    const outputDir = freshDir();
    const script = fileURLToPath(new URL('./fixtures/interrupted-run.mjs', import.meta.url));
    const child = spawn(process.execPath, [script, outputDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (d) => {
        stdout += d;
        if (/step 5\n/.test(stdout)) resolve();
      });
    });
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(code, stderr).toBe(130);
    expect(stderr).toMatch(/interrupted: finishing the current step, then saving a checkpoint/);
    const stopped = /stopped: interrupted at (\d+), saved (.+)\n/.exec(stdout);
    expect(stopped).not.toBeNull();
    const step = Number(stopped![1]);
    expect(step).toBeGreaterThanOrEqual(5);
    expect(existsSync(join(outputDir, `checkpoint-${step}`, 'checkpoint.json'))).toBe(true);
    const checkpoint = await new SafetensorsCheckpointStore({ outputDir }).load();
    expect(checkpoint.trainerState.globalStep).toBe(step);
    const result = await new Trainer({ backend: backend(), trainData: data(), maxSteps: step + 4 }).train({
      resumeFrom: checkpoint,
    });
    expect(result.state.globalStep).toBe(step + 4);
  });
});
