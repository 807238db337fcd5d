import { appendFile, mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';

// TensorBoard's event files, written without TensorFlow: a sequence of TFRecord records, each holding one
// serialized `tensorflow.Event` protocol buffer (tensorflow/core/util/event.proto, summary.proto). Only the
// fields a scalar log needs are encoded: Event.wall_time (1, double), Event.step (2, int64),
// Event.file_version (3, string), Event.summary (5); Summary.value (1); Summary.Value.tag (1, string) and
// Summary.Value.simple_value (2, float).

/** The CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) table. */
const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32C of `bytes` (the checksum TFRecord uses; `crc32c("123456789")` is 0xE3069283). */
export function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC32C_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: rotated right by 15 bits plus a constant, so that CRCs of CRCs stay strong. */
export function maskedCrc32c(bytes: Uint8Array): number {
  const crc = crc32c(bytes);
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** One TFRecord: length (uint64 LE), its masked CRC, the data, the data's masked CRC. */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length + 4);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

/** A protocol-buffer varint (non-negative integers). */
function varint(value: number | bigint): number[] {
  let v = BigInt(value);
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return out;
}

/** A length-delimited field (wire type 2). */
function lengthDelimited(field: number, bytes: Uint8Array): number[] {
  return [...varint((field << 3) | 2), ...varint(bytes.length), ...bytes];
}

function doubleField(field: number, value: number): number[] {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setFloat64(0, value, true);
  return [...varint((field << 3) | 1), ...bytes];
}

function floatField(field: number, value: number): number[] {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setFloat32(0, value, true);
  return [...varint((field << 3) | 5), ...bytes];
}

const utf8 = (text: string) => new TextEncoder().encode(text);

/** A serialized `Event` with `file_version` (the first record of every event file). */
export function fileVersionEvent(wallTime: number): Uint8Array {
  return Uint8Array.from([...doubleField(1, wallTime), ...lengthDelimited(3, utf8('brain.Event:2'))]);
}

/** A serialized `Event` holding a `Summary` of scalar values at `step`. */
export function scalarsEvent(
  wallTime: number,
  step: number,
  scalars: ReadonlyArray<readonly [tag: string, value: number]>,
): Uint8Array {
  const values = scalars.flatMap(([tag, value]) =>
    lengthDelimited(1, Uint8Array.from([...lengthDelimited(1, utf8(tag)), ...floatField(2, value)])),
  );
  return Uint8Array.from([
    ...doubleField(1, wallTime),
    ...varint((2 << 3) | 0),
    ...varint(step),
    ...lengthDelimited(5, Uint8Array.from(values)),
  ]);
}

/**
 * An event file TensorBoard reads (`tensorboard --logdir <dir>`): `events.out.tfevents.<seconds>.<host>.<pid>.0`
 * in `directory`, opened with its file-version record; each {@link TensorBoardEventFile.addScalars} appends
 * one record, flushed at once so that a live TensorBoard sees it.
 *
 * @example
 * ```ts
 * const events = await TensorBoardEventFile.create('output/runs/Jan01_00-00-00_host');
 * await events.addScalars(10, [['train/loss', 1.25], ['train/learning_rate', 1e-5]]);
 * ```
 */
export class TensorBoardEventFile {
  private constructor(readonly path: string) {}

  /** Creates `directory` if needed and a new event file in it. */
  static async create(directory: string): Promise<TensorBoardEventFile> {
    await mkdir(directory, { recursive: true });
    const now = Date.now() / 1000;
    const name = `events.out.tfevents.${String(Math.floor(now)).padStart(10, '0')}.${hostname()}.${process.pid}.0`;
    const file = new TensorBoardEventFile(join(directory, name));
    await appendFile(file.path, tfRecord(fileVersionEvent(now)));
    return file;
  }

  /** Appends the scalars logged at `step` (non-finite values are written as they are: TensorBoard shows them). */
  async addScalars(step: number, scalars: ReadonlyArray<readonly [string, number]>): Promise<void> {
    if (scalars.length === 0) return;
    await appendFile(this.path, tfRecord(scalarsEvent(Date.now() / 1000, step, scalars)));
  }
}
