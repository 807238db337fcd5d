import { BadamOptionError } from '../errors.js';

/** One command-line flag, named as LLaMA-Factory / Hugging Face name it. */
export interface FlagSpec {
  readonly type: 'string' | 'number' | 'integer' | 'boolean';
  readonly choices?: readonly string[];
  readonly default?: string | number | boolean;
  readonly help: string;
  /** Lower bound for numbers. */
  readonly min?: number;
  /** The lower bound itself is not allowed (`top_p`: > 0). */
  readonly exclusiveMin?: boolean;
  /** Upper bound for numbers. */
  readonly max?: number;
  /**
   * What the flag is called elsewhere (LLaMA-Factory, the BAdam paper's scripts, Hugging Face), shown in
   * `--help` so that users coming from there find it, e.g. `LLaMA-Factory --badam_switch_interval`.
   */
  readonly aka?: string;
}

export type FlagValues = Record<string, string | number | boolean | undefined>;

/** Thrown for a command line that cannot run: the message says what to change. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(
        d[i - 1]![j]! + 1,
        d[i]![j - 1]! + 1,
        d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The known flag a misspelt `name` most likely meant: one that contains it as a word (`task` in
 * `task_name`) or starts with it (3 letters or more), else the nearest by edit distance when that distance
 * is small for the name's length (a third of it, at most 3: `--loging_steps` is `--logging_steps`), so
 * that a name unlike every flag (`--optim`) gets no suggestion rather than an unrelated one (`--top_p`).
 */
function nearestFlag(name: string, known: readonly string[]): string | undefined {
  const words = (flag: string) => flag.split('_');
  const containing = known.filter(
    (flag) => words(flag).includes(name) || (name.length >= 3 && flag.startsWith(name)),
  );
  if (containing.length > 0) return containing.sort((a, b) => a.length - b.length)[0];
  const nearest = [...known].sort((a, b) => distance(name, a) - distance(name, b))[0];
  if (nearest === undefined) return undefined;
  const d = distance(name, nearest);
  return d <= Math.min(3, Math.max(1, Math.floor(name.length / 3))) ? nearest : undefined;
}

/** Boolean values as Python's argument parsers (LLaMA-Factory, Hugging Face) take them, in any case. */
const TRUE_WORDS = new Set(['true', '1']);
const FALSE_WORDS = new Set(['false', '0']);

function isBooleanWord(raw: string | undefined): raw is string {
  return raw !== undefined && (TRUE_WORDS.has(raw.toLowerCase()) || FALSE_WORDS.has(raw.toLowerCase()));
}

/**
 * Parses `--name value`, `--name=value` and bare boolean flags (`--plot_loss`, or `--plot_loss false`;
 * booleans as `true`/`false`/`True`/`False`/`1`/`0`, as LLaMA-Factory writes them). `-h` is `--help` when
 * the table has a `help` flag. Unknown flags are an error suggesting the nearest known one; values are checked against their type,
 * choices and bounds.
 */
export function parseFlags(argv: readonly string[], specs: Readonly<Record<string, FlagSpec>>): FlagValues {
  return parseFlagsExplicit(argv, specs).values;
}

/** {@link parseFlags}, also telling which flags the command line set (the rest are defaults). */
export function parseFlagsExplicit(
  argv: readonly string[],
  specs: Readonly<Record<string, FlagSpec>>,
): { values: FlagValues; explicit: Set<string> } {
  const explicit = new Set<string>();
  const values: FlagValues = {};
  for (const [name, spec] of Object.entries(specs))
    if (spec.default !== undefined) values[name] = spec.default;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] === '-h' && specs.help !== undefined ? '--help' : argv[i]!;
    if (!arg.startsWith('--')) {
      throw new UsageError(`unexpected argument ${JSON.stringify(arg)}: flags look like --name value`);
    }
    const eq = arg.indexOf('=');
    const name = (eq >= 0 ? arg.slice(2, eq) : arg.slice(2)).replaceAll('-', '_');
    const spec = specs[name];
    if (spec === undefined) {
      const nearest = nearestFlag(name, Object.keys(specs));
      throw new UsageError(
        `unknown flag --${name}${nearest !== undefined ? `; did you mean --${nearest}?` : ''} (--help lists the flags)`,
      );
    }
    let raw: string | undefined = eq >= 0 ? arg.slice(eq + 1) : undefined;
    if (raw === undefined) {
      const next = argv[i + 1];
      if (spec.type === 'boolean') {
        if (isBooleanWord(next)) {
          raw = next;
          i++;
        } else raw = 'true';
      } else {
        if (next === undefined || next.startsWith('--'))
          throw new UsageError(`--${name} needs a value (${spec.help})`);
        raw = next;
        i++;
      }
    }
    values[name] = convert(name, raw, spec);
    explicit.add(name);
  }
  return { values, explicit };
}

/** A decimal number as people write one on a command line: `3`, `-1`, `0.5`, `.5`, `2e-3`. */
const NUMBER_LITERAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

function convert(name: string, raw: string, spec: FlagSpec): string | number | boolean {
  switch (spec.type) {
    case 'boolean':
      if (TRUE_WORDS.has(raw.toLowerCase())) return true;
      if (FALSE_WORDS.has(raw.toLowerCase())) return false;
      throw new BadamOptionError(`--${name}`, raw, 'true or false (True and False too)');
    case 'number':
    case 'integer': {
      // Number('') and Number(' ') are 0, Number('0x10') is 16: only a plain decimal literal is a number here.
      const value = NUMBER_LITERAL.test(raw.trim()) ? Number(raw.trim()) : Number.NaN;
      const { min, max, exclusiveMin = false } = spec;
      const ok =
        Number.isFinite(value) &&
        (spec.type === 'number' || Number.isSafeInteger(value)) &&
        (min === undefined || (exclusiveMin ? value > min : value >= min)) &&
        (max === undefined || value <= max);
      if (!ok) {
        const bounds = [
          min !== undefined ? `${exclusiveMin ? '>' : '>='} ${min}` : '',
          max !== undefined ? `<= ${max}` : '',
        ].filter(Boolean);
        throw new BadamOptionError(
          `--${name}`,
          raw,
          `${spec.type === 'integer' ? 'an integer' : 'a number'}${bounds.length > 0 ? ` ${bounds.join(' and ')}` : ''}`,
          raw.trim() === '' ? 'the value is empty' : undefined,
        );
      }
      return value;
    }
    case 'string':
      if (spec.choices !== undefined && !spec.choices.includes(raw)) {
        throw new BadamOptionError(`--${name}`, raw, `one of ${spec.choices.join(', ')}`);
      }
      return raw;
  }
}

/** The help text of a flag table. */
export function flagHelp(specs: Readonly<Record<string, FlagSpec>>): string {
  const width = Math.max(...Object.keys(specs).map((n) => n.length)) + 4;
  return Object.entries(specs)
    .map(([name, s]) => {
      const extra = [
        s.choices ? s.choices.join('|') : '',
        s.default !== undefined ? `default ${s.default}` : '',
        s.aka !== undefined ? `as ${s.aka}` : '',
      ]
        .filter(Boolean)
        .join('; ');
      return `  --${name.padEnd(width)}${s.help}${extra ? ` (${extra})` : ''}`;
    })
    .join('\n');
}
