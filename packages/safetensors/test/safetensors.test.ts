import { spawnSync } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NamedArray } from '@badam/core';
import { afterAll, describe, expect, it } from 'vitest';
import {
  bfloat16ToFloat32,
  FileWriteError,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
  SafetensorsError,
  SafetensorsFile,
  SafetensorsModel,
  safetensorsHeader,
  writeFileAtomic,
  writeSafetensors,
  writeSafetensorsModel,
} from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'safetensors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SAMPLE: NamedArray[] = [
  {
    name: 'model.embed_tokens.weight',
    dtype: 'bfloat16',
    shape: [2, 3],
    data: float32ToBfloat16(Float32Array.of(1, -2, 0.5, 3.25, 1e-3, -0)),
  },
  { name: 'model.norm.weight', dtype: 'float32', shape: [3], data: Float32Array.of(0.1, 0.2, 0.3) },
  {
    name: 'lm_head.weight',
    dtype: 'float16',
    shape: [1, 2],
    data: float32ToFloat16(Float32Array.of(65504, -1 / 3)),
  },
  { name: 'position_ids', dtype: 'int64', shape: [3], data: BigInt64Array.of(0n, 1n, 2n) },
  { name: 'step', dtype: 'int32', shape: [], data: Int32Array.of(7) },
  { name: 'mask', dtype: 'bool', shape: [2], data: Uint8Array.of(1, 0) },
];

/** An independent reader written from the format's spec: u64 LE length, JSON, raw little-endian data. */
function parseBySpec(bytes: Buffer) {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  return { n, header, data: bytes.subarray(8 + n) };
}

