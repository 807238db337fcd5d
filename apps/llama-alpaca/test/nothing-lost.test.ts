import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ByteTokenizer } from '@badam/data';
import { LlamaForCausalLM, llamaConfigFromHf, llamaWeights } from '@badam/models';
import { SafetensorsFile, writeSafetensorsModel } from '@badam/safetensors';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TINY_LLAMA_CONFIG } from '../src/index.js';
import { writeTinyLlamaDir } from './fixtures/tiny-llama-dir.js';

// The real command line, as a user runs it: `node apps/llama-alpaca/dist/src/cli.js ...`.
const CLI = fileURLToPath(new URL('../dist/src/cli.js', import.meta.url));

let dir: string;
let model: string;
let data: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'badam-llama-lost-'));
  model = join(dir, 'model');
  await writeTinyLlamaDir(model, 3);
  data = join(dir, 'data.json');
  await writeFile(data, examplesJson(16));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function examplesJson(n: number, extra = ''): string {
  return JSON.stringify(
    Array.from({ length: n }, (_, i) => ({
      instruction: `add ${i} and 1${extra}`,
      input: '',
      output: `${i + 1}`,
    })),
  );
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs badam-llama; a run still going after `timeoutMs` is killed (a hang fails the test, not the suite). */
function cli(
  args: readonly string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
  timeoutMs = 60_000,
) {
  return finished(start(args, options), timeoutMs);
}

function start(args: readonly string[], options: { cwd?: string; env?: Record<string, string> } = {}) {
  return spawn(process.execPath, [CLI, ...args], {
    cwd: options.cwd ?? dir,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

function finished(child: ChildProcess, timeoutMs = 60_000): Promise<Run> {
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => {
    stdout += d;
  });
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

/** A short run's flags: the tiny model on `data`, a few steps. */
const train = (outputDir: string, ...more: string[]) => [
  ...['--model_name_or_path', model, '--dataset', data, '--output_dir', outputDir],
  ...[
    '--per_device_train_batch_size',
    '4',
    '--max_steps',
    '4',
    '--logging_steps',
    '1',
    '--learning_rate',
    '1e-3',
  ],
  ...more,
];

async function tensors(path: string): Promise<Map<string, Float32Array>> {
  const file = await SafetensorsFile.open(path);
  try {
    return new Map(
      await Promise.all(
        file.names().map(async (n) => [n, (await file.read(n)).data as Float32Array] as const),
      ),
    );
  } finally {
    await file.close();
  }
}

describe('badam-llama: nothing lost', () => {
  it('an empty --output_dir (--output_dir \'\', --output_dir=, YAML output_dir: "") is refused, the current directory untouched', async () => {
    const cwd = join(dir, 'cwd');
    await mkdir(cwd);
    await writeFile(join(cwd, 'model.safetensors'), 'another model');
    await writeFile(
      join(cwd, 'recipe.yaml'),
      `model_name_or_path: ${model}\ndataset: ${data}\noutput_dir: ""\n`,
    );
    const runs = await Promise.all([
      cli([...train(''), '--overwrite_output_dir'], { cwd }),
      cli(['--model_name_or_path', model, '--dataset', data, '--output_dir=', '--overwrite_output_dir'], {
        cwd,
      }),
      cli(['train', 'recipe.yaml', '--overwrite_output_dir'], { cwd }),
    ]);
    for (const run of runs) {
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr).toMatch(/--output_dir (is empty \(an unset shell variable\?\)|needs a value)/);
    }
    expect((await readdir(cwd)).sort()).toEqual(['model.safetensors', 'recipe.yaml']);
    expect(await readFile(join(cwd, 'model.safetensors'), 'utf8')).toBe('another model');
  });

  it('a checkpoint of another directory is refused into one holding an unrelated run, which stays as it was', async () => {
    const a = join(dir, 'run-a');
    const b = join(dir, 'run-b');
    const [first, second] = await Promise.all([
      cli(train(a, '--save_steps', '2')),
      cli(train(b, '--seed', '7', '--save_steps', '2')),
    ]);
    expect(first.code, first.stderr).toBe(0);
    expect(second.code, second.stderr).toBe(0);
    const before = new Map<string, string>();
    for (const name of ['model.safetensors', 'trainer_log.jsonl', 'all_results.json'])
      before.set(name, await readFile(join(b, name), 'latin1'));
    const refused = await cli([...train(b), '--resume_from_checkpoint', join(a, 'checkpoint-2')]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(
      `--resume_from_checkpoint ${join(a, 'checkpoint-2')} continues a run of another directory, but output directory ${b} holds earlier work (2 checkpoints, `,
    );
    expect((await readdir(b)).filter((e) => e.startsWith('checkpoint-')).sort()).toEqual([
      'checkpoint-2',
      'checkpoint-4',
    ]);
    for (const [name, text] of before) expect(await readFile(join(b, name), 'latin1')).toBe(text);
    // Said so, the resumed run replaces it; into an empty directory, it needs no saying.
    const replaced = await cli([
      ...train(b),
      '--resume_from_checkpoint',
      join(a, 'checkpoint-2'),
      '--overwrite_output_dir',
    ]);
    expect(replaced.code, replaced.stderr).toBe(0);
  });

  it('one run per output directory: a second is refused naming the first; after a kill -9 the directory is free', async () => {
    const out = join(dir, 'locked');
    const first = start(
      train(out, '--max_steps', '1000000', '--save_steps', '50', '--logging_steps', '1000'),
    );
    const firstDone = finished(first, 120_000);
    await new Promise<void>((resolve) => {
      let text = '';
      first.stdout!.on('data', (d) => {
        text += d;
        if (text.includes('training 1000000 steps')) resolve();
      });
    });
    try {
      for (const extra of [['--resume_from_checkpoint', 'true'], ['--overwrite_output_dir']]) {
        const second = await cli([...train(out), ...extra]);
        expect(second.code).toBe(2);
        expect(second.stderr).toMatch(
          new RegExp(
            `output directory ${out} is in use by another run: process ${first.pid}, \`.*cli\\.js --model_name_or_path .* --max_steps 1000000 .*\`, since \\d{4}-`,
          ),
        );
      }
    } finally {
      first.kill('SIGKILL');
      await firstDone;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    const after = await cli([...train(out), '--overwrite_output_dir']);
    expect(after.code, after.stderr).toBe(0);
  });

  it('killed after its last checkpoint, before its model: resuming finishes the run, the model is the checkpoint, the log whole', async () => {
    const out = join(dir, 'unfinished');
    const done = await cli(train(out, '--save_steps', '2'));
    expect(done.code, done.stderr).toBe(0);
    const log = await readFile(join(out, 'trainer_log.jsonl'), 'utf8');
    // What a kill before the final save leaves: the checkpoints, not the model, results or (deleted) log.
    for (const entry of await readdir(out))
      if (!entry.startsWith('checkpoint-')) await rm(join(out, entry), { recursive: true });
    const resumed = await cli([...train(out, '--save_steps', '2'), '--resume_from_checkpoint', 'true']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain(
      'is the last step (4) of its run, which stopped before writing its model: finishing the run from it',
    );
    const written = await tensors(join(out, 'model.safetensors'));
    const checkpoint = await tensors(join(out, 'checkpoint-4', 'model.safetensors'));
    expect([...written.keys()].sort()).toEqual([...checkpoint.keys()].sort());
    for (const [name, values] of checkpoint) expect(written.get(name)).toEqual(values);
    expect(await readFile(join(out, 'trainer_log.jsonl'), 'utf8')).toBe(log);
    expect(existsSync(join(out, 'all_results.json'))).toBe(true);
  });

  it('a full disk at the final save keeps the trained model and says how to recover', async () => {
    const probe = spawnSync('unshare', ['--user', '--map-root-user', '--mount', 'true']);
    if (probe.status !== 0) {
      console.warn(
        'skipped: unshare cannot make a user and mount namespace here (the test mounts a small tmpfs)',
      );
      return;
    }
    const mount = join(dir, 'small-disk');
    const rescue = join(dir, 'rescue');
    await mkdir(mount);
    // A 48 KiB disk holds the run's log and results but not its 140 KiB model.
    const args = train(join(mount, 'out'))
      .map((a) => `'${a}'`)
      .join(' ');
    const result = spawnSync(
      'unshare',
      [
        ...['--user', '--map-root-user', '--mount', 'sh', '-c'],
        `mount -t tmpfs -o size=48k tmpfs '${mount}' && '${process.execPath}' '${CLI}' ${args}`,
      ],
      { encoding: 'utf8', env: { ...process.env, BADAM_RESCUE_DIR: rescue, BADAM_SAVE_RETRY_SECONDS: '0' } },
    );
    expect(result.status, result.stderr).toBe(1);
    expect(result.stderr).toContain(
      `the trained model could not be written to ${join(mount, 'out')} (cannot write ${join(mount, 'out', 'model.safetensors')}: the disk is full (ENOSPC): free space on it, or write somewhere else), so it was written to ${rescue} instead: once ${join(mount, 'out')} has room, move it there (mv ${rescue}/* ${join(mount, 'out')}/), or use it where it is (--model_name_or_path ${rescue})`,
    );
    // The rescued folder is the whole model: weights, config and tokenizer.
    expect(await readdir(rescue)).toEqual(
      expect.arrayContaining(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']),
    );
    expect((await tensors(join(rescue, 'model.safetensors'))).size).toBeGreaterThan(0);
  });
});

describe('badam-llama: nothing silently wrong', () => {
  it('a dataset whose contents changed at the same path is refused on resume, naming its contents', async () => {
    const changing = join(dir, 'changing.json');
    await writeFile(changing, `\uFEFF${examplesJson(16)}`); // a byte order mark loads
    const out = join(dir, 'changed');
    const flags = (...more: string[]) => [...train(out, '--save_steps', '2'), '--dataset', changing, ...more];
    expect((await cli(flags('--max_steps', '2'))).code).toBe(0);
    await writeFile(changing, examplesJson(16, ' please'));
    const resumed = await cli(flags('--resume_from_checkpoint', 'true'));
    expect(resumed.code).toBe(2);
    expect(resumed.stderr).toMatch(
      /the contents of --dataset: SHA-256 [0-9a-f]{12}\.\.\. in the checkpoint, SHA-256 [0-9a-f]{12}\.\.\. now/,
    );
  });

  it('--overwrite_output_dir leaves nothing of the earlier run: no adapters or predictions beside the new model', async () => {
    const out = join(dir, 'overwritten');
    const lora = await cli(
      train(out, '--finetuning_type', 'lora', '--val_size', '4', '--do_predict', '--max_new_tokens', '2'),
    );
    expect(lora.code, lora.stderr).toBe(0);
    expect(existsSync(join(out, 'adapter_model.safetensors'))).toBe(true);
    expect(existsSync(join(out, 'generated_predictions.jsonl'))).toBe(true);
    const full = await cli(train(out, '--finetuning_type', 'full', '--overwrite_output_dir'));
    expect(full.code, full.stderr).toBe(0);
    const entries = await readdir(out);
    for (const stale of [
      'adapter_model.safetensors',
      'adapter_config.json',
      'generated_predictions.jsonl',
      'predict_results.json',
      'eval_results.json',
    ])
      expect(entries).not.toContain(stale);
    expect(entries).toContain('model.safetensors');
  });

  it('--per_device_train_batch_size 1e9 on 16 examples estimates the batch of 16 that runs', async () => {
    const [huge, real] = await Promise.all([
      cli(train(join(dir, 'batch-huge'), '--per_device_train_batch_size', '1e9', '--max_steps', '1')),
      cli(train(join(dir, 'batch-16'), '--per_device_train_batch_size', '16', '--max_steps', '1')),
    ]);
    expect(huge.code, huge.stderr).toBe(0);
    const estimate = async (name: string) =>
      JSON.parse(await readFile(join(dir, name, 'all_results.json'), 'utf8'))
        .estimated_memory_bytes as number;
    expect(real.code).toBe(0);
    expect(await estimate('batch-huge')).toBe(await estimate('batch-16'));
    expect(await estimate('batch-huge')).toBeLessThan(1e9);
  });

  it('a NaN in the input model is refused at load, naming the tensor', async () => {
    const broken = join(dir, 'nan-model');
    const config = { ...TINY_LLAMA_CONFIG, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2 };
    const llama = new LlamaForCausalLM(llamaConfigFromHf(config), { seed: 1 });
    const weights = llamaWeights(llama);
    llama.dispose();
    (weights.find((w) => w.name === 'model.embed_tokens.weight')!.data as Float32Array)[258 * 32] =
      Number.NaN;
    await writeSafetensorsModel(broken, weights);
    await writeFile(join(broken, 'config.json'), JSON.stringify(config));
    const { tokenizer, config: tokenizerConfig } = new ByteTokenizer().toHuggingFace();
    await writeFile(join(broken, 'tokenizer.json'), JSON.stringify(tokenizer));
    await writeFile(join(broken, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig));
    const args = ['--model_name_or_path', broken, '--dataset', data, '--output_dir', join(dir, 'nan-out')];
    const run = await cli([...args, '--backend', 'tfjs']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`${broken}: tensor model.embed_tokens.weight holds NaN (element 8256 of `);
    expect(existsSync(join(dir, 'nan-out', 'trainer_log.jsonl'))).toBe(false);
    // The CPU engine's loader (the default backend here) refuses it too, naming the tensor.
    const device = await cli([...args, '--backend', 'cpu']);
    expect(device.code).toBe(2);
    expect(device.stderr).toContain(`${broken} model.embed_tokens.weight must be finite weights`);
    expect(existsSync(join(dir, 'nan-out', 'trainer_log.jsonl'))).toBe(false);
  });

  it('--resume_from_checkpoint false means no resume', async () => {
    const run = await cli(
      train(join(dir, 'no-resume'), '--resume_from_checkpoint', 'false', '--max_steps', '1'),
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('training 1 steps (from step 0)');
  });
});

describe('badam-llama: bounded work on any input', () => {
  /** A copy of the tiny model folder with some files replaced. */
  async function modelWith(name: string, files: Record<string, string>): Promise<string> {
    const copy = join(dir, name);
    await mkdir(copy);
    for (const file of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'])
      if (files[file] === undefined) await writeFile(join(copy, file), await readFile(join(model, file)));
    for (const [file, text] of Object.entries(files)) await writeFile(join(copy, file), text);
    return copy;
  }

  it('refused at once with a clear error: a runaway chat template, 1e9 layers, a pipe or a loop as input, bad data', async () => {
    const config = JSON.parse(await readFile(join(model, 'config.json'), 'utf8'));
    const tokenizerConfig = JSON.parse(await readFile(join(model, 'tokenizer_config.json'), 'utf8'));
    const runaway = await modelWith('runaway-template', {
      'tokenizer_config.json': JSON.stringify({
        ...tokenizerConfig,
        chat_template: '{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}',
      }),
    });
    const deep = await modelWith('deep', {
      'config.json': JSON.stringify({ ...config, num_hidden_layers: 1e9 }),
    });
    const piped = await modelWith('piped-weights', {});
    await rm(join(piped, 'model.safetensors'));
    spawnSync('mkfifo', [join(piped, 'model.safetensors')]);
    const fifo = join(dir, 'pipe.jsonl');
    spawnSync('mkfifo', [fifo]);
    const loop = join(dir, 'loop.json');
    await symlink(loop, loop);
    const latin1 = join(dir, 'latin1.json');
    await writeFile(
      latin1,
      Buffer.concat([
        Buffer.from('[{"instruction": "caf'),
        Buffer.from([0xe9]),
        Buffer.from('", "output": "x"}]'),
      ]),
    );
    const info = join(dir, 'info');
    await mkdir(info);
    await writeFile(join(info, 'dataset_info.json'), JSON.stringify({ mine: { file_name: 7 } }));
    const recipe = join(dir, 'hostile.yaml');
    await writeFile(
      recipe,
      `model_name_or_path: ${model}\nlearning_rate: !!js/function "function () { return 1 }"\n`,
    );
    const cases: Array<[string[], number, string]> = [
      [
        ['--model_name_or_path', runaway, '--dataset', data],
        2,
        'range() was asked for 100,000 elements, beyond the 100,000 that one rendering may make in all',
      ],
      [
        ['--model_name_or_path', deep, '--dataset', data],
        2,
        'num_hidden_layers must be at most 1,024, got 1000000000',
      ],
      [
        ['--model_name_or_path', piped, '--dataset', data],
        1,
        'model.safetensors: is a named pipe, not a regular file',
      ],
      [
        ['--model_name_or_path', model, '--dataset', fifo],
        2,
        `${fifo}" (it is a named pipe, which could be read forever: give a file)`,
      ],
      [
        ['--model_name_or_path', model, '--dataset', loop],
        2,
        'it is a symbolic link that loops (ELOOP): point it at a file',
      ],
      [
        ['--model_name_or_path', model, '--dataset', latin1],
        2,
        'line 1 has a byte that is not UTF-8 (0xe9 at byte 21)',
      ],
      [
        ['--model_name_or_path', model, '--dataset', 'mine', '--dataset_dir', info],
        2,
        'dataset_info.json mine.file_name must be the path of a local file, as a string',
      ],
      [['train', recipe], 2, 'hostile.yaml is not valid YAML: Unresolved tag: tag:yaml.org,2002:js/function'],
    ];
    // Two at a time: each must end on its own (a pipe read for ever would hang here until the timeout).
    const runs: Run[] = [];
    for (let i = 0; i < cases.length; i += 2) {
      runs.push(
        ...(await Promise.all(
          cases
            .slice(i, i + 2)
            .map(([argv], j) => cli([...argv, '--output_dir', join(dir, `refused-${i + j}`)], {}, 60_000)),
        )),
      );
    }
    for (const [i, [argv, code, message]] of cases.entries()) {
      expect(runs[i]!.stderr, `${argv.join(' ')}: exit ${runs[i]!.code}`).toContain(message);
      expect(runs[i]!.code, argv.join(' ')).toBe(code);
      expect(runs[i]!.stderr).not.toMatch(/\n\s+at /); // no stack trace
    }
  });

  it('a 300k-token text field trains (cut to --cutoff_len), and accumulation beyond the data is said before work', async () => {
    const long = join(dir, 'long.json');
    await writeFile(
      long,
      JSON.stringify([{ instruction: 'x'.repeat(300_000), output: 'y' }, ...JSON.parse(examplesJson(3))]),
    );
    const run = await cli([
      ...train(join(dir, 'long-out'), '--max_steps', '1', '--gradient_accumulation_steps', '4'),
      '--dataset',
      long,
      '--cutoff_len',
      '64',
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain(
      '--gradient_accumulation_steps 4 is more than the 1 batch(es) of an epoch: each optimizer step reads the data 4.0 times over',
    );
  });

  it("token ids beyond the model's vocab_size are found at encode time, naming the example", async () => {
    const tokenizer = JSON.parse(await readFile(join(model, 'tokenizer.json'), 'utf8'));
    tokenizer.added_tokens.push({
      id: 300,
      content: '<extra>',
      special: true,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
    });
    const extended = await modelWith('added-token', { 'tokenizer.json': JSON.stringify(tokenizer) });
    const withToken = join(dir, 'extra.json');
    await writeFile(
      withToken,
      JSON.stringify([...JSON.parse(examplesJson(2)), { instruction: 'say it', output: 'ok <extra>' }]),
    );
    const run = await cli([
      '--model_name_or_path',
      extended,
      '--dataset',
      withToken,
      '--output_dir',
      join(dir, 'extra-out'),
    ]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(
      `token ids of example 2 ("say it") must be in [0, 259), the model's vocab_size, got 300`,
    );
  });
});
