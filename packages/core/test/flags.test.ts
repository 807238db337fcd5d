import { describe, expect, it } from 'vitest';
import { type FlagSpec, flagHelp, parseFlags } from '../src/index.js';

const SPECS: Readonly<Record<string, FlagSpec>> = {
  learning_rate: { type: 'number', min: 0, default: 1e-5, help: 'peak learning rate' },
  seed: { type: 'integer', min: 0, default: 42, help: 'seed' },
  top_p: { type: 'number', min: 0, exclusiveMin: true, max: 1, default: 1, help: 'nucleus sampling' },
  warmup_ratio: { type: 'number', min: 0, max: 1, default: 0, help: 'warmup fraction' },
  task_name: { type: 'string', help: 'SuperGLUE task' },
  plot_loss: { type: 'boolean', default: false, help: 'plot' },
  bf16: { type: 'boolean', default: false, help: 'bf16 weights' },
  switch_every: { type: 'integer', help: 'steps per block', aka: 'LLaMA-Factory --badam_switch_interval' },
  help: { type: 'boolean', default: false, help: 'show this help' },
};

describe('parseFlags: numbers', () => {
  it.each([['--learning_rate='], ['--seed='], ['--seed', ''], ['--learning_rate', ' ']])(
    'an empty value (%j) is an error, not 0',
    (...argv) => {
      expect(() => parseFlags(argv, SPECS)).toThrow(
        /must be an? (number|integer) >= 0, got "\s*" \(the value is empty\)/,
      );
    },
  );

  it.each([
    [['--seed', '0x10'], '--seed must be an integer >= 0, got "0x10"'],
    [['--learning_rate', 'Infinity'], '--learning_rate must be a number >= 0, got "Infinity"'],
    [['--learning_rate', '1e-3x'], '--learning_rate must be a number'],
    [['--top_p', '0'], '--top_p must be a number > 0 and <= 1, got "0"'],
    [['--top_p', '5'], '--top_p must be a number > 0 and <= 1, got "5"'],
    [['--warmup_ratio', '1.5'], '--warmup_ratio must be a number >= 0 and <= 1'],
    [['--seed', '1.5'], '--seed must be an integer >= 0'],
  ])('%j is refused: %s', (argv, message) => {
    expect(() => parseFlags(argv, SPECS)).toThrow(message);
  });

  it('reads the ways people write numbers', () => {
    expect(parseFlags(['--learning_rate', '2e-3', '--seed', '7', '--top_p', '.9'], SPECS)).toMatchObject({
      learning_rate: 0.002,
      seed: 7,
      top_p: 0.9,
    });
    expect(parseFlags(['--learning_rate=1E-5', '--warmup_ratio', '1'], SPECS)).toMatchObject({
      learning_rate: 1e-5,
      warmup_ratio: 1,
    });
  });
});

describe('parseFlags: unknown flags', () => {
  it('suggests the flag a short name is part of, not the nearest short one', () => {
    expect(() => parseFlags(['--task', 'cb'], SPECS)).toThrow(
      'unknown flag --task; did you mean --task_name?',
    );
  });
  it('suggests the nearest for a typo, and nothing for a name unlike any flag', () => {
    expect(() => parseFlags(['--learning_rat', '1'], SPECS)).toThrow('did you mean --learning_rate?');
    expect(() => parseFlags(['--xyz', '1'], SPECS)).toThrow(
      /^unknown flag --xyz \(--help lists the flags\)$/,
    );
  });
  it('suggests only within an edit distance that is small for the name: --optim is not --top_p', () => {
    const specs = {
      top_p: { type: 'number', help: 'nucleus' },
      logging_steps: { type: 'integer', help: 'log' },
      output_dir: { type: 'string', help: 'out' },
    } as const;
    // 4 edits from top_p: a different word, not a typo of it.
    expect(() => parseFlags(['--optim', 'adamw_torch'], specs)).toThrow(
      /^unknown flag --optim \(--help lists the flags\)$/,
    );
    expect(() => parseFlags(['--loging_steps', '1'], specs)).toThrow('did you mean --logging_steps?');
    expect(() => parseFlags(['--outputdir', 'o'], specs)).toThrow('did you mean --output_dir?');
    expect(() => parseFlags(['--out', 'o'], specs)).toThrow('did you mean --output_dir?');
    expect(() => parseFlags(['--tp', '1'], specs)).toThrow(/^unknown flag --tp \(/);
  });
});

describe('parseFlags: booleans and help as LLaMA-Factory writes them', () => {
  it.each([
    [['--bf16', 'True'], true],
    [['--bf16=True'], true],
    [['--bf16', 'False'], false],
    [['--bf16=false'], false],
    [['--bf16', 'true'], true],
    [['--bf16'], true],
  ])('%j is %s', (argv, value) => {
    expect(parseFlags([...argv, '--plot_loss'], SPECS)).toMatchObject({ bf16: value, plot_loss: true });
  });

  it('refuses a boolean that is not one, naming the words it takes', () => {
    expect(() => parseFlags(['--bf16=yes'], SPECS)).toThrow(
      '--bf16 must be true or false (True and False too)',
    );
  });

  it('takes -h for --help, and shows other names of a flag in the help', () => {
    expect(parseFlags(['-h'], SPECS).help).toBe(true);
    expect(() => parseFlags(['-h'], { seed: SPECS.seed! })).toThrow('unexpected argument "-h"');
    expect(flagHelp(SPECS)).toMatch(
      /--switch_every +steps per block \(as LLaMA-Factory --badam_switch_interval\)/,
    );
  });
});
