import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseFlags } from '@badam/core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  checkResume,
  exitCodeOf,
  type FineTuningMethod,
  fineTune,
  ModelNotSavedError,
  prepareRunOutputDir,
  releaseRunOutputDirs,
  resolveRunOptions,
  saveTrainedModel,
  TrainingDivergedError,
} from '../src/index.js';
import { DIALECT, FLAGS, runnerTestSetup, tinyMlpSpec } from './fixtures/test-runner.js';
import { tinyMlp } from './fixtures/tiny-mlp.js';

const setup = runnerTestSetup('badam-runner-guarantees-');

function options(flags: string[], method: FineTuningMethod = 'full') {
  return resolveRunOptions(parseFlags(flags, FLAGS), method, DIALECT, {
    outputDir: join(setup.dir, 'default'),
  });
}

async function train(flags: string[], method: FineTuningMethod = 'full') {
  const warnings: string[] = [];
  const { model, named } = tinyMlp(1);
  try {
    const run = await fineTune({
      ...tinyMlpSpec(model, setup.label, { log: () => {}, warn: (m) => warnings.push(m) }),
      options: options(['--logging_steps', '1', ...flags], method),
    });
    return { run, warnings };
  } catch (error) {
    return { error, warnings };
  } finally {
    for (const [, v] of named) v.dispose();
  }
}

describe('a diverged run saves nothing from the diverged weights', () => {
  it('exits non-zero naming the last good checkpoint, which stays as it was', async () => {
    const out = join(setup.dir, 'diverge');
    await train(['--output_dir', out, '--max_steps', '4', '--save_steps', '2', '--learning_rate', '0.05']);
    const good = await readFile(join(out, 'checkpoint-4', 'model.safetensors'));
    // On from step 4 with a learning rate of 1e30: the loss becomes infinite and the guard stops the run.
    const { error } = await train([
      ...['--output_dir', out, '--max_steps', '10', '--save_steps', '2', '--learning_rate', '1e30'],
      ...['--resume_from_checkpoint', join(out, 'checkpoint-4'), '--force_resume'],
    ]);
    expect(error).toBeInstanceOf(TrainingDivergedError);
    expect(exitCodeOf(error)).toBe(1);
    expect((error as Error).message).toMatch(
      /^training diverged at step \d+ \(training stopped on a loss of (Infinity|NaN)\); no model was saved from the diverged weights\. The last good checkpoint is .*checkpoint-4: continue from it with --resume_from_checkpoint .*checkpoint-4 --force_resume and a lower --learning_rate$/,
    );
    expect((await readdir(out)).filter((e) => e.startsWith('checkpoint-')).sort()).toEqual([
      'checkpoint-2',
      'checkpoint-4',
    ]);
    expect(await readFile(join(out, 'checkpoint-4', 'model.safetensors'))).toEqual(good);
  });

  it('without checkpoints it says none was saved', async () => {
    const { error } = await train([
      '--output_dir',
      join(setup.dir, 'diverge-2'),
      '--max_steps',
      '6',
      '--learning_rate',
      '1e30',
    ]);
    expect((error as Error).message).toMatch(
      /no model was saved from the diverged weights\. No checkpoint was saved before it \(--save_steps keeps some\): start again with a lower --learning_rate$/,
    );
  });
});

