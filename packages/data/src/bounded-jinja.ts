import { Environment, Interpreter, type Template } from '@huggingface/jinja';

/** How much one rendering of a chat template may do before it is stopped with an error. */
export interface JinjaRenderLimits {
  /** Wall time of one rendering, in milliseconds. */
  readonly milliseconds: number;
  /** Elements all `range()` calls of one rendering may make together. */
  readonly rangeElements: number;
  /** Characters of any text the rendering builds (its output included). */
  readonly characters: number;
}

/**
 * The limits chat templates render under: far above what a real template needs (a conversation renders in
 * well under a millisecond, with a `range()` of a few turns at most), and low enough that a hostile or
 * broken template stops at once with an error instead of running for minutes (nested `range(100000)`) or
 * killing the process (`range(1000000000)` filled the heap: a fatal V8 error, not an exception).
 */
export const JINJA_RENDER_LIMITS: JinjaRenderLimits = {
  milliseconds: 2000,
  rangeElements: 100_000,
  characters: 64 * 1024 * 1024,
};

/** A template that went past a {@link JinjaRenderLimits} limit. */
export class JinjaLimitError extends Error {
  override readonly name = 'JinjaLimitError';
}

/**
 * The parts of @huggingface/jinja's runtime used here. Its declaration files import `./runtime` without an
 * extension, which NodeNext resolution cannot follow, so the classes are typed here by what is used.
 */
interface JinjaEnvironment {
  set(name: string, value: unknown): unknown;
}
interface RuntimeValue {
  readonly value: unknown;
}
interface JinjaInterpreter {
  run(program: Template['parsed']): RuntimeValue;
  evaluate(statement: unknown, environment: JinjaEnvironment): RuntimeValue;
}
const InterpreterClass = Interpreter as unknown as new (environment: JinjaEnvironment) => JinjaInterpreter;
const EnvironmentClass = Environment as unknown as new () => JinjaEnvironment;

/** @huggingface/jinja's interpreter, counting its work: every node it evaluates passes through here. */
class BoundedInterpreter extends InterpreterClass {
  private evaluated = 0;
  constructor(
    environment: JinjaEnvironment,
    private readonly deadline: number,
    private readonly limits: JinjaRenderLimits,
  ) {
    super(environment);
  }

  override evaluate(statement: unknown, environment: JinjaEnvironment): RuntimeValue {
    if ((++this.evaluated & 0xfff) === 0 && performance.now() > this.deadline) {
      throw new JinjaLimitError(
        `rendering took more than ${this.limits.milliseconds} ms (a loop without end, or one far too long, in the template)`,
      );
    }
    const value = super.evaluate(statement, environment);
    if (typeof value.value === 'string' && value.value.length > this.limits.characters) {
      throw new JinjaLimitError(
        `rendering made a text of ${value.value.length.toLocaleString('en')} characters, more than ${this.limits.characters.toLocaleString('en')}`,
      );
    }
    return value;
  }
}

/**
 * Renders a compiled @huggingface/jinja template as `Template.render` does, with its globals, but bounded:
 * time, the elements `range()` makes, and the size of the texts it builds (see {@link JINJA_RENDER_LIMITS}).
 * Past a limit it throws a {@link JinjaLimitError} saying which.
 */
export function renderJinjaBounded(
  template: Template,
  items: Readonly<Record<string, unknown>>,
  limits: JinjaRenderLimits = JINJA_RENDER_LIMITS,
): string {
  let rangeLeft = limits.rangeElements;
  const range = (start: number, stop?: number, step = 1): number[] => {
    const [from, to] = stop === undefined ? [0, start] : [start, stop];
    if (step === 0) throw new Error('range() step must not be zero');
    const count = Math.max(0, Math.ceil((to - from) / step));
    if (!Number.isFinite(count) || count > rangeLeft) {
      throw new JinjaLimitError(
        `range() was asked for ${count.toLocaleString('en')} elements, beyond the ${limits.rangeElements.toLocaleString('en')} that one rendering may make in all`,
      );
    }
    rangeLeft -= count;
    return Array.from({ length: count }, (_, i) => from + i * step);
  };
  const environment = new EnvironmentClass();
  // Template.render's globals, with range() bounded.
  const globals: Record<string, unknown> = {
    false: false,
    true: true,
    none: null,
    False: false,
    True: true,
    None: null,
    raise_exception: (message: string) => {
      throw new Error(message);
    },
    range,
    strftime_now: (format: string) => strftime(new Date(), format),
  };
  for (const [name, value] of Object.entries({ ...globals, ...items })) environment.set(name, value);
  const deadline = performance.now() + limits.milliseconds;
  const result = new BoundedInterpreter(environment, deadline, limits).run(template.parsed);
  return String(result.value);
}

/** The `strftime` codes chat templates use (`%d %b %Y` in Llama 3.1's), as @huggingface/jinja has them. */
function strftime(date: Date, format: string): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return format.replace(/%[YmdbBHM%]/g, (code) => {
    switch (code) {
      case '%Y':
        return String(date.getFullYear());
      case '%m':
        return pad(date.getMonth() + 1);
      case '%d':
        return pad(date.getDate());
      case '%b':
        return new Intl.DateTimeFormat(undefined, { month: 'short' }).format(date);
      case '%B':
        return new Intl.DateTimeFormat(undefined, { month: 'long' }).format(date);
      case '%H':
        return pad(date.getHours());
      case '%M':
        return pad(date.getMinutes());
      default:
        return '%';
    }
  });
}
