import { type ChildProcess, spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readTrainerLog } from '@badam/callbacks';
import { collectivesStatus } from '@badam/cuda';
import { SafetensorsFile } from '@badam/safetensors';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatedInstructions } from '../src/index.js';
import { writeTinyLlamaDir } from './fixtures/tiny-llama-dir.js';

// `badam-llama --nproc_per_node N` as a user runs it (the built CLI, dist/): ranks are CPU processes on
// @badam/cuda's CPU device, the model sharded ZeRO-3 style over them, Gloo over loopback. A 2-layer Llama of
// width 32, 20 BAdam steps of a global batch of 6 rows (one process: 6; two ranks: 3 each; three: 2 each).
const cli = fileURLToPath(new URL('../dist/src/cli.js', import.meta.url));
/** CI installs Gloo and sets BADAM_REQUIRE_GLOO=1: there a missing Gloo fails instead of skipping. */
function glooAvailable(): boolean {
  const { gloo } = collectivesStatus();
  if (!gloo.available && process.env.BADAM_REQUIRE_GLOO === '1')
    throw new Error(`BADAM_REQUIRE_GLOO=1 but Gloo cannot be used: ${gloo.reason}`);
  return gloo.available;
}

let dir: string;
let modelDir: string;
let dataFile: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'badam-llama-ranks-'));
  modelDir = join(dir, 'model');
  await mkdir(modelDir);
  await writeTinyLlamaDir(modelDir, 11);
  dataFile = join(dir, 'tasks.json');
  const records = generatedInstructions(48, 0, 5).train.map(({ instruction, input, output }) => ({
    instruction,
    input,
    output,
  }));
  await writeFile(dataFile, JSON.stringify(records));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

const flags = (outputDir: string, perDevice: number, extra: string[] = []) => [
  '--model_name_or_path',
  modelDir,
  '--dataset',
  dataFile,
  '--cutoff_len',
  '48',
  '--per_device_train_batch_size',
  String(perDevice),
  '--learning_rate',
  '2e-3',
  '--weight_decay',
  '0.01',
  '--max_steps',
  '20',
  '--switch_block_every',
  '3',
  '--switch_mode',
  'random',
  '--include_lm_head',
  '--logging_steps',
  '1',
  '--save_steps',
  '10',
  '--output_dir',
  outputDir,
  '--backend',
  'cuda',
  '--cuda_device',
  'cpu',
  ...extra,
];

