import { BadamOptionError } from '@badam/core';
import { SafetensorsFile } from '@badam/safetensors';
import type { AllocationKind } from './addon.js';
import type { Device } from './device.js';
import type { DeviceTensor } from './device-tensor.js';

const DTYPES: Record<string, 'float32' | 'bfloat16' | 'float16'> = {
  F32: 'float32',
  BF16: 'bfloat16',
  F16: 'float16',
};

/**
 * Loads tensors of a safetensors file straight into device memory in their stored dtype: each tensor's
 * bytes are read from the file and copied to the device as they are — bf16 stays bf16, with no fp32
 * detour on the host. `names` picks tensors (default: all).
 */
export async function loadSafetensorsToDevice(
  device: Device,
  path: string,
  options: { names?: readonly string[]; kind?: AllocationKind } = {},
): Promise<Map<string, DeviceTensor>> {
  const file = await SafetensorsFile.open(path);
  const out = new Map<string, DeviceTensor>();
  try {
    for (const name of options.names ?? file.names()) {
      const entry = file.entry(name);
      const dtype = DTYPES[entry.dtype];
      if (dtype === undefined)
        throw new BadamOptionError(`${path} ${name} dtype`, entry.dtype, 'F32, BF16 or F16');
      const stored = await file.read(name);
      const data = stored.data as Float32Array | Uint16Array;
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      out.set(
        name,
        device.tensor(bytes, entry.shape.length === 0 ? [1] : entry.shape, dtype, options.kind ?? 'weights'),
      );
    }
  } catch (error) {
    for (const t of out.values()) t.free();
    throw error;
  } finally {
    await file.close();
  }
  return out;
}
