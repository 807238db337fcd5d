import {
  BadamOptionError,
  type FlagSpec,
  type FlagValues,
  parseFlags,
  parseFlagsExplicit,
  UsageError,
} from '@badam/core';
import { afterEach, describe, expect, it } from 'vitest';
import {
  applyEmbeddedDefaults,
  exitCodeOf,
  parseRunnerCommand,
  planRun,
  type RunnerDialect,
  resolveRunOptions,
  runCli,
  runnerFlags,
  trainingSettingsOf,
} from '../src/index.js';

// Two dialects, as the two runners speak: LLaMA-Factory's flags, and the RoBERTa scripts' spelling.
const LLAMA: RunnerDialect = {
  name: 'llama-like',
  describeMethods: (methods) => `--finetuning_type ${methods.join(' or ')}`,
};
const ROBERTA: RunnerDialect = {
  name: 'roberta-like',
  rename: { switch_block_every: 'switch_every', per_device_train_batch_size: 'train_batch_size' },
  describeMethods: (methods) => methods.map((m) => `--use_${m}`).join(' or '),
  methodFlags: { train_last_layer: ['block'] },
};
const llamaFlags = runnerFlags();
const robertaFlags: Record<string, FlagSpec> = {
  ...runnerFlags({
    rename: ROBERTA.rename,
    defaults: { switch_mode: 'random', per_device_train_batch_size: 16 },
  }),
  train_last_layer: { type: 'boolean', default: false, help: 'head in every block' },
};

describe('runnerFlags', () => {
  it("spells the shared flags the runner's way, with its defaults", () => {
    expect(robertaFlags.switch_every?.type).toBe('integer');
    expect('switch_block_every' in robertaFlags).toBe(false);
    const values = parseFlags([], robertaFlags);
    expect(values).toMatchObject({
      switch_mode: 'random',
      train_batch_size: 16,
      backend: 'tfjs',
      learning_rate: 1e-5,
    });
    expect(() => parseFlags(['--switch_block_every', '3'], robertaFlags)).toThrow(
      'unknown flag --switch_block_every',
    );
  });
});

describe("resolveRunOptions: one validation, in each runner's words", () => {
  const resolve = (argv: string[], method: Parameters<typeof resolveRunOptions>[1], dialect = LLAMA) =>
    resolveRunOptions(parseFlags(argv, dialect === LLAMA ? llamaFlags : robertaFlags), method, dialect, {
      outputDir: 'out',
    });

  it.each([
    [
      ['--switch_block_every', '5'],
      'full',
      LLAMA,
      '--switch_block_every applies to --finetuning_type block or sparse, but this run uses --finetuning_type full',
    ],
    [
      ['--switch_every', '5'],
      'lora',
      ROBERTA,
      '--switch_every applies to --use_block or --use_sparse, but this run uses --use_lora',
    ],
    [['--start_block', '1'], 'sparse', LLAMA, '--start_block applies to --finetuning_type block'],
    [['--update_ratio', '0.2'], 'block', LLAMA, '--update_ratio applies to --finetuning_type sparse'],
    [['--train_last_layer'], 'full', ROBERTA, '--train_last_layer applies to --use_block'],
    [['--switch_block_every', '0'], 'block', LLAMA, '--switch_block_every must be >= 1 or -1, got 0'],
    [['--switch_every', '-2'], 'sparse', ROBERTA, '--switch_every must be >= 1 or -1, got -2'],
    [['--update_ratio', '1.5'], 'sparse', LLAMA, '--update_ratio must be a number > 0 and <= 1, got "1.5"'],
    [['--warmup_ratio', '2'], 'block', LLAMA, '--warmup_ratio must be a number >= 0 and <= 1, got "2"'],
    [['--num_train_epochs', '0'], 'block', LLAMA, '--num_train_epochs must be a number > 0, got "0"'],
    [
      ['--learning_rate='],
      'block',
      LLAMA,
      '--learning_rate must be a number >= 0, got "" (the value is empty)',
    ],
    [['--resume_from_checkpoint', 'true', '--overwrite_output_dir'], 'block', LLAMA, 'contradict each other'],
  ] as const)('%j for %s (%#): a usage error that says what to change', (argv, method, dialect, message) => {
    let caught: unknown;
    try {
      resolve([...argv], method, dialect);
    } catch (error) {
      caught = error;
    }
    expect(exitCodeOf(caught)).toBe(2); // a UsageError or a flag's BadamOptionError: the command line's fault
    expect((caught as Error).message).toContain(message);
  });

  it("maps each runner's spelling to the same options", () => {
    const a = resolve(['--switch_block_every', '7', '--per_device_train_batch_size', '3'], 'block');
    const b = resolve(['--switch_every', '7', '--train_batch_size', '3'], 'block', ROBERTA);
    expect([a.switchBlockEvery, a.batchSize]).toEqual([7, 3]);
    expect([b.switchBlockEvery, b.batchSize]).toEqual([7, 3]);
    expect(a).toMatchObject({
      method: 'block',
      backend: 'tfjs',
      outputDir: 'out',
      updateRatio: 0.1,
      maskMode: 'adjacent',
    });
  });
});

