import {
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
import { Trainer } from '@badam/core';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CheckpointError,
  HF_TRAINER_STATE_FIELDS,
  MetricsLogCallback,
  SafetensorsCheckpointStore,
} from '../src/index.js';
import { backend, data } from './fixtures/linear-task.mjs';

const root = mkdtempSync(join(tmpdir(), 'badam-callbacks-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let runs = 0;
const freshDir = () => join(root, `run-${runs++}`);

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
