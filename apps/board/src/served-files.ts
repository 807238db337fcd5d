/**
 * What the board serves from a run's directory: its training outputs and nothing else. The log
 * (`trainer_log.jsonl`), the results files (`*_results.json`: Hugging Face's all/train/eval results, the
 * embedded default's) and the images it wrote (`*.png`: training_loss.png, ...), each directly in the
 * directory. Not the model, checkpoints, configuration or any other file beside them.
 */
export function isServedRunFile(name: string): boolean {
  return name === 'trainer_log.jsonl' || RESULTS_FILE.test(name) || IMAGE_FILE.test(name);
}

/** What the board serves from a comparison's directory: its table, results and loss plot. */
export function isServedComparisonFile(name: string): boolean {
  return (COMPARISON_FILES as readonly string[]).includes(name) || IMAGE_FILE.test(name);
}

/** A results file's name: `all_results.json`, `eval_results.json`, `embedded_results.json`, ... */
export const RESULTS_FILE = /^[A-Za-z0-9][A-Za-z0-9_.-]*_results\.json$/;

/** An image a run or a comparison wrote. */
export const IMAGE_FILE = /^[A-Za-z0-9][A-Za-z0-9_.-]*\.png$/;

/** The files `badam-llama compare` and `badam-roberta compare` write beside their runs. */
export const COMPARISON_FILES = ['compare_table.md', 'compare_results.json'] as const;

/** What the refusal of another file says. */
export const SERVED_FILES_NOTE =
  'the board serves only training outputs: trainer_log.jsonl, *_results.json and *.png in a run directory, compare_table.md, compare_results.json and *.png in a comparison';