describe('embedded defaults', () => {
  it('fill what the command line left unset, but not flags the method does not take, nor overwrite when resuming', () => {
    const defaults = {
      learning_rate: 2e-3,
      switch_block_every: 50,
      overwrite_output_dir: true,
      max_steps: 800,
    };
    const parsed = (argv: string[]) => parseFlagsExplicit(argv, llamaFlags);
    const full = parsed(['--max_steps', '3']);
    applyEmbeddedDefaults(full.values, full.explicit, defaults, 'full', LLAMA);
    expect(full.values).toMatchObject({ learning_rate: 2e-3, max_steps: 3, overwrite_output_dir: true });
    expect(full.values.switch_block_every).toBeUndefined();
    const resuming = parsed(['--resume_from_checkpoint', 'true']);
    applyEmbeddedDefaults(resuming.values, resuming.explicit, defaults, 'block', LLAMA);
    expect(resuming.values).toMatchObject({ switch_block_every: 50, overwrite_output_dir: false });
  });

  it('parseRunnerCommand applies them only to an embedded run', () => {
    const spec = {
      flags: { ...llamaFlags, model: { type: 'string', help: 'a model' } } as const,
      dialect: LLAMA,
      isEmbedded: (v: FlagValues) => v.model === undefined,
      embeddedDefaults: () => ({ learning_rate: 0.5 }),
      methodOf: () => 'block' as const,
      resolve: (v: FlagValues) => resolveRunOptions(v, 'block', LLAMA, { outputDir: 'o' }),
    };
    expect(parseRunnerCommand([], spec)).toMatchObject({ embedded: true, options: { learningRate: 0.5 } });
    expect(parseRunnerCommand(['--model', 'm'], spec)).toMatchObject({
      embedded: false,
      options: { learningRate: 1e-5 },
    });
  });

  it("normalize rewrites another tool's spelling before the embedded check and the runner's own validation", () => {
    const spec = {
      flags: {
        ...llamaFlags,
        model: { type: 'string', help: 'a model' },
        model_path: { type: 'string', help: "another tool's name for --model" },
        ignored_flag: { type: 'boolean', default: false, help: 'no meaning here' },
      } as const,
      dialect: LLAMA,
      isEmbedded: (v: FlagValues) => v.model === undefined,
      embeddedDefaults: () => ({ learning_rate: 0.5 }),
      methodOf: () => 'block' as const,
      resolve: (v: FlagValues) => resolveRunOptions(v, 'block', LLAMA, { outputDir: 'o' }),
      normalize: (v: FlagValues, explicit: Set<string>) => {
        if (v.model_path !== undefined) {
          v.model = v.model_path;
          explicit.add('model');
        }
        return explicit.has('ignored_flag') ? ['--ignored_flag is ignored'] : [];
      },
    };
    expect(parseRunnerCommand(['--model_path', 'm', '--ignored_flag'], spec)).toMatchObject({
      embedded: false,
      options: { learningRate: 1e-5 },
      notes: ['--ignored_flag is ignored'],
    });
    expect(parseRunnerCommand([], spec)).toMatchObject({ embedded: true, notes: [] });
  });
});

