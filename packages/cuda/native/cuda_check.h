// The one macro every CUDA runtime call goes through (cuda_device.cu and the kernel files): a failure throws
// with the call, the error's name and where it happened; kernel launches are checked with LAUNCH_CHECK.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#define CUDA_CHECK(call)                                                                                   \
  do {                                                                                                     \
    cudaError_t err_ = (call);                                                                             \
    if (err_ != cudaSuccess) {                                                                             \
      throw std::runtime_error(std::string("CUDA error ") + cudaGetErrorName(err_) + " (" +               \
                               cudaGetErrorString(err_) + ") in " #call " at " __FILE__ ":" +             \
                               std::to_string(__LINE__));                                                  \
    }                                                                                                      \
  } while (0)

// A launch is checked at once (configuration errors) and again at the next synchronisation (faults).
#define LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())