describe('resume refuses settings that change what the run means', () => {
  let out: string;
  beforeAll(async () => {
    out = join(setup.dir, 'resume');
    await train(['--output_dir', out, '--max_steps', '4', '--save_steps', '2', '--learning_rate', '0.05']);
  });
  const resume = (extra: string[], method: FineTuningMethod = 'full') =>
    train(['--output_dir', out, '--resume_from_checkpoint', join(out, 'checkpoint-2'), ...extra], method);

  it('another method, learning rate or step count is refused naming each, before any work', async () => {
    const { error } = await resume(['--max_steps', '6', '--learning_rate', '0.01'], 'lora');
    expect(exitCodeOf(error)).toBe(2);
    const message = (error as Error).message;
    expect(message).toContain('was written by a run with other settings, so resuming would not continue it');
    expect(message).toContain('the method: --method full in the checkpoint, --method lora now');
    expect(message).toContain(
      '--learning_rate: --learning_rate 0.05 in the checkpoint, --learning_rate 0.01 now',
    );
    expect(message).toContain('--max_steps: --max_steps 4 in the checkpoint, --max_steps 6 now');
    expect(message).toContain('or pass --force_resume to continue with these');
  });

  it('a --max_steps already passed is refused even with --force_resume', async () => {
    const { error } = await resume(['--max_steps', '1', '--learning_rate', '0.05', '--force_resume']);
    expect((error as Error).message).toMatch(
      /^--max_steps 1 is already passed: .*checkpoint-2 is at step 2; give a larger --max_steps \(or --num_train_epochs\)/,
    );
  });

  it('a run stopped after its last checkpoint, before its model was written, resumes to finish: no training, no new save', async () => {
    const last = join(out, 'checkpoint-4');
    const saved = await readFile(join(last, 'checkpoint.json'), 'utf8');
    const { run, error, warnings } = await train([
      ...['--output_dir', out, '--max_steps', '4', '--learning_rate', '0.05'],
      ...['--resume_from_checkpoint', 'true'],
    ]);
    expect(error).toBeUndefined();
    expect(run?.train.state.globalStep).toBe(4);
    expect(warnings.join('\n')).toContain(
      `${last} is the last step (4) of its run, which stopped before writing its model: finishing the run from it, without training`,
    );
    expect(await readFile(join(last, 'checkpoint.json'), 'utf8')).toBe(saved); // not saved again
    expect((await readdir(out)).filter((e) => e.startsWith('checkpoint-')).sort()).toEqual([
      'checkpoint-2',
      'checkpoint-4',
    ]);
  });

  it('the same settings resume; --force_resume continues with others and says what it overrides', async () => {
    const same = await resume(['--max_steps', '4', '--learning_rate', '0.05']);
    expect(same.error).toBeUndefined();
    expect(same.run?.train.state.globalStep).toBe(4);
    const forced = await resume(['--max_steps', '5', '--learning_rate', '0.05', '--force_resume']);
    expect(forced.error).toBeUndefined();
    expect(forced.warnings.join('\n')).toMatch(
      /--force_resume: continuing .*checkpoint-2 with other settings \(--max_steps: --max_steps 4 in the checkpoint, --max_steps 5 now\)/,
    );
  });
});

describe("a run leaves the model's variables as it found them", () => {
  it.each(['block', 'full', 'lora', 'sparse'] as const)(
    '%s: every variable trainable again after fineTune (a later optimizer trains them)',
    async (method) => {
      const { model, named, variables } = tinyMlp(3);
      try {
        await fineTune({
          ...tinyMlpSpec(model, setup.label, { log: () => {}, warn: () => {} }),
          options: options(['--output_dir', join(setup.dir, `flags-${method}`), '--max_steps', '2'], method),
        });
        const frozen = variables().filter(([, v]) => !v.trainable);
        expect(frozen.map(([n]) => n)).toEqual([]);
      } finally {
        for (const [, v] of named) v.dispose();
      }
    },
  );
});

describe('output directories', () => {
  it('a default directory holding an earlier run is left alone: the run takes the next free one and says so', async () => {
    const base = join(setup.dir, 'defaults', 'embedded-block');
    await mkdir(base, { recursive: true });
    await writeFile(join(base, 'config.json'), '{"earlier": true}');
    const logs: string[] = [];
    const opts = options([]);
    opts.outputDir = base;
    expect(opts.outputDirIsDefault).toBe(true);
    expect(await prepareRunOutputDir(opts, DIALECT, { log: (m) => logs.push(m) })).toBe(`${base}-2`);
    expect(opts.outputDir).toBe(`${base}-2`);
    expect(logs[0]).toContain(
      'embedded-block holds an earlier run, which stays as it is; this run writes to',
    );
    expect(await readFile(join(base, 'config.json'), 'utf8')).toBe('{"earlier": true}');
  });

  it('a directory the user named is refused, and unfinished saves in it are reported when it is reused', async () => {
    const named = join(setup.dir, 'named');
    await mkdir(join(named, '.checkpoint-8.0123abcd.tmp'), { recursive: true });
    await writeFile(join(named, 'trainer_log.jsonl'), '{}\n');
    await expect(
      prepareRunOutputDir(options(['--output_dir', named]), DIALECT, { log: () => {} }),
    ).rejects.toThrow(/holds earlier work \(trainer_log\.jsonl\): pass --overwrite_output_dir/);
    const logs: string[] = [];
    await prepareRunOutputDir(options(['--output_dir', named, '--overwrite_output_dir']), DIALECT, {
      log: (m) => logs.push(m),
    });
    expect(logs).toEqual([
      `test-runner: removed 1 unfinished save(s) an interrupted run left in ${named}: .checkpoint-8.0123abcd.tmp`,
      `test-runner: --overwrite_output_dir: removed what an earlier run wrote in ${named}: trainer_log.jsonl`,
    ]);
    releaseRunOutputDirs();
    expect(await readdir(named)).toEqual([]);
  });
});

