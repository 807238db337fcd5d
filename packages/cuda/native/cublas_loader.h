// cuBLAS loaded at run time with dlopen("libcublas.so.13"): no cuBLAS headers or link-time dependency.
// The declarations below are our own, for the few entry points used; their values are cuBLAS's ABI
// (cublas_api.h, library_types.h of CUDA 13).
#pragma once

#include <cstddef>
#include <string>

namespace badam::cublas {

using Handle = void*;
using Status = int;        // cublasStatus_t: 0 is CUBLAS_STATUS_SUCCESS
using Operation = int;     // cublasOperation_t
using DataType = int;      // cudaDataType_t
using ComputeType = int;   // cublasComputeType_t
using GemmAlgo = int;      // cublasGemmAlgo_t

constexpr Operation kOpN = 0;
constexpr Operation kOpT = 1;
constexpr DataType kR32F = 0;   // CUDA_R_32F
constexpr DataType kR16F = 2;   // CUDA_R_16F
constexpr DataType kR16BF = 14; // CUDA_R_16BF
constexpr ComputeType kCompute32F = 68;  // CUBLAS_COMPUTE_32F: fp32 accumulation, no TF32 down-conversion
constexpr GemmAlgo kGemmDefault = -1;    // CUBLAS_GEMM_DEFAULT

struct Api {
  Status (*create)(Handle*);
  Status (*destroy)(Handle);
  Status (*set_stream)(Handle, void* stream);
  Status (*get_version)(Handle, int*);
  Status (*gemm_ex)(Handle, Operation, Operation, int m, int n, int k, const void* alpha, const void* a, DataType a_type,
                    int lda, const void* b, DataType b_type, int ldb, const void* beta, void* c, DataType c_type, int ldc,
                    ComputeType compute, GemmAlgo algo);
  Status (*set_workspace)(Handle, void* workspace, size_t bytes);
};

/** The loaded API, or nullptr with `error` saying why (library not found, symbol missing). */
const Api* load(std::string* error);

/** cuBLAS's name for a status code. */
const char* status_name(Status status);

}  // namespace badam::cublas
