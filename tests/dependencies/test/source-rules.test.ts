import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { comparableLines, oversizedSources, runnerSharedCode, sharedRuns } from './shared-code.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));

describe('the house rules a reader relies on', () => {
  it('no source file (tests and native code too) is over 800 lines', () => {
    expect(oversizedSources(root)).toEqual([]);
  });

  it("the runners' src/ share no code beyond their import lists", () => {
    expect(runnerSharedCode(root)).toEqual([]);
  });
});

describe('the checks themselves', () => {
  const llama = join(root, 'apps/llama-alpaca/src/run-training.ts');
  const roberta = join(root, 'apps/roberta-superglue/src/run-superglue.ts');

  it('find a function one runner writes again of the other', () => {
    const own = readFileSync(llama, 'utf8');
    // A real function of badam-llama, planted in badam-roberta's source.
    const start = own.indexOf('export function checkCutoffLen(');
    const planted = own.slice(start, own.indexOf('\n}\n', start) + 3);
    expect(planted.split('\n').length).toBeGreaterThan(8);
    const runs = sharedRuns(
      new Map([['llama.ts', own]]),
      new Map([['roberta.ts', `${readFileSync(roberta, 'utf8')}\n${planted}`]]),
    );
    expect(runs).toHaveLength(1);
    expect(runs[0]!.first.file).toBe('llama.ts');
    expect(runs[0]!.second.file).toBe('roberta.ts');
    expect(runs[0]!.lines).toBeGreaterThanOrEqual(6);
  });

  it('pass import lists, comments and punctuation, and fold white space', () => {
    const imports = [
      'import {',
      '  fineTune,',
      '  prepareRunBackend,',
      '  prepareRunOutputDir,',
      '  type RunnerModel,',
      '  writeRunResults,',
      "} from '@badam/runner';",
      "import { writeFileAtomic } from '@badam/safetensors';",
      "export { a, b } from './c.js';",
      '/**',
      ' * A comment both files have,',
      ' * word for word.',
      ' */',
      '// and another',
      '});',
    ].join('\n');
    expect(comparableLines(imports)).toEqual([]);
    expect(sharedRuns(new Map([['a.ts', imports]]), new Map([['b.ts', imports]]))).toEqual([]);
    expect(comparableLines('const   x =  1; /* y */\n\n  }\n  return x;')).toEqual([
      { line: 1, text: 'const x = 1; /* y */' },
      { line: 4, text: 'return x;' },
    ]);
  });

  it('measure every source file in lines', () => {
    expect(oversizedSources(root, 10).some((p) => p.startsWith('packages/core/src/index.ts has'))).toBe(true);
  });
});