describe('writeSafetensors / SafetensorsFile', () => {
  it('writes what the spec says and reads it back exactly, every dtype', async () => {
    const path = join(dir, 'sample.safetensors');
    await writeSafetensors(path, SAMPLE, { format: 'pt' });
    const bytes = readFileSync(path);
    const { n, header, data } = parseBySpec(bytes);
    expect(n % 8).toBe(0); // header padded to 8 bytes
    expect(header.__metadata__).toEqual({ format: 'pt' });
    expect(header['model.norm.weight']).toEqual({ dtype: 'F32', shape: [3], data_offsets: [12, 24] });
    expect(header.position_ids).toEqual({ dtype: 'I64', shape: [3], data_offsets: [28, 52] });
    expect(data.subarray(12, 24).readFloatLE(4)).toBeCloseTo(0.2, 7);
    expect(data.length).toBe(12 + 12 + 4 + 24 + 4 + 2);

    const file = await SafetensorsFile.open(path);
    expect(file.names()).toEqual(SAMPLE.map((t) => t.name));
    expect(file.metadata).toEqual({ format: 'pt' });
    for (const t of SAMPLE) {
      const read = await file.read(t.name);
      expect(read.dtype).toBe(t.dtype);
      expect(read.shape).toEqual(t.shape);
      expect([...read.data]).toEqual([...t.data]);
    }
    expect([...(await file.readFloat32('model.embed_tokens.weight'))]).toEqual([
      1,
      -2,
      0.5,
      3.25,
      bfloat16ToFloat32(float32ToBfloat16(Float32Array.of(1e-3)))[0],
      -0,
    ]);
    expect([...(await file.readFloat32('lm_head.weight'))]).toEqual([
      65504,
      float16ToFloat32(float32ToFloat16(Float32Array.of(-1 / 3)))[0],
    ]);
    await expect(file.readFloat32('step')).rejects.toThrow(/has dtype I32, not a floating-point type/);
    await expect(file.read('nope')).rejects.toThrow(/missing tensor "nope"/);
    await file.close();
  });

  it('bf16 and fp16 conversions round to nearest even', () => {
    expect([...float32ToBfloat16(Float32Array.of(1, 1 + 2 ** -8, 1 + 3 * 2 ** -8))]).toEqual([
      0x3f80, 0x3f80, 0x3f82,
    ]);
    expect([...float32ToFloat16(Float32Array.of(1, 65504, 65520, 2 ** -24, 2 ** -25, -2))]).toEqual([
      0x3c00, 0x7bff, 0x7c00, 0x0001, 0x0000, 0xc000,
    ]);
    expect([...float16ToFloat32(Uint16Array.of(0x3c00, 0x0001, 0x7c00, 0xfc00))]).toEqual([
      1,
      2 ** -24,
      Infinity,
      -Infinity,
    ]);
    expect(float16ToFloat32(Uint16Array.of(0x7e00))[0]).toBeNaN();
  });

  describe('bad files get an error that names the file and the problem', () => {
    const good = join(dir, 'good.safetensors');
    const bad = (name: string, bytes: Uint8Array | Buffer) => {
      const path = join(dir, name);
      writeFileSync(path, bytes);
      return path;
    };
    const withHeader = (header: unknown, dataBytes = 0) => {
      const json = Buffer.from(JSON.stringify(header));
      const out = Buffer.alloc(8 + json.length + dataBytes);
      out.writeBigUInt64LE(BigInt(json.length), 0);
      json.copy(out, 8);
      return out;
    };

    it('truncated files', async () => {
      await writeSafetensors(good, SAMPLE);
      const cut = join(dir, 'cut.safetensors');
      writeFileSync(cut, readFileSync(good).subarray(0, readFileSync(good).length - 5));
      await expect(SafetensorsFile.open(cut)).rejects.toThrow(
        /cut.safetensors: tensor \w+: data_offsets \[\d+, \d+\] run past the data/,
      );
      await expect(SafetensorsFile.open(bad('tiny.safetensors', Buffer.from([1, 2, 3])))).rejects.toThrow(
        /tiny.safetensors: truncated: 3 bytes/,
      );
      const headerCut = join(dir, 'header-cut.safetensors');
      writeFileSync(headerCut, readFileSync(good));
      truncateSync(headerCut, 20);
      await expect(SafetensorsFile.open(headerCut)).rejects.toThrow(
        /truncated: the header needs \d+ bytes but the file has only 12/,
      );
    });

    it('absurd header length, invalid JSON, unknown dtype, bad offsets, overlap, missing file', async () => {
      const absurd = Buffer.alloc(16);
      absurd.writeBigUInt64LE(2n ** 40n, 0);
      await expect(SafetensorsFile.open(bad('absurd.safetensors', absurd))).rejects.toThrow(
        /header length 1099511627776 is absurd/,
      );
      const notJson = Buffer.alloc(12);
      notJson.writeBigUInt64LE(4n, 0);
      notJson.write('{no}', 8);
      await expect(SafetensorsFile.open(bad('json.safetensors', notJson))).rejects.toThrow(
        /header is not valid JSON/,
      );
      await expect(
        SafetensorsFile.open(
          bad(
            'dtype.safetensors',
            withHeader({ w: { dtype: 'F8_E9', shape: [1], data_offsets: [0, 1] } }, 1),
          ),
        ),
      ).rejects.toThrow(/tensor w: unknown dtype "F8_E9"/);
      await expect(
        SafetensorsFile.open(
          bad(
            'shape.safetensors',
            withHeader({ w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }, 12),
          ),
        ),
      ).rejects.toThrow(/tensor w: data_offsets span 12 bytes but shape \[2, 2\] of F32 needs 16/);
      await expect(
        SafetensorsFile.open(
          bad('range.safetensors', withHeader({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8)),
        ),
      ).rejects.toThrow(/tensor w: data_offsets \[0, 16\] run past the data \(8 bytes\)/);
      await expect(
        SafetensorsFile.open(
          bad(
            'overlap.safetensors',
            withHeader(
              {
                a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
                b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
              },
              12,
            ),
          ),
        ),
      ).rejects.toThrow(/tensors a and b overlap/);
      await expect(SafetensorsFile.open(join(dir, 'absent.safetensors'))).rejects.toThrow(
        /absent.safetensors: does not exist/,
      );
      await expect(SafetensorsFile.open(good)).resolves.toBeInstanceOf(SafetensorsFile);
      const error = await SafetensorsFile.open(join(dir, 'absent.safetensors')).catch((e) => e);
      expect(error).toBeInstanceOf(SafetensorsError);
    });

    it('rejects tensors whose data does not match their shape when writing', () => {
      expect(() =>
        safetensorsHeader([{ name: 'w', dtype: 'float32', shape: [3], data: Float32Array.of(1, 2) }]),
      ).toThrow(/data of w must be 3 elements for shape \[3\], got "2 elements"/);
    });
  });
});

describe('SafetensorsModel: single file and shards', () => {
  it('writes shards with an index when over the shard size, and reads either layout', async () => {
    const tensors: NamedArray[] = Array.from({ length: 5 }, (_, i) => ({
      name: `model.layers.${i}.w`,
      dtype: 'float32',
      shape: [4, 4],
      data: Float32Array.from({ length: 16 }, (_, j) => i * 100 + j),
    }));
    const sharded = join(dir, 'sharded');
    const written = await writeSafetensorsModel(sharded, tensors, { maxShardBytes: 130 });
    expect(written).toEqual([
      'model-00001-of-00003.safetensors',
      'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
      'model.safetensors.index.json',
    ]);
    const index = JSON.parse(readFileSync(join(sharded, 'model.safetensors.index.json'), 'utf8'));
    expect(index.metadata.total_size).toBe(5 * 64);
    expect(index.weight_map['model.layers.4.w']).toBe('model-00003-of-00003.safetensors');
    const model = await SafetensorsModel.open(sharded);
    expect(model.names()).toHaveLength(5);
    expect([...(await model.readFloat32('model.layers.3.w'))].slice(0, 3)).toEqual([300, 301, 302]);
    expect(model.shapeOf('model.layers.3.w')).toEqual([4, 4]);
    await model.close();
    // No temporary files are left behind.
    expect((await readdir(sharded)).filter((f) => f.endsWith('.tmp'))).toEqual([]);

    const single = join(dir, 'single');
    expect(await writeSafetensorsModel(single, tensors)).toEqual(['model.safetensors']);
    const one = await SafetensorsModel.open(single);
    expect([...(await one.readFloat32('model.layers.0.w'))][15]).toBe(15);
    await one.close();
  });

  it('errors: an index naming a tensor its shard lacks, a directory without weights', async () => {
    const broken = join(dir, 'broken');
    await writeSafetensorsModel(
      broken,
      [
        { name: 'a', dtype: 'float32', shape: [1], data: Float32Array.of(1) },
        { name: 'b', dtype: 'float32', shape: [1], data: Float32Array.of(2) },
      ],
      { maxShardBytes: 4 },
    );
    const indexPath = join(broken, 'model.safetensors.index.json');
    const index = JSON.parse(readFileSync(indexPath, 'utf8'));
    index.weight_map.c = 'model-00001-of-00002.safetensors';
    writeFileSync(indexPath, JSON.stringify(index));
    await expect(SafetensorsModel.open(broken)).rejects.toThrow(
      /model-00001-of-00002.safetensors: missing tensor "c", which model.safetensors.index.json places in this shard/,
    );
    await expect(SafetensorsModel.open(dir)).rejects.toThrow(
      /has neither model.safetensors nor model.safetensors.index.json/,
    );
  });
});

describe('files that are not files, and writes that fail', () => {
  it('a named pipe, a device or a symbolic link loop is refused by stat, before any open', async () => {
    const fifo = join(dir, 'pipe.safetensors');
    const hasFifo = spawnSync('mkfifo', [fifo]).status === 0;
    const loop = join(dir, 'loop.safetensors');
    symlinkSync(loop, loop);
    const cases: Array<[string, RegExp]> = [
      ['/dev/zero', /\/dev\/zero: is a device, not a regular file: only files are read/],
      [loop, /loop.safetensors: is a symbolic link that loops \(ELOOP\): point it at a file/],
    ];
    if (hasFifo) cases.push([fifo, /pipe.safetensors: is a named pipe, not a regular file/]);
    // Opened, a pipe would block (and the test time out) until a writer came.
    for (const [path, message] of cases) {
      const error = await SafetensorsFile.open(path).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SafetensorsError);
      expect((error as Error).message).toMatch(message);
    }
  });

  it('a failed write names the file asked for (not its temporary file), the reason and the fix', async () => {
    const blocker = join(dir, 'a-file');
    writeFileSync(blocker, 'x');
    const target = join(blocker, 'model.safetensors');
    const error = await writeFileAtomic(target, ['data']).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FileWriteError);
    expect((error as Error).message).toMatch(
      `cannot write ${target}: a part of its path is a file, not a directory`,
    );
    // The rename fails here: Node's message names the temporary file, this one the file asked for.
    const occupied = join(dir, 'occupied');
    mkdirSync(join(occupied, 'trainer_state.json'), { recursive: true });
    const renamed = await writeFileAtomic(join(occupied, 'trainer_state.json'), ['{}']).catch((e) => e);
    expect((renamed as FileWriteError).code).toBe('EISDIR');
    expect((renamed as Error).message).toBe(
      `cannot write ${join(occupied, 'trainer_state.json')}: a directory is in its place (EISDIR): remove it, or write somewhere else`,
    );
    expect(await readdir(occupied)).toEqual(['trainer_state.json']); // no temporary file left
  });
});