describe('flags -> plan', () => {
  const parameters = [
    'model.embed_tokens.weight',
    'model.layers.0.w',
    'model.layers.1.w',
    'lm_head.weight',
  ].map((name) => ({ name, shape: [4, 4], dtype: 'float32' as const }));

  it("the shared flags become core's settings: clipping off at --max_grad_norm 0, K's message in the runner's words", () => {
    const lines: string[] = [];
    const plan = planRun({
      options: resolveRunOptions(
        parseFlags(['--max_grad_norm', '0', '--weight_decay', '0.01', '--seed', '7'], robertaFlags),
        'block',
        ROBERTA,
        { outputDir: 'o' },
      ),
      dialect: ROBERTA,
      parameters,
      partition: { includeLmHead: true },
      trainExamples: 1000,
      defaultSwitchBlockEvery: 'suggest',
      logFn: (m) => lines.push(m),
    });
    expect(plan).toMatchObject({
      method: 'block',
      clipGradNorm: undefined,
      seed: 7,
      baseOptimizer: { type: 'adamw', learningRate: 1e-5, weightDecay: 0.01 },
      optimizer: { kind: 'block', options: { switchMode: 'random', switchBlockEvery: 50 } },
    });
    // round(1000 / (16 * 3)) = 21, raised to the floor of 50 (D: two layers and the head).
    expect(lines[0]).toMatch(
      /^BAdam: --switch_every not set: using 50 = min\(max\(round\(n \/ \(B \* D\)\), 50\), 100\) for n = 1000, B = 16, D = 3$/,
    );
  });

  it("--max_grad_norm clips, --update_ratio and --mask_mode reach the ratio's masks", () => {
    const options = resolveRunOptions(
      parseFlags(['--max_grad_norm', '0.5', '--update_ratio', '0.25', '--mask_mode', 'scatter'], llamaFlags),
      'sparse',
      LLAMA,
      { outputDir: 'o' },
    );
    expect(trainingSettingsOf(options)).toMatchObject({
      method: 'sparse',
      clipGradNorm: 0.5,
      updateRatio: 0.25,
    });
    const plan = planRun({
      options,
      dialect: LLAMA,
      parameters,
      partition: {},
      trainExamples: 1000,
      defaultSwitchBlockEvery: 'suggest',
      logFn: () => {},
    });
    expect(plan.clipGradNorm).toBe(0.5);
    expect(plan.optimizer).toMatchObject({
      kind: 'ratio',
      masks: { updateRatio: 0.25, maskMode: 'scatter', switchBlockEvery: 100 },
    });
  });
});

describe('runCli', () => {
  afterEach(() => {
    delete process.env.BADAM_DEBUG;
    process.exitCode = undefined;
  });

  it('exit codes: 0 as returned, 2 for a usage or option error, 1 otherwise, 130 after Ctrl-C', async () => {
    const err: string[] = [];
    const io = { warn: (m: string) => err.push(m) };
    expect(await runCli('x', io, async () => 0)).toBe(0);
    expect(
      await runCli('x', io, async () => {
        throw new UsageError('--a must be b');
      }),
    ).toBe(2);
    expect(err).toEqual(['x: error: --a must be b', 'Run x --help for the flags.']);
    expect(exitCodeOf(new BadamOptionError('k', 0, 'an integer >= 1'))).toBe(2);
    expect(
      await runCli('x', io, async () => {
        throw new Error('disk full');
      }),
    ).toBe(1);
    expect(err.at(-1)).toBe('x: error: disk full');
    process.env.BADAM_DEBUG = '1';
    await runCli('x', io, async () => {
      throw new Error('boom');
    });
    expect(err.at(-1)).toMatch(/^Error: boom\n\s+at /);
    process.exitCode = 130;
    expect(await runCli('x', io, async () => 0)).toBe(130);
  });
});
