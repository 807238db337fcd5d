// NCCL loaded at run time with dlopen("libnccl.so.2"), from the loader's path, the CUDA installation or an
// installed PyTorch wheel (nvidia/nccl/lib): no NCCL headers or link-time dependency, as cuBLAS. The
// declarations below are our own, for the few entry points used; their values are NCCL 2's ABI (nccl.h).
#pragma once

#include <cstddef>
#include <string>

namespace badam::nccl {

using Comm = void*;          // ncclComm_t
using Result = int;          // ncclResult_t: 0 is ncclSuccess
using DataType = int;        // ncclDataType_t
using RedOp = int;           // ncclRedOp_t
using Stream = void*;        // cudaStream_t

constexpr int kUniqueIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES
struct UniqueId {
  char internal[kUniqueIdBytes];
};

constexpr DataType kUint8 = 1;    // ncclUint8
constexpr DataType kFloat32 = 7;  // ncclFloat32
constexpr RedOp kSum = 0;         // ncclSum
constexpr Result kInProgress = 7; // ncclInProgress

struct Api {
  Result (*get_version)(int*);
  Result (*get_unique_id)(UniqueId*);
  Result (*comm_init_rank)(Comm*, int nranks, UniqueId id, int rank);
  Result (*comm_destroy)(Comm);
  Result (*comm_abort)(Comm);
  Result (*comm_get_async_error)(Comm, Result*);
  const char* (*get_error_string)(Result);
  Result (*broadcast)(const void* send, void* recv, size_t count, DataType, int root, Comm, Stream);
  Result (*reduce)(const void* send, void* recv, size_t count, DataType, RedOp, int root, Comm, Stream);
  Result (*all_gather)(const void* send, void* recv, size_t send_count, DataType, Comm, Stream);
  Result (*all_reduce)(const void* send, void* recv, size_t count, DataType, RedOp, Comm, Stream);
  Result (*group_start)();
  Result (*group_end)();
};

/** The loaded API, or nullptr with `error` saying why (library not found, symbol missing). */
const Api* load(std::string* error);

}  // namespace badam::nccl
