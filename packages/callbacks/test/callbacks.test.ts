import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
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
  CheckpointError,
  EarlyStoppingCallback,
  fitCallbacks,
  HF_TRAINER_STATE_FIELDS,
  LossPlotCallback,
  LossSpikeMonitor,
  lossPlotDatasets,
  MARKER_COLOR,
  MetricsLogCallback,
  NonFiniteLossGuard,
  ProgressCallback,
  prepareOutputDir,
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

describe('SafetensorsCheckpointStore', () => {
  it('saves every saveSteps and at the end, keeps the last N, leaves no temporary files', async () => {
    const outputDir = freshDir();
    const store = new SafetensorsCheckpointStore({ outputDir, keepLast: 2 });
    await new Trainer({
      backend: backend(),
      trainData: data(),
      maxSteps: 17,
      saveSteps: 5,
      checkpoints: store,
    }).train();
    expect(readdirSync(outputDir).sort()).toEqual(['checkpoint-15', 'checkpoint-17']);
    expect(readdirSync(join(outputDir, 'checkpoint-17')).sort()).toEqual([
      'badam_trainer_state.json',
      'checkpoint.json',
      'model.safetensors',
      'optimizer.safetensors',
      'optimizer_state.json',
      'trainer_state.json',
    ]);
    const optimizerState = JSON.parse(
      readFileSync(join(outputDir, 'checkpoint-17', 'optimizer_state.json'), 'utf8'),
    );
    expect(optimizerState).toMatchObject({
      version: 1,
      globalStep: 17,
      schedule: { switchMode: 'ascending', order: [0, 1, 2] },
    });
  });

  for (const stepsBefore of [6, 7]) {
    it(`resume is exact: 2N straight == N + save + resume + N, bit for bit (N = ${stepsBefore}, random order, accumulation 2)`, async () => {
      const options = { switchMode: 'random', seed: 4, gradientAccumulationSteps: 2 };
      const straight = backend(options);
      await new Trainer({ backend: straight, trainData: data(), maxSteps: 2 * stepsBefore }).train();

      const outputDir = freshDir();
      const store = new SafetensorsCheckpointStore({ outputDir });
      await new Trainer({
        backend: backend(options),
        trainData: data(),
        maxSteps: stepsBefore,
        checkpoints: store,
      }).train();
      const resumed = backend(options, 999); // other initial weights: the checkpoint must restore everything
      const result = await new Trainer({
        backend: resumed,
        trainData: data(),
        maxSteps: 2 * stepsBefore,
      }).train({
        resumeFrom: await store.load(),
      });
      expect(result.state.globalStep).toBe(2 * stepsBefore);
      for (const p of ['model.layers.0.w', 'model.layers.1.w', 'model.layers.2.w']) {
        expect(resumed.backend.weight(p)).toEqual(straight.backend.weight(p));
      }
    });
  }

  it('a truncated, corrupt or incomplete checkpoint is an error that names the file', async () => {
    const outputDir = freshDir();
    const store = new SafetensorsCheckpointStore({ outputDir });
    await new Trainer({ backend: backend(), trainData: data(), maxSteps: 4, checkpoints: store }).train();
    const dir = join(outputDir, 'checkpoint-4');
    const weights = join(dir, 'model.safetensors');
    const original = readFileSync(weights);
    truncateSync(weights, original.length - 3);
    await expect(store.load()).rejects.toThrow(CheckpointError);
    await expect(store.load()).rejects.toThrow(
      /checkpoint-4\/model.safetensors: \d+ bytes, the manifest says \d+: truncated or replaced/,
    );
    const flipped = Buffer.from(original);
    flipped.writeUInt8(flipped.readUInt8(flipped.length - 1) ^ 0xff, flipped.length - 1);
    writeFileSync(weights, flipped);
    await expect(store.load()).rejects.toThrow(
      /model.safetensors: contents do not match the manifest's SHA-256: the file is corrupt/,
    );
    writeFileSync(weights, original);
    await expect(store.load()).resolves.toMatchObject({ path: dir });
    rmSync(join(dir, 'checkpoint.json'));
    await expect(store.load()).rejects.toThrow(
      /checkpoint-4\/checkpoint.json: missing: the checkpoint is incomplete/,
    );
    await expect(new SafetensorsCheckpointStore({ outputDir: freshDir() }).load()).rejects.toThrow(
      /no checkpoint-<step> directory to resume from/,
    );
  });
});

