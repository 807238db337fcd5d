import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NamedArray } from '@badam/core';
import { afterAll, describe, expect, it } from 'vitest';
import {
  float32ToBfloat16,
  float32ToFloat16,
  SafetensorsBytes,
  SafetensorsError,
  SafetensorsFile,
  writeSafetensors,
} from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'safetensors-bytes-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SAMPLE: NamedArray[] = [
  { name: 'a.bf16', dtype: 'bfloat16', shape: [3], data: float32ToBfloat16(Float32Array.of(1, -2.5, 1e-3)) },
  { name: 'b.f32', dtype: 'float32', shape: [2, 2], data: Float32Array.of(0.1, 0.2, 0.3, -4) },
  { name: 'c.f16', dtype: 'float16', shape: [1], data: float32ToFloat16(Float32Array.of(-1 / 3)) },
  { name: 'd.i64', dtype: 'int64', shape: [2], data: BigInt64Array.of(5n, -6n) },
  { name: 'e.bool', dtype: 'bool', shape: [3], data: Uint8Array.of(1, 0, 1) },
];

/** A header and `dataBytes` zero bytes, as the format lays them out. */
function withHeader(header: unknown, dataBytes = 0): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const out = Buffer.alloc(8 + json.length + dataBytes);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  return out;
}

describe('SafetensorsBytes: a file in memory, as a web page fetches it', () => {
  it('reads every tensor as SafetensorsFile does, also from bytes at an odd offset of a larger buffer', async () => {
    const path = join(dir, 'sample.safetensors');
    await writeSafetensors(path, SAMPLE, { format: 'pt' });
    const file = await SafetensorsFile.open(path);
    const raw = readFileSync(path);
    const shifted = new Uint8Array(raw.length + 3);
    shifted.set(raw, 3);
    for (const bytes of [new Uint8Array(raw), shifted.subarray(3)]) {
      const memory = SafetensorsBytes.parse(bytes, 'sample');
      expect(memory.names()).toEqual(file.names());
      expect(memory.metadata).toEqual({ format: 'pt' });
      for (const t of SAMPLE) {
        const read = await memory.read(t.name);
        expect(read.dtype).toBe(t.dtype);
        expect(memory.shapeOf(t.name)).toEqual(t.shape);
        expect([...read.data]).toEqual([...t.data]);
      }
      for (const name of ['a.bf16', 'b.f32', 'c.f16']) {
        expect([...(await memory.readFloat32(name))]).toEqual([...(await file.readFloat32(name))]);
      }
      await expect(memory.readFloat32('d.i64')).rejects.toThrow(/sample: tensor d.i64 has dtype I64/);
      expect(() => memory.entry('absent')).toThrow(
        /sample: missing tensor "absent" \(the file has 5 tensors\)/,
      );
    }
    await file.close();
  });

  it('refuses a bad file with the same message as SafetensorsFile', async () => {
    const absurd = Buffer.alloc(16);
    absurd.writeBigUInt64LE(2n ** 40n, 0);
    const cases: Record<string, Buffer> = {
      tiny: Buffer.from([1, 2, 3]),
      absurd,
      headerCut: Buffer.concat([Buffer.from([100, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{}')]),
      dtype: withHeader({ w: { dtype: 'F8_E9', shape: [1], data_offsets: [0, 1] } }, 1),
      shape: withHeader({ w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }, 12),
      range: withHeader({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8),
      overlap: withHeader(
        {
          a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
          b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
        },
        12,
      ),
    };
    for (const [name, bytes] of Object.entries(cases)) {
      const path = join(dir, name);
      writeFileSync(path, bytes);
      const fromFile = await SafetensorsFile.open(path).catch((e: Error) => e);
      expect(fromFile, name).toBeInstanceOf(SafetensorsError);
      let fromBytes: unknown;
      try {
        SafetensorsBytes.parse(new Uint8Array(bytes), path);
      } catch (error) {
        fromBytes = error;
      }
      expect(fromBytes, name).toBeInstanceOf(SafetensorsError);
      expect((fromBytes as Error).message, name).toBe((fromFile as Error).message);
    }
  });
});
