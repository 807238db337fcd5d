import { describe, expect, it } from 'vitest';
import {
  arrayDataSource,
  type Checkpoint,
  type CheckpointStore,
  createLrSchedule,
  type LogEntry,
  Trainer,
  type TrainerCallback,
  type TrainerState,
  type TrainingSnapshot,
} from '../src/index.js';
import { type Batch, collate, regressionExamples, TwoLayerBackend } from './fixtures/two-layer-backend.js';

/** A checkpoint store that keeps deep copies in memory (the file-backed one lives in @badam/callbacks). */
class MemoryStore implements CheckpointStore {
  readonly saved = new Map<string, Checkpoint>();
  async save(step: number, snapshot: TrainingSnapshot, trainerState: TrainerState): Promise<string> {
    const path = `checkpoint-${step}`;
    this.saved.set(path, structuredClone({ path, snapshot, trainerState }));
    return path;
  }
  async load(path?: string): Promise<Checkpoint> {
    const key = path ?? [...this.saved.keys()].at(-1)!;
    return structuredClone(this.saved.get(key)!);
  }
}

const examples = regressionExamples(24);
const data = (shuffleSeed = 3) => arrayDataSource(examples, { batchSize: 4, collate, shuffleSeed });

class Recorder implements TrainerCallback {
  readonly events: string[] = [];
  readonly logs: LogEntry[] = [];
  readonly switches: Array<{ from: number; to: number }> = [];
  onTrainBegin() {
    this.events.push('begin');
  }
  onStepBegin() {
    this.events.push('stepBegin');
  }
  onStepEnd() {
    this.events.push('stepEnd');
  }
  onBlockSwitch(_: unknown, change: { from: number; to: number }) {
    this.switches.push(change);
  }
  onLog(_: unknown, entry: LogEntry) {
    this.logs.push(entry);
  }
  onEvaluate() {
    this.events.push('evaluate');
  }
  onSave() {
    this.events.push('save');
  }
  onTrainEnd() {
    this.events.push('end');
  }
}