/** The same run with the CPU engine as every rank's device in place of the CPU reference device. */
function onEngine(args: string[]): string[] {
  const at = args.indexOf('--backend');
  return [...args.slice(0, at), '--backend', 'cpu', ...args.slice(at + 4)];
}

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function start(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): { child: ChildProcess; done: Promise<Finished> } {
  const began = Date.now();
  const child = spawn(process.execPath, [cli, ...args], {
    env: { ...process.env, BADAM_THREADS: '1', ...env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => {
    stdout += d;
  });
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const done = new Promise<Finished>((resolve) =>
    child.on('exit', (code) => resolve({ code, stdout, stderr, ms: Date.now() - began })),
  );
  return { child, done };
}

/** Runs badam-llama to the end and gives what it printed (rank 0's progress, the launcher's lines). */
async function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const { code, stdout, stderr } = await start(args, { MASTER_PORT: String(await freePort()), ...env }).done;
  expect(code, stderr).toBe(0);
  return stdout;
}

async function losses(outputDir: string): Promise<Map<number, number>> {
  const log = await readTrainerLog(join(outputDir, 'trainer_log.jsonl'));
  return new Map(
    log.filter((l) => l.loss !== null).map((l) => [l.current_steps as number, l.loss as number]),
  );
}

/** The largest relative difference of the losses of the steps after `from` that `a` logged. */
function worstRelative(a: Map<number, number>, b: Map<number, number>, from = 0): number {
  let worst = 0;
  let compared = 0;
  for (const [step, loss] of a) {
    if (step <= from) continue;
    const other = b.get(step);
    expect(other, `step ${step}`).toBeDefined();
    worst = Math.max(worst, Math.abs(loss - other!) / Math.abs(other!));
    compared++;
  }
  expect(compared).toBe(20 - from);
  return worst;
}

async function results(outputDir: string): Promise<Record<string, number | string>> {
  return JSON.parse(await readFile(join(outputDir, 'all_results.json'), 'utf8'));
}

describe.skipIf(!glooAvailable())('badam-llama --nproc_per_node: BAdam over several processes', () => {
  const out = (name: string) => join(dir, name);

  it('2 and 3 ranks: the losses of one process on the same global batch at every step, 1/N of the weights each', async () => {
    await run(flags(out('one'), 6));
    const printed = {
      two: await run(flags(out('two'), 3, ['--nproc_per_node', '2'])),
      three: await run(flags(out('three'), 2, ['--nproc_per_node', '3'])),
    };
    const one = await losses(out('one'));
    const single = await results(out('one'));
    for (const [name, n] of [
      ['two', 2],
      ['three', 3],
    ] as const) {
      const worst = worstRelative(await losses(out(name)), one);
      console.log(
        `${n} ranks vs one process, 20 BAdam steps: largest relative loss difference ${worst.toExponential(2)}`,
      );
      expect(worst).toBeLessThan(1e-5);
      const many = await results(out(name));
      expect(many.world_size).toBe(n);
      // Every rank's peak in the results, and every rank's memory on rank 0's progress line, once a step.
      for (let rank = 0; rank < n; rank++) expect(many[`peak_memory_bytes_rank_${rank}`]).toBeGreaterThan(0);
      const rankMemory = new RegExp(
        `^step \\d+/20 .*; ranks ${Array(n).fill('[\\d.]+ [kMG]?B').join(' / ')}\\)`,
        'gm',
      );
      expect(printed[name].match(rankMemory)).toHaveLength(20);
      const ratio = (many.peak_memory_weights_bytes as number) / (single.peak_memory_weights_bytes as number);
      expect(Math.abs(ratio - 1 / n)).toBeLessThan(0.01);
      // Rank 0 alone wrote the outputs: trainer_state.json, and the whole model, gathered from the shards.
      const state = JSON.parse(await readFile(join(out(name), 'trainer_state.json'), 'utf8'));
      expect(state.global_step).toBe(20);
      const saved = await SafetensorsFile.open(join(out(name), 'model.safetensors'));
      const reference = await SafetensorsFile.open(join(out('one'), 'model.safetensors'));
      try {
        expect(saved.names().sort()).toEqual(reference.names().sort());
        for (const tensor of reference.names()) {
          const a = await saved.readFloat32(tensor);
          const b = await reference.readFloat32(tensor);
          let worstWeight = 0;
          for (let i = 0; i < a.length; i++) worstWeight = Math.max(worstWeight, Math.abs(a[i]! - b[i]!));
          expect(worstWeight, tensor).toBeLessThan(1e-5);
        }
      } finally {
        await saved.close();
        await reference.close();
      }
    }
  });

  it('on the CPU engine (--backend cpu): 2 ranks give the losses of one process, 1/N of the weights each', async () => {
    await run(onEngine(flags(out('engine-one'), 6)));
    const printed = await run(onEngine(flags(out('engine-two'), 3, ['--nproc_per_node', '2'])));
    expect(printed).toMatch(/badam-llama: backend cpu engine/);
    const worst = worstRelative(await losses(out('engine-two')), await losses(out('engine-one')));
    console.log(
      `CPU engine, 2 ranks vs one process, 20 BAdam steps: largest relative loss difference ${worst.toExponential(2)}`,
    );
    expect(worst).toBeLessThan(1e-5);
    const single = await results(out('engine-one'));
    const many = await results(out('engine-two'));
    expect(many.world_size).toBe(2);
    const ratio = (many.peak_memory_weights_bytes as number) / (single.peak_memory_weights_bytes as number);
    expect(Math.abs(ratio - 1 / 2)).toBeLessThan(0.01);
  });

  it('--train_from_scratch over several processes is refused, naming the fix, before any step', async () => {
    const { code, stderr } = await start(
      onEngine(flags(out('scratch'), 3, ['--nproc_per_node', '2', '--train_from_scratch'])),
      { MASTER_PORT: String(await freePort()) },
    ).done;
    expect(code).not.toBe(0);
    expect(stderr).toMatch(
      /--train_from_scratch initialises its model in one process.*drop --nproc_per_node/,
    );
  });

  it('a checkpoint saved by 2 ranks resumes on 1 and on 3 with the losses of the uninterrupted run', async () => {
    const uninterrupted = await losses(out('two'));
    for (const [name, perDevice, extra] of [
      ['resumed-on-1', 6, []],
      ['resumed-on-3', 2, ['--nproc_per_node', '3']],
    ] as const) {
      await cp(join(out('two'), 'checkpoint-10'), join(out(name), 'checkpoint-10'), { recursive: true });
      await run(
        flags(out(name), perDevice, [...extra, '--resume_from_checkpoint', join(out(name), 'checkpoint-10')]),
      );
      const worst = worstRelative(await losses(out(name)), uninterrupted, 10);
      console.log(
        `checkpoint of 2 ranks resumed (${name}): largest relative loss difference ${worst.toExponential(2)}`,
      );
      expect(worst).toBeLessThan(1e-5);
    }
  });

  it('a rank killed mid-run: the others exit non-zero within --ddp_timeout, naming it; the checkpoint saved before stays whole', async () => {
    const port = String(await freePort());
    const args = flags(out('killed'), 2, ['--max_steps', '500', '--ddp_timeout', '30']);
    const ranks = [0, 1, 2].map((rank) =>
      start(args, { RANK: String(rank), WORLD_SIZE: '3', MASTER_ADDR: '127.0.0.1', MASTER_PORT: port }),
    );
    // Rank 1 is killed once training is under way, after checkpoint-10 (rank 0 has printed step 12).
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('training did not reach step 12 within 120 s')),
        120_000,
      );
      ranks[0]!.child.stdout!.on('data', (d: Buffer) => {
        if (/step 12\/500/.test(String(d))) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const killedAt = Date.now();
    ranks[1]!.child.kill('SIGKILL');
    for (const rank of [0, 2]) {
      const { code, stderr } = await ranks[rank]!.done;
      expect(code).not.toBe(0);
      expect(stderr).toMatch(new RegExp(`error: rank ${rank}: .* failed: rank 1 exited or was killed`));
    }
    expect(Date.now() - killedAt).toBeLessThan(30_000);
    await ranks[1]!.done;
    // Nothing already saved is lost: checkpoint-10 is whole (its state, and every tensor of the model).
    const checkpoint = join(out('killed'), 'checkpoint-10');
    expect(JSON.parse(await readFile(join(checkpoint, 'trainer_state.json'), 'utf8')).global_step).toBe(10);
    const saved = await SafetensorsFile.open(join(checkpoint, 'model.safetensors'));
    const reference = await SafetensorsFile.open(join(out('one'), 'model.safetensors'));
    try {
      expect(saved.names().sort()).toEqual(reference.names().sort());
      for (const tensor of saved.names())
        expect((await saved.readFloat32(tensor)).every(Number.isFinite)).toBe(true);
    } finally {
      await saved.close();
      await reference.close();
    }
  });

  it('Ctrl-C on one rank stops every rank after the same step, rank 0 saving a checkpoint; all exit 130', async () => {
    const port = String(await freePort());
    const args = flags(out('interrupted'), 3, ['--max_steps', '500', '--save_steps', '100']);
    const ranks = [0, 1].map((rank) =>
      start(args, { RANK: String(rank), WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: port }),
    );
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('training did not start within 120 s')), 120_000);
      ranks[0]!.child.stdout!.on('data', (d: Buffer) => {
        if (/step 2\/500/.test(String(d))) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    // Only rank 1 sees the signal (as when one terminal's Ctrl-C reaches one process).
    ranks[1]!.child.kill('SIGINT');
    const [zero, one] = await Promise.all(ranks.map((r) => r.done));
    expect(zero!.code, zero!.stderr).toBe(130);
    expect(one!.code, one!.stderr).toBe(130);
    const stopped = /training stopped \(interrupted\) at step (\d+)/.exec(zero!.stdout);
    expect(stopped, zero!.stdout).not.toBeNull();
    const step = Number(stopped![1]);
    expect(step).toBeLessThan(500);
    const state = JSON.parse(
      await readFile(join(out('interrupted'), `checkpoint-${step}`, 'trainer_state.json'), 'utf8'),
    );
    expect(state.global_step).toBe(step);
  });

  it('a rank that stops answering: the others stop after --ddp_timeout, naming it', async () => {
    const port = String(await freePort());
    // 10 s: short for the test, long enough for ranks that start seconds apart on a busy machine.
    const args = flags(out('stalled'), 3, ['--max_steps', '500', '--ddp_timeout', '10']);
    const ranks = [0, 1].map((rank) =>
      start(args, { RANK: String(rank), WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: port }),
    );
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('training did not start within 120 s')), 120_000);
      ranks[0]!.child.stdout!.on('data', (d: Buffer) => {
        if (/step 2\/500/.test(String(d))) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    // Rank 1 stays alive, its connections open, and never reaches the next collective.
    const stoppedAt = Date.now();
    ranks[1]!.child.kill('SIGSTOP');
    try {
      const { code, stderr } = await ranks[0]!.done;
      expect(code).not.toBe(0);
      expect(stderr).toMatch(
        /error: rank 0: .* failed: rank\(s\) 1 did not reach the collective the others waited 10 s for/,
      );
      const waited = Date.now() - stoppedAt;
      expect(waited).toBeGreaterThanOrEqual(10_000);
      expect(waited).toBeLessThan(40_000);
    } finally {
      ranks[1]!.child.kill('SIGKILL');
      await ranks[1]!.done;
    }
  });
});
