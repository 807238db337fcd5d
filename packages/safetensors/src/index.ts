/**
 * @badam/safetensors — the safetensors format in TypeScript: read single or sharded Hugging Face weights
 * tensor by tensor with errors that name the file and the problem, write files atomically and streamed,
 * and convert BF16 / F16 to and from fp32.
 *
 * @packageDocumentation
 */
export { FileWriteError, writeFileAtomic } from './atomic-file.js';
export {
  bfloat16ToFloat32,
  FROM_SAFETENSORS,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
  isSafetensorsDType,
  type SafetensorsDType,
  safetensorsBytes,
  TO_SAFETENSORS,
} from './dtypes.js';
export { regularFileProblem } from './regular-file.js';
export { SafetensorsError } from './safetensors-error.js';
export { MAX_HEADER_BYTES, type SafetensorsEntry, SafetensorsFile } from './safetensors-file.js';
export { INDEX_FILE, SafetensorsModel, SINGLE_FILE, writeSafetensorsModel } from './sharded.js';
export { safetensorsHeader, writeSafetensors } from './write-safetensors.js';
