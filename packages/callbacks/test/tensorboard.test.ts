import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BackendMemoryReport, LogEntry, TrainerContext, TrainerProgress } from '@badam/core';
import { afterAll, describe, expect, it } from 'vitest';
import { crc32c, TensorBoardCallback, TensorBoardEventFile } from '../src/index.js';

// TensorBoard's event files are checked by readers written apart from the writer: a bitwise CRC-32C and
// protobuf wire-format decoder here, and Google's protobuf runtime with the crc32c package in Python
// (Debian's python3-protobuf and python3-crc32c), where installed.

const scratch = await mkdtemp(join(tmpdir(), 'badam-tensorboard-'));
afterAll(() => rm(scratch, { recursive: true, force: true }));

/** CRC-32C bit by bit (no table), from the polynomial's definition. */
function crc32cBitwise(bytes: Uint8Array): number {
  let crc = ~0 >>> 0;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0x82f63b78 & -(crc & 1));
  }
  return ~crc >>> 0;
}

const mask = (crc: number) => ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;

interface DecodedEvent {
  wallTime?: number;
  step?: number;
  fileVersion?: string;
  values: Array<{ tag: string; value: number }>;
}

/** Protobuf wire format: (field, wire type, payload) triples of one message. */
function* fields(bytes: Uint8Array): Generator<[number, number, Uint8Array | bigint]> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const varint = () => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const byte = bytes[at++]!;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (at < bytes.length) {
    const key = Number(varint());
    const [field, wire] = [key >>> 3, key & 7];
    if (wire === 0) yield [field, wire, varint()];
    else if (wire === 1) {
      yield [field, wire, bytes.subarray(at, at + 8)];
      at += 8;
    } else if (wire === 5) {
      yield [field, wire, bytes.subarray(at, at + 4)];
      at += 4;
    } else if (wire === 2) {
      const length = Number(varint());
      yield [field, wire, bytes.subarray(at, at + length)];
      at += length;
    } else throw new Error(`wire type ${wire} at byte ${at}`);
  }
  void view;
}

const f64 = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, 8).getFloat64(0, true);
const f32 = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, 4).getFloat32(0, true);

/** Reads an event file: every record's two CRCs checked, every Event decoded. */
function readEvents(data: Uint8Array): DecodedEvent[] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const events: DecodedEvent[] = [];
  let at = 0;
  while (at < data.length) {
    const length = Number(view.getBigUint64(at, true));
    expect(view.getUint32(at + 8, true), `length CRC at ${at}`).toBe(
      mask(crc32cBitwise(data.subarray(at, at + 8))),
    );
    const body = data.subarray(at + 12, at + 12 + length);
    expect(view.getUint32(at + 12 + length, true), `data CRC at ${at}`).toBe(mask(crc32cBitwise(body)));
    const event: DecodedEvent = { values: [] };
    for (const [field, , payload] of fields(body)) {
      if (field === 1) event.wallTime = f64(payload as Uint8Array);
      if (field === 2) event.step = Number(payload as bigint);
      if (field === 3) event.fileVersion = new TextDecoder().decode(payload as Uint8Array);
      if (field === 5)
        for (const [, , value] of fields(payload as Uint8Array)) {
          let tag = '';
          let simple = Number.NaN;
          for (const [f, , p] of fields(value as Uint8Array)) {
            if (f === 1) tag = new TextDecoder().decode(p as Uint8Array);
            if (f === 2) simple = f32(p as Uint8Array);
          }
          event.values.push({ tag, value: simple });
        }
    }
    events.push(event);
    at += 16 + length;
  }
  return events;
}

function context(step: number, byKind?: BackendMemoryReport['byKind']): TrainerContext {
  const progress = {
    step,
    memory: { bytes: 1000, peakBytes: 1000, source: 'test', ...(byKind ? { byKind } : {}) },
  } as unknown as TrainerProgress;
  return { progress } as TrainerContext;
}

describe('TensorBoard event files', () => {
  it('CRC-32C matches its check value and the bitwise definition', () => {
    const check = new TextEncoder().encode('123456789');
    expect(crc32c(check)).toBe(0xe3069283);
    const random = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7919) % 251);
    expect(crc32c(random)).toBe(crc32cBitwise(random));
  });

  it("writes a file-version record, then one Event per log with HF's tags: train/loss, lr, grad norm, tokens/s, memory, active block, eval/loss", async () => {
    const logDir = join(scratch, 'runs', 'first');
    const callback = new TensorBoardCallback({ logDir });
    await callback.onTrainBegin();
    const train: LogEntry = {
      step: 10,
      epoch: 0.5,
      loss: 1.25,
      learning_rate: 1e-5,
      grad_norm: 0.75,
      tokens_per_second: 1234,
      memory_bytes: 4096,
      active_block: 3,
    };
    await callback.onLog(context(10, { weights: 100, optimizerState: 50 }), train);
    await callback.onLog(context(10), { step: 10, epoch: 0.5, eval_loss: 1.5, eval_accuracy: 0.25 });
    const files = await readdir(logDir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^events\.out\.tfevents\.\d{10}\..+\.\d+\.0$/);
    const events = readEvents(new Uint8Array(await readFile(join(logDir, files[0]!))));
    expect(events).toHaveLength(3);
    expect(events[0]!.fileVersion).toBe('brain.Event:2');
    expect(events[1]!.step).toBe(10);
    const tags = Object.fromEntries(events[1]!.values.map((v) => [v.tag, v.value]));
    expect(tags).toMatchObject({
      'train/loss': 1.25,
      'train/grad_norm': 0.75,
      'train/tokens_per_second': 1234,
      'train/memory_bytes': 4096,
      'train/active_block': 3,
      'train/epoch': 0.5,
      'train/memory_weights_bytes': 100,
      'train/memory_optimizerState_bytes': 50,
    });
    expect(tags['train/learning_rate']).toBeCloseTo(1e-5, 10);
    expect(events[2]!.values).toEqual([
      { tag: 'train/epoch', value: 0.5 },
      { tag: 'eval/loss', value: 1.5 },
      { tag: 'eval/accuracy', value: 0.25 },
    ]);
    expect(Math.abs(events[2]!.wallTime! - Date.now() / 1000)).toBeLessThan(60);
  });

  const python = '/usr/bin/python3';
  const hasReader =
    existsSync(python) &&
    spawnSync(python, ['-c', 'import google.protobuf, crc32c'], { encoding: 'utf8' }).status === 0;

  it.skipIf(!hasReader)(
    "Google's protobuf runtime parses it (python3-protobuf, python3-crc32c)",
    async () => {
      const events = await TensorBoardEventFile.create(join(scratch, 'runs', 'python'));
      await events.addScalars(3, [
        ['train/loss', 2.5],
        ['eval/loss', 3.25],
      ]);
      await events.addScalars(123456789012, [['train/learning_rate', 0.5]]);
      const reader = fileURLToPath(new URL('./fixtures/read_tfevents.py', import.meta.url));
      const result = spawnSync(python, [reader, events.path], { encoding: 'utf8' });
      expect(result.status, result.stderr).toBe(0);
      const parsed = result.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { step: number; file_version: string; values: unknown[] });
      expect(parsed[0]!.file_version).toBe('brain.Event:2');
      expect(parsed[1]).toMatchObject({
        step: 3,
        values: [
          { tag: 'train/loss', simple_value: 2.5 },
          { tag: 'eval/loss', simple_value: 3.25 },
        ],
      });
      expect(parsed[2]).toMatchObject({
        step: 123456789012,
        values: [{ tag: 'train/learning_rate', simple_value: 0.5 }],
      });
    },
  );
});
