import { UsageError } from '@badam/core';
import { CudaUnavailableError } from './addon.js';
import { Device } from './device.js';

/**
 * Where a run trains on @badam/cuda's devices: a GPU ordinal, the CPU reference device (`'cpu'`: the C++
 * references, the oracle) or the CPU engine (`'cpu-engine'`: the fast CPU implementation).
 */
export type CudaDeviceChoice = number | 'cpu' | 'cpu-engine';

const opened = new Map<CudaDeviceChoice, Device>();

/**
 * The device a run chose (a runner's `--backend cuda --cuda_device`, or `--backend cpu`): the GPU of that
 * ordinal, the CPU reference device (`'cpu'`) or the CPU engine (`'cpu-engine'`). One per process and choice
 * (a GPU context is the process's), made on first use. A GPU that cannot be used is a `UsageError` that says
 * why (no CUDA build, no driver, no GPU) and what runs instead.
 *
 * @example
 * ```ts
 * cudaDeviceLabel(openDevice('cpu')); // 'cuda cpu reference'
 * cudaDeviceLabel(openDevice('cpu-engine')); // 'cpu engine avx512-bf16 x2' on a CPU with AVX512_BF16 and 2 threads
 * ```
 */
export function openDevice(choice: CudaDeviceChoice): Device {
  const made = opened.get(choice);
  if (made !== undefined) return made;
  let device: Device;
  try {
    device =
      choice === 'cpu' ? Device.cpu() : choice === 'cpu-engine' ? Device.cpuEngine() : Device.cuda(choice);
  } catch (error) {
    if (!(error instanceof CudaUnavailableError)) throw error;
    throw new UsageError(
      `--backend cuda: ${error.message}. Use --backend cpu for the CPU engine (the same kernels, fast on a CPU), --cuda_device cpu for the CPU reference device (slow: the oracle), or --backend tfjs`,
    );
  }
  opened.set(choice, device);
  return device;
}

/**
 * What a run says it trains on: `cuda NVIDIA H200 (cublas 12.8)`, `cuda cpu reference` or
 * `cpu engine avx512-bf16 x2` (instruction set, threads).
 */
export function cudaDeviceLabel(device: Device): string {
  const d = device.description;
  if (d.kind !== 'cpu') return `cuda ${d.name} (${d.gemmLibrary})`;
  if (d.name.startsWith('CPU engine'))
    return `cpu engine ${d.name.slice('CPU engine '.length)} x${d.multiprocessors}`;
  return 'cuda cpu reference';
}
