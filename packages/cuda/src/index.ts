/**
 * @badam/cuda — BAdam on NVIDIA GPUs: a Node-API addon with a caching device allocator that accounts memory
 * by kind, bf16 / fp16 / fp32 device tensors, BAdam's kernels (cuBLAS GEMM with fp32 accumulation, fused
 * AdamW writing the rounded weight, gradient norm, casts, masked sparse Adam) each with a C++ CPU
 * reference, core's `BlockBackend` on top, and the backend's factory (`createCudaTrainerBackend`: a run's
 * plan from core in, a trainer backend out). Without CUDA the same code runs on the CPU device. Over several
 * processes (`ProcessGroup`: Gloo between CPU processes, NCCL between GPUs), `ShardedLlama` and
 * `createShardedTrainerBackend` train ZeRO-3 style: weights, masters, gradients and Adam state split over ranks.
 *
 * @packageDocumentation
 */
export {
  type AdamWStepArgs,
  type AllocationKind,
  type AllocatorStats,
  CudaUnavailableError,
  type DeviceDescription,
  type SparseAdamStepArgs,
  type TensorDType,
} from './addon.js';
export { CudaBlockBackend, type CudaBlockBackendOptions, type CudaParameter } from './cuda-block-backend.js';
export {
  type CudaTrainingModel,
  createCudaTrainerBackend,
  cudaBackendModel,
  cudaMissingFor,
} from './cuda-trainer-backend.js';
export {
  type AttentionDims,
  type CpuEngineOptions,
  type CpuInstructionSet,
  type CudaStatus,
  Device,
  type GemmShape,
} from './device.js';
export { DevicePeakTracker } from './device-peak-tracker.js';
export { DeviceTensor } from './device-tensor.js';
export type { ShardedParameter } from './distributed/layer-gather.js';
export {
  type CollectiveBackend,
  type CollectivesStatus,
  type CollectiveWork,
  collectivesStatus,
  DistributedError,
  ProcessGroup,
  type ProcessGroupOptions,
} from './distributed/process-group.js';
export { type ShardLayout, shardLayout } from './distributed/shard-layout.js';
export { ShardedBlockBackend } from './distributed/sharded-block-backend.js';
export { ShardedLlama, type ShardedLlamaOptions } from './distributed/sharded-llama.js';
export {
  createShardedTrainerBackend,
  type ShardedTask,
  type ShardedTrainingModel,
  shardedBackendModel,
} from './distributed/sharded-trainer-backend.js';
export {
  DeviceLlama,
  type DeviceLlamaBatch,
  type DeviceLlamaDType,
  type DeviceLlamaEvaluation,
  type DeviceLlamaLoss,
  type DeviceLlamaOptions,
} from './llama/device-llama.js';
export { type CudaDeviceChoice, cudaDeviceLabel, openDevice } from './open-device.js';
export { loadSafetensorsToDevice } from './safetensors-to-device.js';