describe('the command line says what it means', () => {
  it('--resume_from_checkpoint false (as Hugging Face and LLaMA-Factory YAML take it) means no resume', () => {
    for (const no of ['false', 'False', 'FALSE']) {
      expect(options(['--resume_from_checkpoint', no]).resumeFromCheckpoint).toBeUndefined();
    }
    expect(options(['--resume_from_checkpoint', 'True']).resumeFromCheckpoint).toBe('true');
    // No resume, so no contradiction with --overwrite_output_dir either.
    expect(options(['--resume_from_checkpoint', 'false', '--overwrite_output_dir']).overwriteOutputDir).toBe(
      true,
    );
  });

  it('an empty --output_dir is refused: it would mean the current directory', () => {
    for (const argv of [['--output_dir', ''], ['--output_dir=']]) {
      let caught: unknown;
      try {
        options(argv);
      } catch (error) {
        caught = error;
      }
      expect(exitCodeOf(caught)).toBe(2);
      expect((caught as Error).message).toBe(
        '--output_dir is empty (an unset shell variable?): it would mean the current directory; name the directory to write to',
      );
    }
  });

  it('--overwrite_output_dir goes with a checkpoint of another directory, not with one of this directory', () => {
    expect(
      options(['--output_dir', 'b', '--resume_from_checkpoint', 'a/checkpoint-5', '--overwrite_output_dir'])
        .overwriteOutputDir,
    ).toBe(true);
    expect(() =>
      options(['--output_dir', 'b', '--resume_from_checkpoint', 'b/checkpoint-5', '--overwrite_output_dir']),
    ).toThrow(/contradict each other: resuming needs the output directory as it is/);
  });

  it('--gradient_accumulation_steps beyond the data is said before any work', async () => {
    const logs: string[] = [];
    const { model, named } = tinyMlp(1);
    try {
      await fineTune({
        ...tinyMlpSpec(model, setup.label, {
          log: (m) => logs.push(`log ${m}`),
          warn: (m) => logs.push(`warn ${m}`),
        }),
        options: options([
          '--output_dir',
          join(setup.dir, 'accumulate'),
          '--max_steps',
          '2',
          '--gradient_accumulation_steps',
          '15',
        ]),
      });
    } finally {
      for (const [, v] of named) v.dispose();
    }
    const warning = logs.findIndex((l) =>
      l.startsWith(
        'warn test-runner: --gradient_accumulation_steps 15 is more than the 6 batch(es) of an epoch: each optimizer step reads the data 2.5 times over, so 2 step(s) take 5 epochs; lower --gradient_accumulation_steps to at most 6',
      ),
    );
    expect(warning).toBe(0); // the first line, before the method's plan and any step
  });
});

