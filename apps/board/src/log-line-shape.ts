/** One `trainer_log.jsonl` line, parsed and checked by {@link logLineProblem}. */
export type TrainerLogLine = Record<string, unknown>;

const isFiniteNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isNumberOrNull = (v: unknown) => v === null || typeof v === 'number';
const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** The keys the board draws, and what each must hold when present. */
const KEY_SHAPES: ReadonlyArray<[string, (v: unknown) => boolean, string]> = [
  ['total_steps', isFiniteNumber, 'a number'],
  ['loss', isNumberOrNull, 'a number or null'],
  ['eval_loss', isNumberOrNull, 'a number or null'],
  ['learning_rate', isNumberOrNull, 'a number or null'],
  ['grad_norm', isNumberOrNull, 'a number or null'],
  ['tokens_per_second', isNumberOrNull, 'a number or null'],
  ['memory_bytes', isNumberOrNull, 'a number or null'],
  ['active_block', isNumberOrNull, 'a number or null'],
  ['elapsed_time', (v) => typeof v === 'string', 'a string such as "0:01:05"'],
  [
    'memory_by_kind',
    (v) => isPlainObject(v) && Object.values(v).every(isNumberOrNull),
    'an object of numbers',
  ],
  [
    'block_switches',
    (v) =>
      Array.isArray(v) &&
      v.every(
        (s) => isPlainObject(s) && isFiniteNumber(s.step) && isFiniteNumber(s.from) && isFiniteNumber(s.to),
      ),
    'a list of {step, from, to} numbers',
  ],
];

/**
 * Why a parsed `trainer_log.jsonl` line cannot be drawn, or undefined when it can: it must be an object
 * with a numeric `current_steps`, and each key the board draws must hold what the writers write
 * (`loss` a number or null, `block_switches` a list of `{step, from, to}`, ...). Other keys are free.
 *
 * @example
 * ```ts
 * logLineProblem(null); // 'null is not an object with current_steps'
 * logLineProblem({ current_steps: 3, loss: 'high' }); // 'loss is "high", expected a number or null'
 * ```
 */
export function logLineProblem(line: unknown): string | undefined {
  if (!isPlainObject(line)) return `${short(line)} is not an object with current_steps`;
  if (!isFiniteNumber(line.current_steps)) {
    return `current_steps is ${short(line.current_steps)}, expected a number`;
  }
  for (const [key, fits, expected] of KEY_SHAPES) {
    if (key in line && line[key] !== undefined && !fits(line[key])) {
      return `${key} is ${short(line[key])}, expected ${expected}`;
    }
  }
  return undefined;
}

/** A value as a note shows it: JSON, cut short. */
function short(value: unknown): string {
  const text = value === undefined ? 'missing' : JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
