import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { prepareOutputDir } from '../src/index.js';

const root = mkdtempSync(join(tmpdir(), 'badam-callbacks-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let runs = 0;
const freshDir = () => join(root, `run-${runs++}`);

describe('prepareOutputDir', () => {
  it('removes what interrupted saves left behind, and does not count it as earlier work', async () => {
    const dir = freshDir();
    mkdirSync(join(dir, '.checkpoint-30.1a2b3c4d.tmp'), { recursive: true });
    writeFileSync(join(dir, '.checkpoint-30.1a2b3c4d.tmp', 'model.safetensors'), 'half');
    mkdirSync(join(dir, 'checkpoint-20.old-deadbeef'));
    writeFileSync(join(dir, '.trainer_log.jsonl.4242.0badf00d.tmp'), 'half');
    const { unfinished, lock } = await prepareOutputDir(dir, { overwrite: false, resuming: false });
    expect(unfinished.sort()).toEqual([
      '.checkpoint-30.1a2b3c4d.tmp',
      '.trainer_log.jsonl.4242.0badf00d.tmp',
      'checkpoint-20.old-deadbeef',
    ]);
    lock.release();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses earlier work unless overwriting or resuming, a file, and a path through a file', async () => {
    const dir = freshDir();
    mkdirSync(join(dir, 'checkpoint-5'), { recursive: true });
    writeFileSync(join(dir, 'config.json'), '{}');
    await expect(prepareOutputDir(dir, { overwrite: false, resuming: false })).rejects.toThrow(
      /holds earlier work \(1 checkpoint, config\.json\): pass --overwrite_output_dir to replace it, --resume_from_checkpoint to continue its run, or another --output_dir/,
    );
    (await prepareOutputDir(dir, { overwrite: false, resuming: true })).lock.release();
    expect(readdirSync(dir).sort()).toEqual(['checkpoint-5', 'config.json']);
    const file = join(dir, 'config.json');
    await expect(prepareOutputDir(file, { overwrite: true, resuming: false })).rejects.toThrow(
      /--output_dir .*config\.json is a file, not a directory: choose another --output_dir/,
    );
    await expect(prepareOutputDir(join(file, 'run'), { overwrite: false, resuming: false })).rejects.toThrow(
      /cannot write to output directory .*config\.json\/run \(a part of the path is a file\): choose another --output_dir/,
    );
    // Node's own recursive mkdir never returns here.
    await expect(prepareOutputDir('/proc/badam-run', { overwrite: false, resuming: false })).rejects.toThrow(
      /cannot write to output directory \/proc\/badam-run \(the file system cannot make a directory there\): choose another --output_dir/,
    );
  });
});

describe('prepareOutputDir: what a run must never write over', () => {
  it('--overwrite_output_dir removes what the earlier run wrote (model, adapters, results, predictions, logs), nothing else', async () => {
    const dir = freshDir();
    mkdirSync(join(dir, 'checkpoint-5'), { recursive: true });
    const earlier = [
      ...['model.safetensors', 'adapter_model.safetensors', 'adapter_config.json', 'config.json'],
      ...['tokenizer.json', 'all_results.json', 'eval_results.json', 'predict_results.json'],
      ...['generated_predictions.jsonl', 'val_predictions.jsonl', 'trainer_log.jsonl', 'trainer_state.json'],
      ...['training_loss.png', 'training_eval_loss.png', 'model-00001-of-00002.safetensors'],
    ];
    for (const name of [...earlier, 'notes.txt', 'my-data.json']) writeFileSync(join(dir, name), 'x');
    const { replaced, lock } = await prepareOutputDir(dir, { overwrite: true, resuming: false });
    lock.release();
    expect(replaced.sort()).toEqual(['checkpoint-5', ...earlier].sort());
    expect(readdirSync(dir).sort()).toEqual(['my-data.json', 'notes.txt']);
  });

  it('an empty --output_dir (an unset shell variable) is refused: it would be the current directory', async () => {
    for (const empty of ['', ' ']) {
      await expect(prepareOutputDir(empty, { overwrite: true, resuming: false })).rejects.toThrow(
        '--output_dir is empty (an unset shell variable?): it would mean the current directory; name the directory to write to',
      );
    }
  });

  it('resuming a checkpoint of another directory into one holding earlier work is refused, unless overwriting', async () => {
    const dir = freshDir();
    mkdirSync(join(dir, 'checkpoint-9'), { recursive: true });
    writeFileSync(join(dir, 'model.safetensors'), 'another run');
    const options = { overwrite: false, resuming: false, resumingFrom: '/runs/a/checkpoint-50' };
    await expect(prepareOutputDir(dir, options)).rejects.toThrow(
      `--resume_from_checkpoint /runs/a/checkpoint-50 continues a run of another directory, but output directory ${dir} holds earlier work (1 checkpoint, model.safetensors), which the resumed run would delete or mix with its own: pass --overwrite_output_dir to replace it, or choose an empty --output_dir`,
    );
    expect(readdirSync(dir).sort()).toEqual(['checkpoint-9', 'model.safetensors']);
    (await prepareOutputDir(freshDir(), options)).lock.release(); // an empty (new) directory is fine
    (await prepareOutputDir(dir, { ...options, overwrite: true })).lock.release();
    expect(readdirSync(dir)).toEqual([]);
  });
});