describe('Trainer', () => {
  it('runs epochs of micro-batches, steps the optimizer, logs, evaluates and reports', async () => {
    const backend = new TwoLayerBackend();
    const recorder = new Recorder();
    const trainer = new Trainer<Batch>({
      backend,
      trainData: data(),
      evalData: arrayDataSource(regressionExamples(8, 99), { batchSize: 4, collate }),
      numEpochs: 4,
      loggingSteps: 4,
      evalSteps: 12,
      callbacks: [recorder],
    });
    const before = trainer.state.maxSteps;
    expect(before).toBe(24); // 6 micro-batches per epoch x 4 epochs
    const result = await trainer.train();
    expect(result.state.globalStep).toBe(24);
    expect(result.metrics.epoch).toBe(4);
    expect(recorder.events.filter((e) => e === 'stepEnd')).toHaveLength(24);
    expect(recorder.events[0]).toBe('begin');
    expect(recorder.events.at(-1)).toBe('end');
    expect(recorder.events.filter((e) => e === 'evaluate')).toHaveLength(2); // steps 12 and 24
    // K = 3 with two blocks: switches after steps 3, 6, 9, ...
    expect(recorder.switches.slice(0, 3)).toEqual([
      { from: 0, to: 1 },
      { from: 1, to: 0 },
      { from: 0, to: 1 },
    ]);
    const trainLogs = recorder.logs.filter((l) => l.loss !== undefined);
    expect(trainLogs.map((l) => l.step)).toEqual([4, 8, 12, 16, 20, 24]);
    expect(trainLogs[0]).toMatchObject({ epoch: 0.6667, learning_rate: 0.05 });
    expect(trainLogs.at(-1)!.loss!).toBeLessThan(trainLogs[0]!.loss!);
    // Token-weighted mean over the eval batches = the loss over all 8 eval examples at once.
    const all = await backend.evaluate(collate(regressionExamples(8, 99)));
    expect(result.metrics.eval_loss).toBeCloseTo(all.loss, 12);
    expect(result.metrics.eval_rmse).toBeGreaterThan(0);
    expect(result.state.tokensSeen).toBe(24 * 4);
  });

  it('sets the learning rate of every step from the schedule, and the backend updates with it', async () => {
    const backend = new TwoLayerBackend();
    // What reaches the tensors: the lr of every update the ReferenceBackend applies.
    const applied: number[] = [];
    const applyUpdate = backend.backend.applyUpdate.bind(backend.backend);
    backend.backend.applyUpdate = (update) => {
      applied.push(update.lr);
      applyUpdate(update);
    };
    const seen: number[] = [];
    const trainer = new Trainer<Batch>({
      backend,
      trainData: data(),
      maxSteps: 6,
      lrSchedule: createLrSchedule({ type: 'linear', learningRate: 0.06, totalSteps: 6, warmupSteps: 2 }),
      callbacks: [{ onStepBegin: (c) => void seen.push(c.progress.lr) }],
    });
    await trainer.train();
    const expected = [0, 0.03, 0.06, 0.045, 0.03, 0.015];
    expect(applied.map((x) => Number(x.toFixed(6)))).toEqual(expected);
    expect(seen.map((x) => Number(x.toFixed(6)))).toEqual(expected);
  });

  it('gradient accumulation: G micro-batches per step; K counts steps', async () => {
    const backend = new TwoLayerBackend({ gradientAccumulationSteps: 2 });
    const scales: number[] = [];
    const applyUpdate = backend.backend.applyUpdate.bind(backend.backend);
    backend.backend.applyUpdate = (update) => {
      scales.push(update.gradientScale);
      applyUpdate(update);
    };
    const recorder = new Recorder();
    const trainer = new Trainer<Batch>({ backend, trainData: data(), numEpochs: 2, callbacks: [recorder] });
    expect(trainer.state.maxSteps).toBe(6);
    await trainer.train();
    // 12 micro-batches reached the backend as 6 updates of their mean.
    expect(scales).toEqual([0.5, 0.5, 0.5, 0.5, 0.5, 0.5]);
    expect(recorder.switches).toEqual([
      { from: 0, to: 1 },
      { from: 1, to: 0 },
    ]);
    expect(backend.optimizer.globalStepCount).toBe(6);
  });

  it("a loss verdict of skip drops the step's gradients; stop ends the run", async () => {
    const backend = new TwoLayerBackend({ gradientAccumulationSteps: 2 });
    backend.lossOverrides.set(3, Number.NaN); // the second micro-batch of step 2
    const trainer = new Trainer<Batch>({
      backend,
      trainData: data(),
      maxSteps: 4,
      callbacks: [{ onMicroBatchLoss: (_, loss) => (Number.isFinite(loss) ? 'keep' : 'skip') }],
    });
    const result = await trainer.train();
    expect(result.state.skippedMicroBatches).toBe(1);
    expect(result.state.globalStep).toBe(4);
    // 4 steps of 2 micro-batches plus the one skipped (and its partner, dropped with it): 10 consumed.
    expect(result.state.epoch * 6 + result.state.microBatchInEpoch).toBe(10);

    const stopped = new TwoLayerBackend();
    stopped.lossOverrides.set(2, Number.POSITIVE_INFINITY);
    const run = await new Trainer<Batch>({
      backend: stopped,
      trainData: data(),
      maxSteps: 10,
      callbacks: [{ onMicroBatchLoss: (_, loss) => (Number.isFinite(loss) ? undefined : 'stop') }],
    }).train();
    expect(run.state.globalStep).toBe(2);
    expect(run.stopReason).toMatch(/loss of Infinity/);
  });

  it('never saves weights that are not finite: the run stops as diverged, earlier checkpoints stay', async () => {
    const store = new MemoryStore();
    const recorder = new Recorder();
    // A learning rate of 1e300 at the third step sends the float32 weights to infinity.
    const run = await new Trainer<Batch>({
      backend: new TwoLayerBackend(),
      trainData: data(),
      maxSteps: 10,
      saveSteps: 1,
      checkpoints: store,
      lrSchedule: (step) => (step === 2 ? 1e300 : 0.05),
      callbacks: [recorder],
    }).train();
    expect([...store.saved.keys()]).toEqual(['checkpoint-1', 'checkpoint-2']);
    expect(run.diverged).toBe(true);
    expect(run.lastCheckpoint).toBe('checkpoint-2');
    expect(run.state.globalStep).toBe(3);
    expect(run.stopReason).toMatch(/at step 3 \d+ tensor\(s\) hold NaN or infinity \(.*\): not saved/);
    expect(recorder.events.filter((e) => e === 'save')).toHaveLength(2);

    // A stop by the loss guard saves nothing at the end either (the weights that made the loss NaN).
    const guarded = new TwoLayerBackend();
    guarded.lossOverrides.set(4, Number.NaN);
    const store2 = new MemoryStore();
    const stopped = await new Trainer<Batch>({
      backend: guarded,
      trainData: data(),
      maxSteps: 10,
      saveSteps: 3,
      checkpoints: store2,
      callbacks: [{ onMicroBatchLoss: (_, loss) => (Number.isFinite(loss) ? 'keep' : 'stop') }],
    }).train();
    expect(stopped.diverged).toBe(true);
    expect([...store2.saved.keys()]).toEqual(['checkpoint-3']);

    const finished = await new Trainer<Batch>({
      backend: new TwoLayerBackend(),
      trainData: data(),
      maxSteps: 2,
    }).train();
    expect(finished.diverged).toBe(false);
  });

  it('control: a callback can stop after the current step and request a save', async () => {
    const store = new MemoryStore();
    const recorder = new Recorder();
    const result = await new Trainer<Batch>({
      backend: new TwoLayerBackend(),
      trainData: data(),
      maxSteps: 20,
      checkpoints: store,
      saveAtEnd: false,
      callbacks: [
        recorder,
        {
          onStepEnd: (c) => {
            if (c.progress.step === 5) {
              c.control.requestSave();
              c.control.stop('interrupted');
            }
          },
        },
      ],
    }).train();
    expect(result.stopReason).toBe('interrupted');
    expect(result.state.globalStep).toBe(5);
    expect([...store.saved.keys()]).toEqual(['checkpoint-5']);
    expect(recorder.events.filter((e) => e === 'save')).toHaveLength(1);
  });

  it('resume: 2N steps straight equal N, checkpoint, resume, N — weights bit for bit, at any step', async () => {
    for (const n of [6, 7]) {
      const straight = new TwoLayerBackend({ switchMode: 'random', seed: 5 });
      await new Trainer<Batch>({ backend: straight, trainData: data(), maxSteps: 2 * n }).train();

      const store = new MemoryStore();
      const first = new TwoLayerBackend({ switchMode: 'random', seed: 5 });
      await new Trainer<Batch>({
        backend: first,
        trainData: data(),
        maxSteps: n,
        checkpoints: store,
      }).train();
      const resumed = new TwoLayerBackend({ switchMode: 'random', seed: 5 }, 123); // other initial weights: all restored
      const result = await new Trainer<Batch>({ backend: resumed, trainData: data(), maxSteps: 2 * n }).train(
        {
          resumeFrom: await store.load(),
        },
      );
      expect(result.state.globalStep).toBe(2 * n);
      for (const name of ['model.layers.0.w', 'model.layers.1.w']) {
        expect(resumed.backend.weight(name)).toEqual(straight.backend.weight(name));
      }
    }
  });

  it('resuming at the last step trains nothing and saves nothing again: the checkpoint stays as it is', async () => {
    const store = new MemoryStore();
    const first = new TwoLayerBackend({ switchMode: 'random', seed: 5 });
    await new Trainer<Batch>({ backend: first, trainData: data(), maxSteps: 4, checkpoints: store }).train();
    const saved = await store.load('checkpoint-4');
    const recorder = new Recorder();
    const resumed = new TwoLayerBackend({ switchMode: 'random', seed: 5 }, 123);
    const result = await new Trainer<Batch>({
      backend: resumed,
      trainData: data(),
      maxSteps: 4,
      checkpoints: store,
      callbacks: [recorder],
    }).train({ resumeFrom: saved });
    expect(result.state.globalStep).toBe(4);
    expect(result.lastCheckpoint).toBeUndefined();
    expect(recorder.events).toEqual(['begin', 'end']);
    expect(await resumed.snapshot()).toEqual(saved.snapshot);
  });

  it("snapshots use PyTorch's optimizer tensor names and BAdam's state as JSON; restore checks what it is given", async () => {
    const backend = new TwoLayerBackend({ switchBlockEvery: 3 });
    await new Trainer<Batch>({ backend, trainData: data(), maxSteps: 4 }).train();
    const snapshot = await backend.snapshot();
    // Step 4 with K = 3: block 1 has had one update.
    expect(snapshot.optimizer.tensors.map((t) => [t.name, [...t.shape]])).toEqual([
      ['model.layers.1.w.exp_avg', [4, 4]],
      ['model.layers.1.w.exp_avg_sq', [4, 4]],
      ['model.layers.1.w.step', []],
    ]);
    expect(snapshot.optimizer.tensors[2]!.data).toEqual(Float32Array.of(1));
    const state = JSON.parse(JSON.stringify(snapshot.optimizer.state)) as Record<string, unknown>;
    expect(state).toMatchObject({ version: 1, globalStep: 4, stepsSinceActivation: 1, activeBlock: 1 });

    const fresh = new TwoLayerBackend({ switchBlockEvery: 3 }, 9);
    await fresh.restore(structuredClone(snapshot));
    expect(await fresh.snapshot()).toEqual(snapshot);
    const withoutLayer0 = { ...snapshot, weights: snapshot.weights.slice(1) };
    await expect(fresh.restore(withoutLayer0)).rejects.toThrow(
      'the checkpoint has no weight "model.layers.0.w"; resume with the model it was saved from',
    );
    const wrongStep = structuredClone(snapshot);
    (wrongStep.optimizer.tensors[2]!.data as Float32Array)[0] = 2;
    await expect(fresh.restore(wrongStep)).rejects.toThrow(
      'optimizer tensor model.layers.1.w.step is 2, but the BlockOptimizer state says 1 steps in the block',
    );
  });

  it('rejects bad options', () => {
    const backend = new TwoLayerBackend();
    expect(() => new Trainer<Batch>({ backend, trainData: data(), saveSteps: 5 })).toThrow(
      /checkpoints must be a CheckpointStore when saveSteps is set/,
    );
    expect(() => new Trainer<Batch>({ backend, trainData: data(), loggingSteps: 0 })).toThrow(
      /loggingSteps must be an integer >= 1/,
    );
    expect(() => new Trainer<Batch>({ backend, trainData: { batches: () => [] } })).toThrow(
      /maxSteps must be set when the training data has no known length/,
    );
    expect(() => new Trainer<Batch>({ backend, trainData: data(), numEpochs: 0 })).toThrow(
      /numEpochs must be a finite number > 0/,
    );
  });
});
