// The addon's source files, by compiler: the one list scripts/build-addon.mjs builds from and
// test/cuda-emulation.test.ts runs (the CUDA Llama kernels, on the CPU emulator).

/** C++ compiled by g++ in every build (the Node-API bindings, the allocator, the CPU device and references). */
export const hostSources = [
  'addon.cc',
  'bind_context.cc',
  'bind_optimizer.cc',
  'bind_llama.cc',
  'allocator.cc',
  'reference.cc',
  'llama_reference.cc',
  'cpu_device.cc',
];

/** C++ of the CUDA build only, compiled by g++ (cuBLAS opened at run time). */
export const cudaHostSources = ['cublas_loader.cc'];

/** The kernels of the Llama ops, compiled by nvcc; the emulator test runs exactly these on the CPU. */
export const llamaKernelSources = [
  'attention.cu',
  'attention_simt.cu',
  'attention_tc.cu',
  'elementwise_kernels.cu',
  'loss_kernels.cu',
  'norm_kernels.cu',
];

/** Everything nvcc compiles: the CUDA device (memory, optimizer kernels, cuBLAS) and the Llama kernels. */
export const cudaSources = ['cuda_device.cu', ...llamaKernelSources];
