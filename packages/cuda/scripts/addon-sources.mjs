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
  'bind_collectives.cc',
  'tcp_store.cc',
  'process_group.cc',
  'gloo_group.cc',
  'nccl_loader.cc',
  'device_random.cc',
];

/**
 * The CPU engine (native/cpu_engine/), compiled by g++ in every build with -O3 (engineFlags): its kernels are
 * chosen at run time by what the CPU has, so the addon runs on any x86-64.
 */
export const engineSources = [
  'cpu_engine/cpu_engine_device.cc',
  'cpu_engine/engine_gemm.cc',
  'cpu_engine/isa.cc',
  'cpu_engine/kernels_avx512.cc',
  'cpu_engine/kernels_generic.cc',
  'cpu_engine/thread_pool.cc',
];

/** C++ of the CUDA build only, compiled by g++ (cuBLAS opened at run time). */
export const cudaHostSources = ['cublas_loader.cc', 'nccl_group.cc'];

/**
 * libbadam_gloo.so, the one file that calls Gloo, built beside the addon where Gloo's headers and library
 * are found; the addon opens it at run time (native/gloo_group.cc), so the addon never links Gloo.
 */
export const glooSources = ['collectives_gloo.cc'];

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
