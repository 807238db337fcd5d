import { UsageError } from '@badam/core';
import { CudaUnavailableError } from './addon.js';
import { Device } from './device.js';

/** Where a run trains on @badam/cuda: a GPU ordinal, or the CPU reference device. */
export type CudaDeviceChoice = number | 'cpu';

const opened = new Map<CudaDeviceChoice, Device>();

/**
 * The device a run chose (a runner's `--cuda_device`): the GPU of that ordinal, or the CPU reference device
 * (`'cpu'`). One per process and choice (a GPU context is the process's), made on first use. A GPU that
 * cannot be used is a `UsageError` that says why (no CUDA build, no driver, no GPU) and what runs instead.
 *
 * @example
 * ```ts
 * const device = openDevice('cpu');
 * cudaDeviceLabel(device); // 'cuda cpu reference'
 * ```
 */
export function openDevice(choice: CudaDeviceChoice): Device {
  const made = opened.get(choice);
  if (made !== undefined) return made;
  let device: Device;
  try {
    device = choice === 'cpu' ? Device.cpu() : Device.cuda(choice);
  } catch (error) {
    if (!(error instanceof CudaUnavailableError)) throw error;
    throw new UsageError(
      `--backend cuda: ${error.message}. Use --cuda_device cpu for @badam/cuda's CPU reference device (the same kernels in C++; slow, for small models), or --backend tfjs`,
    );
  }
  opened.set(choice, device);
  return device;
}

/** What a run says it trains on: `cuda NVIDIA H200 (cublas 12.8)` or `cuda cpu reference`. */
export function cudaDeviceLabel(device: Device): string {
  const d = device.description;
  return d.kind === 'cpu' ? 'cuda cpu reference' : `cuda ${d.name} (${d.gemmLibrary})`;
}
