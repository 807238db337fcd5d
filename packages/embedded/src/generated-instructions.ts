import { SeededRandom } from '@badam/core';

/** The tasks of the generated instruction set. */
export const TASKS = ['copy', 'reverse', 'sort', 'add'] as const;
export type Task = (typeof TASKS)[number];

/** An Alpaca-format record, with the task it came from. */
export interface GeneratedInstruction {
  instruction: string;
  input: string;
  output: string;
  task: Task;
}

const LETTERS = 'abcdef';

function word(rng: SeededRandom, alphabet: string, min: number, max: number): string {
  const length = min + rng.nextInt(max - min + 1);
  return Array.from({ length }, () => alphabet[rng.nextInt(alphabet.length)]!).join('');
}

/** One instruction of `task`: copy or reverse 3-4 letters, sort 3-4 digits, add two one-digit numbers. */
export function makeInstruction(task: Task, rng: SeededRandom): GeneratedInstruction {
  switch (task) {
    case 'copy': {
      const w = word(rng, LETTERS, 3, 4);
      return { task, instruction: 'Copy the letters.', input: w, output: w };
    }
    case 'reverse': {
      const w = word(rng, LETTERS, 3, 4);
      return { task, instruction: 'Reverse the letters.', input: w, output: [...w].reverse().join('') };
    }
    case 'sort': {
      const w = word(rng, '0123456789', 3, 4);
      return { task, instruction: 'Sort the digits.', input: w, output: [...w].sort().join('') };
    }
    case 'add': {
      const a = rng.nextInt(10);
      const b = rng.nextInt(10);
      return { task, instruction: 'Add the numbers.', input: `${a}+${b}`, output: String(a + b) };
    }
  }
}

/**
 * A generated instruction set: `train` and a disjoint held-out `eval` set, tasks in equal shares, from a
 * seeded generator (the same sets on every machine). `validationSize` adds a third set, disjoint from both,
 * drawn right after `eval` (so `eval` is the same with or without it, and `validation` holds every task in
 * equal shares, as `eval` does; `train` is then drawn from what is left): `compare` chooses learning rates
 * on `validation` and reports `eval`.
 */
export function generatedInstructions(trainSize: number, evalSize: number, seed: number, validationSize = 0) {
  const rng = SeededRandom.fromSeed(seed);
  const seen = new Set<string>();
  const draw = (n: number) => {
    const out: GeneratedInstruction[] = [];
    for (let i = 0; out.length < n; i++) {
      const item = makeInstruction(TASKS[i % TASKS.length]!, rng);
      const key = `${item.instruction}|${item.input}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(item);
    }
    return out;
  };
  const evaluation = draw(evalSize);
  const validation = draw(validationSize);
  return { train: draw(trainSize), eval: evaluation, validation };
}

const SUBJECTS = ['the cat', 'a dog', 'my friend', 'the model', 'a bird', 'the teacher'];
const VERBS = ['sees', 'likes', 'writes', 'reads', 'finds', 'sorts'];
const OBJECTS = ['the letters', 'a number', 'some words', 'the list', 'a book', 'the digits'];

/**
 * Generated pretraining text: simple sentences, and statements of the skills the instructions will ask for
 * ("the reverse of kfa is afk.", "3+4 is 7.") — the tiny model learns letters, digits and the skills here,
 * and instruction tuning then teaches it to answer in the chat format. Before that tuning it knows the
 * skills but not the format, so its exact-match accuracy on instructions starts near zero.
 */
export function generatedCorpus(lines: number, seed: number): string[] {
  const rng = SeededRandom.fromSeed(seed);
  const pick = (list: readonly string[]) => list[rng.nextInt(list.length)]!;
  return Array.from({ length: lines }, (_, i) => {
    switch (i % 5) {
      case 0:
        return `${pick(SUBJECTS)} ${pick(VERBS)} ${pick(OBJECTS)}.`;
      case 1: {
        const w = word(rng, LETTERS, 3, 4);
        return `${w} copied is ${w}.`;
      }
      case 2: {
        const w = word(rng, LETTERS, 3, 4);
        return `${w} reversed is ${[...w].reverse().join('')}.`;
      }
      case 3: {
        const w = word(rng, '0123456789', 3, 4);
        return `${w} sorted is ${[...w].sort().join('')}.`;
      }
      default: {
        const a = rng.nextInt(10);
        const b = rng.nextInt(10);
        return `${a}+${b} is ${a + b}.`;
      }
    }
  });
}