describe('the trained model is never lost to a failed write', () => {
  /** The model's writer, failing with `code` (as the file layer does on a full disk) in `failing` directories. */
  const writer = (failing: (directory: string) => boolean, code = 'ENOSPC') => {
    const calls: string[] = [];
    const write = async (directory: string) => {
      calls.push(directory);
      if (failing(directory))
        throw Object.assign(
          new Error(`cannot write ${join(directory, 'model.safetensors')}: the disk is full (${code})`),
          { code },
        );
      await mkdir(directory, { recursive: true });
      await writeFile(join(directory, 'model.safetensors'), 'weights');
    };
    return { write, calls };
  };
  const io = () => {
    const warnings: string[] = [];
    return { warnings, io: { warn: (m: string) => warnings.push(m) } };
  };

  it('a full disk at the final save: the model goes to a rescue directory, and the error says how to put it in place', async () => {
    const outputDir = join(setup.dir, 'full-disk');
    const rescueDir = join(setup.dir, 'rescue');
    const { write } = writer((d) => d === outputDir);
    const { warnings, io: sink } = io();
    const error = await saveTrainedModel({ outputDir, write, dialect: DIALECT, io: sink, rescueDir }).catch(
      (e) => e,
    );
    expect(error).toBeInstanceOf(ModelNotSavedError);
    expect(exitCodeOf(error)).toBe(1);
    expect((error as Error).message).toBe(
      `the trained model could not be written to ${outputDir} (cannot write ${join(outputDir, 'model.safetensors')}: the disk is full (ENOSPC)), so it was written to ${rescueDir} instead: once ${outputDir} has room, move it there (mv ${rescueDir}/* ${outputDir}/), or use it where it is (--model_name_or_path ${rescueDir})`,
    );
    expect(await readFile(join(rescueDir, 'model.safetensors'), 'utf8')).toBe('weights');
    expect(warnings[0]).toContain('it is still in memory: writing it to');
  });

  it('with no room anywhere it keeps trying, and writes the model once there is room', async () => {
    const outputDir = join(setup.dir, 'room-later');
    let full = true;
    const { write, calls } = writer(() => full);
    const { warnings, io: sink } = io();
    setTimeout(() => {
      full = false;
    }, 100);
    await saveTrainedModel({
      ...{ outputDir, write, dialect: DIALECT, io: sink },
      ...{ rescueDir: join(setup.dir, 'rescue-2'), retrySeconds: 30, retryIntervalSeconds: 0.2 },
    });
    expect(await readFile(join(outputDir, 'model.safetensors'), 'utf8')).toBe('weights');
    expect(calls.length).toBeGreaterThan(2);
    expect(warnings.at(-1)).toBe(`test-runner: the trained model is written to ${outputDir} after all`);
  });

  it('given up, the error names the last checkpoint and how to finish the run from it', async () => {
    const outputDir = join(setup.dir, 'lost');
    const { write } = writer(() => true);
    const error = await saveTrainedModel({
      ...{ outputDir, write, dialect: DIALECT, io: io().io, retrySeconds: 0 },
      ...{ rescueDir: join(setup.dir, 'rescue-3'), lastCheckpoint: join(outputDir, 'checkpoint-8') },
    }).catch((e) => e);
    expect((error as Error).message).toMatch(
      new RegExp(
        `and is lost\\. Its last checkpoint ${join(outputDir, 'checkpoint-8')} is kept: free space, then run the same command with --resume_from_checkpoint ${join(outputDir, 'checkpoint-8')} to write the model from it$`,
      ),
    );
    await rm(join(setup.dir, 'rescue-3'), { recursive: true, force: true });
  });
});

describe('content hashes in run settings', () => {
  const checkpoint = (settings: Record<string, string | number>) =>
    ({
      path: 'out/checkpoint-2',
      snapshot: { weights: [], optimizer: { state: {}, tensors: [] } },
      trainerState: { globalStep: 2, callbacks: { run_settings: settings } },
    }) as unknown as Parameters<typeof checkResume>[0];
  const check = (saved: Record<string, string | number>, now: Record<string, string | number>) =>
    checkResume(checkpoint(saved), now, 4, options([]), DIALECT, { warn: () => {} });

  it("another dataset's contents is refused as 'the contents of --dataset'; a checkpoint from before hashes resumes", () => {
    expect(() => check({ dataset_sha256: 'a'.repeat(64) }, { dataset_sha256: 'b'.repeat(64) })).toThrow(
      'the contents of --dataset: SHA-256 aaaaaaaaaaaa... in the checkpoint, SHA-256 bbbbbbbbbbbb... now',
    );
    expect(() => check({}, { dataset_sha256: 'b'.repeat(64) })).not.toThrow();
  });
});