describe('SafetensorsCheckpointStore: nothing hidden, nothing lost', () => {
  it('a checkpoint.json edited to drop a file is an error naming the file, not a way to hide its corruption', async () => {
    const outputDir = freshDir();
    const store = new SafetensorsCheckpointStore({
      outputDir,
      writeModelFiles: async (directory) => writeFileSync(join(directory, 'config.json'), '{}'),
    });
    await new Trainer({ backend: backend(), trainData: data(), maxSteps: 4, checkpoints: store }).train();
    const dir = join(outputDir, 'checkpoint-4');
    const manifestPath = join(dir, 'checkpoint.json');
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    for (const dropped of ['model.safetensors', 'config.json']) {
      const edited = structuredClone(manifest);
      delete edited.files[dropped];
      writeFileSync(manifestPath, JSON.stringify(edited));
      await expect(store.load(dir)).rejects.toThrow(
        `${manifestPath}: does not list ${dropped}, so that file cannot be checked: the manifest was edited or the checkpoint is incomplete; resume from another checkpoint`,
      );
    }
    writeFileSync(manifestPath, JSON.stringify(manifest));
    await expect(store.load(dir)).resolves.toMatchObject({ path: dir });
  });

  it('resume true names a checkpoint it skipped for a missing or truncated checkpoint.json', async () => {
    const outputDir = freshDir();
    const store = new SafetensorsCheckpointStore({ outputDir, keepLast: 3 });
    await new Trainer({
      backend: backend(),
      trainData: data(),
      maxSteps: 9,
      saveSteps: 3,
      checkpoints: store,
    }).train();
    rmSync(join(outputDir, 'checkpoint-9', 'checkpoint.json'));
    truncateSync(join(outputDir, 'checkpoint-6', 'checkpoint.json'), 20);
    const logged: string[] = [];
    const checkpoint = await new SafetensorsCheckpointStore({ outputDir, log: (m) => logged.push(m) }).load();
    expect(checkpoint.trainerState.globalStep).toBe(3);
    expect(logged.sort()).toEqual([
      expect.stringMatching(/^skipped a corrupt checkpoint: .*checkpoint-6\/checkpoint\.json: unreadable \(/),
      expect.stringMatching(
        /^skipped a corrupt checkpoint: .*checkpoint-9\/checkpoint\.json: missing: the checkpoint is incomplete$/,
      ),
    ]);
  });

  it('a symbolic link loop as the checkpoint is named as one, not as missing', async () => {
    const loop = join(root, 'checkpoint-loop');
    symlinkSync(loop, loop);
    await expect(new SafetensorsCheckpointStore({ outputDir: freshDir() }).load(loop)).rejects.toThrow(
      `${loop} is a symbolic link that loops (ELOOP): point it at a checkpoint`,
    );
  });

  it('a checkpoint that cannot be written names the checkpoint, not its temporary directory', async () => {
    const blocker = join(root, 'blocker-file');
    writeFileSync(blocker, 'x');
    const outputDir = join(blocker, 'out');
    const error = await new Trainer({
      backend: backend(),
      trainData: data(),
      maxSteps: 2,
      checkpoints: new SafetensorsCheckpointStore({ outputDir }),
    })
      .train()
      .catch((e: unknown) => e);
    expect((error as Error).message).toMatch(
      new RegExp(
        `^cannot write ${join(outputDir, 'checkpoint-2')}: a part of its path is a file, not a directory`,
      ),
    );
  });

  it('trainer_log.jsonl deleted before a resume: the earlier lines come back from the checkpoint', async () => {
    const outputDir = freshDir();
    const run = async (maxSteps: number, resumeFrom?: string) => {
      const store = new SafetensorsCheckpointStore({ outputDir, keepLast: 5 });
      await new Trainer({
        backend: backend(),
        trainData: data(),
        maxSteps,
        loggingSteps: 2,
        saveSteps: 6,
        checkpoints: store,
        callbacks: [new MetricsLogCallback({ outputDir })],
      }).train(resumeFrom ? { resumeFrom: await store.load(resumeFrom) } : {});
    };
    await run(10);
    const log = join(outputDir, 'trainer_log.jsonl');
    const straight = readFileSync(log, 'utf8').split('\n').filter(Boolean);
    rmSync(log);
    await run(10, join(outputDir, 'checkpoint-6'));
    const resumed = readFileSync(log, 'utf8').split('\n').filter(Boolean);
    expect(resumed.map((l) => JSON.parse(l).current_steps)).toEqual([2, 4, 6, 8, 10]);
    expect(resumed.slice(0, 3)).toEqual(straight.slice(0, 3));
  });
});

describe("SafetensorsCheckpointStore: Hugging Face's layout", () => {
  it("writes trainer_state.json in Hugging Face's schema and the model files it is given, all in the manifest", async () => {
    const outputDir = freshDir();
    const store = new SafetensorsCheckpointStore({
      outputDir,
      trainingArguments: {
        loggingSteps: 2,
        evalSteps: 3,
        saveSteps: 4,
        trainBatchSize: 8,
        numTrainEpochs: 2,
        parameters: 10,
      },
      writeModelFiles: async (dir) => writeFileSync(join(dir, 'config.json'), '{"model_type":"llama"}'),
    });
    await new Trainer({
      backend: backend(),
      trainData: data(),
      evalData: data(),
      maxSteps: 6,
      loggingSteps: 2,
      evalSteps: 3,
      saveSteps: 4,
      checkpoints: store,
    }).train();
    const dir = join(outputDir, 'checkpoint-4');
    const hf = JSON.parse(readFileSync(join(dir, 'trainer_state.json'), 'utf8')) as Record<string, unknown>;
    // transformers.TrainerState's fields, every one.
    expect(Object.keys(hf).sort()).toEqual([...HF_TRAINER_STATE_FIELDS].sort());
    expect(hf).toMatchObject({
      global_step: 4,
      max_steps: 6,
      logging_steps: 2,
      eval_steps: 3,
      save_steps: 4,
    });
    expect(hf.best_model_checkpoint).toBeNull();
    const history = hf.log_history as Array<Record<string, number>>;
    // Train and eval entries apart, as Hugging Face keeps them: steps 2 and 4 train, 3 eval.
    expect(history.map((e) => [e.step, e.loss !== undefined ? 'train' : 'eval'])).toEqual([
      [2, 'train'],
      [3, 'eval'],
      [4, 'train'],
    ]);
    expect(history[1]!.eval_loss).toBeTypeOf('number');
    expect(history[2]!.epoch).toBeGreaterThan(history[0]!.epoch!);
    const manifest = JSON.parse(readFileSync(join(dir, 'checkpoint.json'), 'utf8')) as {
      files: Record<string, unknown>;
    };
    expect(Object.keys(manifest.files)).toEqual(
      expect.arrayContaining(['config.json', 'trainer_state.json']),
    );
    writeFileSync(join(dir, 'config.json'), '{"model_type":"gpt2"}');
    await expect(store.load(dir)).rejects.toThrow(
      /config.json: \d+ bytes, the manifest says|config.json: contents/,
    );
  });

  it('loads a checkpoint saved before badam_trainer_state.json, whose trainer_state.json held the trainer state', async () => {
    const outputDir = freshDir();
    const store = new SafetensorsCheckpointStore({ outputDir });
    await new Trainer({ backend: backend(), trainData: data(), maxSteps: 3, checkpoints: store }).train();
    const dir = join(outputDir, 'checkpoint-3');
    // Make it what the old store wrote: its own state as trainer_state.json, and a manifest of five files.
    const manifestPath = join(dir, 'checkpoint.json');
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as { files: Record<string, unknown> };
    writeFileSync(join(dir, 'trainer_state.json'), readFileSync(join(dir, 'badam_trainer_state.json')));
    rmSync(join(dir, 'badam_trainer_state.json'));
    manifest.files['trainer_state.json'] = manifest.files['badam_trainer_state.json'];
    delete manifest.files['badam_trainer_state.json'];
    writeFileSync(manifestPath, JSON.stringify(manifest));
    const loaded = await store.load(dir);
    expect(loaded.trainerState.globalStep).toBe(3);
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

describe('SafetensorsCheckpointStore: timelines', () => {
  async function runTo(outputDir: string, maxSteps: number, saveSteps: number, resumeFrom?: string) {
    const store = new SafetensorsCheckpointStore({ outputDir, keepLast: 2 });
    const trainer = new Trainer({
      backend: backend(),
      trainData: data(),
      maxSteps,
      saveSteps,
      checkpoints: store,
    });
    await trainer.train(resumeFrom ? { resumeFrom: await store.load(resumeFrom) } : {});
    return store;
  }

  it("rotation keeps the newest checkpoints of this run's timeline, not the highest steps; resume true takes the last saved", async () => {
    const outputDir = freshDir();
    await runTo(outputDir, 20, 5);
    expect(readdirSync(outputDir).sort()).toEqual(['checkpoint-15', 'checkpoint-20']);
    // Back to step 15 (say checkpoint-20 diverged), and save at 16: checkpoint-20 belongs to the abandoned run.
    const logged: string[] = [];
    const store = new SafetensorsCheckpointStore({ outputDir, keepLast: 2, log: (m) => logged.push(m) });
    await new Trainer({
      backend: backend(),
      trainData: data(),
      maxSteps: 16,
      saveSteps: 4,
      checkpoints: store,
    }).train({
      resumeFrom: await store.load(join(outputDir, 'checkpoint-15')),
    });
    expect(readdirSync(outputDir).sort()).toEqual(['checkpoint-15', 'checkpoint-16']);
    expect(logged).toEqual([
      "removed checkpoint-20: not on this run's timeline (it resumed from an earlier checkpoint)",
    ]);
    const latest = await new SafetensorsCheckpointStore({ outputDir }).load();
    expect(latest.trainerState.globalStep).toBe(16);
  });

  it('resume true takes the newest checkpoint that verifies, and says which corrupt one it skipped', async () => {
    const outputDir = freshDir();
    await runTo(outputDir, 10, 5);
    truncateSync(join(outputDir, 'checkpoint-10', 'optimizer.safetensors'), 10);
    const logged: string[] = [];
    const checkpoint = await new SafetensorsCheckpointStore({ outputDir, log: (m) => logged.push(m) }).load();
    expect(checkpoint.trainerState.globalStep).toBe(5);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatch(
      /^skipped a corrupt checkpoint: .*checkpoint-10\/optimizer\.safetensors: \d+ bytes, the manifest says \d+/,
    );
  });

  it('a checkpoint path that does not exist, or is a file, says so', async () => {
    const store = new SafetensorsCheckpointStore({ outputDir: freshDir() });
    await expect(store.load(join(root, 'nonexistent'))).rejects.toThrow(
      /nonexistent does not exist: give a checkpoint-<step> directory of an earlier run, or true/,
    );
    const file = join(root, 'a-file');
    writeFileSync(file, 'x');
    await expect(store.load(file)).rejects.toThrow(
      /a-file is a file: a checkpoint is a checkpoint-<step> directory/,
    );
  });
});

describe('prepareOutputDir', () => {
  it('removes what interrupted saves left behind, and does not count it as earlier work', async () => {
    const dir = freshDir();
    mkdirSync(join(dir, '.checkpoint-30.1a2b3c4d.tmp'), { recursive: true });
    writeFileSync(join(dir, '.checkpoint-30.1a2b3c4d.tmp', 'model.safetensors'), 'half');
    mkdirSync(join(dir, 'checkpoint-20.old-deadbeef'));
    writeFileSync(join(dir, '.trainer_log.jsonl.4242.0badf00d.tmp'), 'half');
    const { unfinished, lock } = await prepareOutputDir(dir, { overwrite: false, resuming: false });
    expect(unfinished.sort()).toEqual([
      '.checkpoint-30.1a2b3c4d.tmp',
      '.trainer_log.jsonl.4242.0badf00d.tmp',
      'checkpoint-20.old-deadbeef',
    ]);
    lock.release();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses earlier work unless overwriting or resuming, a file, and a path through a file', async () => {
    const dir = freshDir();
    mkdirSync(join(dir, 'checkpoint-5'), { recursive: true });
    writeFileSync(join(dir, 'config.json'), '{}');
    await expect(prepareOutputDir(dir, { overwrite: false, resuming: false })).rejects.toThrow(
      /holds earlier work \(1 checkpoint, config\.json\): pass --overwrite_output_dir to replace it, --resume_from_checkpoint to continue its run, or another --output_dir/,
    );
    (await prepareOutputDir(dir, { overwrite: false, resuming: true })).lock.release();
    expect(readdirSync(dir).sort()).toEqual(['checkpoint-5', 'config.json']);
    const file = join(dir, 'config.json');
    await expect(prepareOutputDir(file, { overwrite: true, resuming: false })).rejects.toThrow(
      /--output_dir .*config\.json is a file, not a directory: choose another --output_dir/,
    );
    await expect(prepareOutputDir(join(file, 'run'), { overwrite: false, resuming: false })).rejects.toThrow(
      /cannot write to output directory .*config\.json\/run \(a part of the path is a file\): choose another --output_dir/,
    );
    // Node's own recursive mkdir never returns here.
    await expect(prepareOutputDir('/proc/badam-run', { overwrite: false, resuming: false })).rejects.toThrow(
      /cannot write to output directory \/proc\/badam-run \(the file system cannot make a directory there\): choose another --output_dir/,
    );
  });
});

describe('prepareOutputDir: what a run must never write over', () => {
  it('--overwrite_output_dir removes what the earlier run wrote (model, adapters, results, predictions, logs), nothing else', async () => {
    const dir = freshDir();
    mkdirSync(join(dir, 'checkpoint-5'), { recursive: true });
    const earlier = [
      ...['model.safetensors', 'adapter_model.safetensors', 'adapter_config.json', 'config.json'],
      ...['tokenizer.json', 'all_results.json', 'eval_results.json', 'predict_results.json'],
      ...['generated_predictions.jsonl', 'val_predictions.jsonl', 'trainer_log.jsonl', 'trainer_state.json'],
      ...['training_loss.png', 'training_eval_loss.png', 'model-00001-of-00002.safetensors'],
    ];
    for (const name of [...earlier, 'notes.txt', 'my-data.json']) writeFileSync(join(dir, name), 'x');
    const { replaced, lock } = await prepareOutputDir(dir, { overwrite: true, resuming: false });
    lock.release();
    expect(replaced.sort()).toEqual(['checkpoint-5', ...earlier].sort());
    expect(readdirSync(dir).sort()).toEqual(['my-data.json', 'notes.txt']);
  });

  it('an empty --output_dir (an unset shell variable) is refused: it would be the current directory', async () => {
    for (const empty of ['', ' ']) {
      await expect(prepareOutputDir(empty, { overwrite: true, resuming: false })).rejects.toThrow(
        '--output_dir is empty (an unset shell variable?): it would mean the current directory; name the directory to write to',
      );
    }
  });

  it('resuming a checkpoint of another directory into one holding earlier work is refused, unless overwriting', async () => {
    const dir = freshDir();
    mkdirSync(join(dir, 'checkpoint-9'), { recursive: true });
    writeFileSync(join(dir, 'model.safetensors'), 'another run');
    const options = { overwrite: false, resuming: false, resumingFrom: '/runs/a/checkpoint-50' };
    await expect(prepareOutputDir(dir, options)).rejects.toThrow(
      `--resume_from_checkpoint /runs/a/checkpoint-50 continues a run of another directory, but output directory ${dir} holds earlier work (1 checkpoint, model.safetensors), which the resumed run would delete or mix with its own: pass --overwrite_output_dir to replace it, or choose an empty --output_dir`,
    );
    expect(readdirSync(dir).sort()).toEqual(['checkpoint-9', 'model.safetensors']);
    (await prepareOutputDir(freshDir(), options)).lock.release(); // an empty (new) directory is fine
    (await prepareOutputDir(dir, { ...options, overwrite: true })).lock.release();
    expect(readdirSync(dir)).toEqual([]);
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
