import { describe, expect, it } from 'vitest';
import {
  CHECKPOINT_DIR,
  CHECKPOINT_FILES,
  checkpointDirName,
  checkpointJson,
  checkpointManifest,
  checkpointStepOf,
  checkpointTempDirName,
  checkpointTimeline,
  type ListedCheckpoint,
  listedCheckpoint,
  newestFirst,
  OPTIMIZER_STATE_KEYS,
  optimizerTensorName,
  replacedCheckpointDirName,
  requiredCheckpointFiles,
  trainerStateFileOf,
  UNFINISHED_CHECKPOINT,
  unlistedCheckpointFiles,
} from '../src/index.js';

const digest = { bytes: 1, sha256: '00' };

describe('the checkpoint format', () => {
  it('names directories, their unfinished forms and the files inside as checkpoints on disk have them', () => {
    expect(checkpointDirName(40)).toBe('checkpoint-40');
    expect(checkpointStepOf('checkpoint-40')).toBe(40);
    expect(checkpointStepOf('checkpoint-40.old-0a1b')).toBeUndefined();
    expect(CHECKPOINT_DIR.test('checkpoint-7')).toBe(true);
    expect(checkpointTempDirName(40, '0a1b2c3d')).toBe('.checkpoint-40.0a1b2c3d.tmp');
    expect(replacedCheckpointDirName(40, '0a1b2c3d')).toBe('checkpoint-40.old-0a1b2c3d');
    for (const name of [checkpointTempDirName(3, 'ff00'), replacedCheckpointDirName(3, 'ff00')])
      expect(UNFINISHED_CHECKPOINT.test(name)).toBe(true);
    expect(UNFINISHED_CHECKPOINT.test('checkpoint-3')).toBe(false);
    expect(Object.values(CHECKPOINT_FILES)).toEqual([
      'model.safetensors',
      'optimizer.safetensors',
      'optimizer_state.json',
      'badam_trainer_state.json',
      'trainer_state.json',
      'checkpoint.json',
    ]);
    expect(optimizerTensorName('model.layers.0.mlp.up_proj.weight', OPTIMIZER_STATE_KEYS.expAvgSq)).toBe(
      'model.layers.0.mlp.up_proj.weight.exp_avg_sq',
    );
  });

  it('writes the manifest byte for byte as earlier checkpoints have it (they still resume)', () => {
    const manifest = checkpointManifest({
      step: 4,
      id: 'aa',
      parent: null,
      savedAt: 5,
      files: { 'model.safetensors': { bytes: 8, sha256: 'ff' } },
    });
    expect(checkpointJson(manifest)).toBe(
      '{\n  "version": 1,\n  "step": 4,\n  "id": "aa",\n  "parent": null,\n  "savedAt": 5,\n  "files": {\n    "model.safetensors": {\n      "bytes": 8,\n      "sha256": "ff"\n    }\n  }\n}\n',
    );
  });

  it('finds the files a manifest leaves out: the needed ones, and any other in the directory', () => {
    const full = {
      files: {
        'model.safetensors': digest,
        'optimizer.safetensors': digest,
        'optimizer_state.json': digest,
        'badam_trainer_state.json': digest,
        'config.json': digest,
      },
    };
    expect(
      unlistedCheckpointFiles(full, ['model.safetensors', 'config.json', 'checkpoint.json', '.x.tmp']),
    ).toEqual([]);
    const { 'optimizer.safetensors': _dropped, ...rest } = full.files;
    expect(unlistedCheckpointFiles({ files: rest }, ['optimizer.safetensors', 'notes.txt'])).toEqual([
      'optimizer.safetensors',
      'notes.txt',
    ]);
  });

  it('marks a model-only checkpoint in its manifest, which then needs the weights and trainer state only', () => {
    const fields = { step: 4, id: 'aa', parent: null, savedAt: 5, files: {} };
    expect(checkpointManifest({ ...fields, modelOnly: true }).modelOnly).toBe(true);
    // A full checkpoint's manifest has no modelOnly key (earlier manifests are unchanged).
    expect('modelOnly' in checkpointManifest({ ...fields, modelOnly: false })).toBe(false);
    const modelOnly = {
      modelOnly: true,
      files: { 'model.safetensors': digest, 'badam_trainer_state.json': digest },
    };
    expect(requiredCheckpointFiles(modelOnly)).toEqual(['model.safetensors', 'badam_trainer_state.json']);
    expect(unlistedCheckpointFiles(modelOnly, ['model.safetensors', 'badam_trainer_state.json'])).toEqual([]);
    // Without the mark, the same manifest lacks the optimizer's files.
    expect(unlistedCheckpointFiles({ files: modelOnly.files }, [])).toEqual([
      'optimizer.safetensors',
      'optimizer_state.json',
    ]);
  });

  it('reads the trainer state of checkpoints from before badam_trainer_state.json from trainer_state.json', () => {
    expect(trainerStateFileOf({ files: { 'trainer_state.json': digest } })).toBe('trainer_state.json');
    expect(
      trainerStateFileOf({ files: { 'trainer_state.json': digest, 'badam_trainer_state.json': digest } }),
    ).toBe('badam_trainer_state.json');
    expect(trainerStateFileOf({ files: {} })).toBe('badam_trainer_state.json');
  });

  it('orders checkpoints by when they were saved and follows a timeline back from its head', () => {
    const at = (dir: string, step: number, id: string, parent: string | null, savedAt: number) =>
      listedCheckpoint(dir, dir, { version: 1, step, id, parent, savedAt, files: {} })!;
    // Steps 10 and 20 of a first timeline; the run resumed from 10 and saved 15 later.
    const listed: ListedCheckpoint[] = [
      at('checkpoint-10', 10, 'a', null, 1),
      at('checkpoint-20', 20, 'b', 'a', 2),
      at('checkpoint-15', 15, 'c', 'a', 3),
    ];
    expect(newestFirst(listed).map((l) => l.step)).toEqual([15, 20, 10]);
    expect(checkpointTimeline(listed, 'c').map((l) => l.id)).toEqual(['c', 'a']);
    expect(checkpointTimeline(listed, null)).toEqual([]);
    // A parent loop (a hand-edited manifest) ends the walk instead of running forever.
    expect(checkpointTimeline([at('x', 1, 'x', 'y', 0), at('y', 2, 'y', 'x', 0)], 'x')).toHaveLength(2);
    // Manifests from before timelines: the directory's name is the id.
    expect(listedCheckpoint('/out/checkpoint-5', 'checkpoint-5', { version: 1, step: 5, files: {} })).toEqual(
      {
        dir: '/out/checkpoint-5',
        step: 5,
        id: 'checkpoint-5',
        parent: null,
        savedAt: 0,
      },
    );
    expect(listedCheckpoint('d', 'd', { files: {} })).toBeUndefined();
    expect(listedCheckpoint('d', 'd', null)).toBeUndefined();
  });
});
