// Node-API bindings of contexts (a device with its caching allocator), device tensors and the build's facts.
#include "napi_args.h"

namespace badam::napi {
namespace {

// --- contexts -------------------------------------------------------------------------------------------

napi_value create_context(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 3);
  const std::string kind = string(env, argv[0], "device kind");
  const int ordinal = static_cast<int>(count(env, argv[1], "device ordinal"));
  const std::string instruction_set = string(env, argv[2], "instruction set");
  auto ctx = std::make_shared<Context>();
  if (kind == "cuda") ctx->device = make_cuda_device(ordinal);
  else if (kind == "cpu") ctx->device = make_cpu_device();
  else if (kind == "cpu-engine") ctx->device = make_cpu_engine_device(instruction_set);
  else throw JsError("device kind must be cuda, cpu or cpu-engine, got " + kind);
  Device* device = ctx->device.get();
  ctx->allocator = std::make_unique<CachingAllocator>([device](size_t n) { return device->raw_alloc(n); },
                                                      [device](void* p) { device->raw_free(p); });
  // The GEMM library's workspace comes from the allocator, so the accounting (and its peak) includes it.
  if (const size_t bytes = device->gemm_workspace_bytes(); bytes > 0) {
    ctx->gemm_workspace = ctx->allocator->allocate(bytes, MemoryKind::Workspace);
    device->set_gemm_workspace(ctx->gemm_workspace, bytes);
  }
  auto* handle = new ContextHandle{ctx};
  napi_value out;
  NAPI_OK(napi_create_external(env, handle, [](napi_env, void* data, void*) { delete static_cast<ContextHandle*>(data); }, nullptr, &out));
  return out;
}

napi_value context_info(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 1);
  auto* h = external<ContextHandle>(env, argv[0], "context");
  DeviceInfo i = h->ctx->device->info();
  napi_value out;
  NAPI_OK(napi_create_object(env, &out));
  set(env, out, "kind", make_string(env, i.kind));
  set(env, out, "name", make_string(env, i.name));
  set(env, out, "computeCapability", make_string(env, std::to_string(i.compute_major) + "." + std::to_string(i.compute_minor)));
  set(env, out, "totalMemory", make_number(env, static_cast<double>(i.total_memory)));
  set(env, out, "multiprocessors", make_number(env, i.multiprocessors));
  set(env, out, "gemmLibrary", make_string(env, i.gemm_library));
  set(env, out, "gemmWorkspaceBytes", make_number(env, static_cast<double>(h->ctx->device->gemm_workspace_bytes())));
  return out;
}

napi_value memory_stats(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 1);
  MemoryStats s = external<ContextHandle>(env, argv[0], "context")->ctx->allocator->stats();
  napi_value out, by_kind;
  NAPI_OK(napi_create_object(env, &out));
  NAPI_OK(napi_create_object(env, &by_kind));
  for (int k = 0; k < static_cast<int>(MemoryKind::Count); k++) {
    set(env, by_kind, memory_kind_name(static_cast<MemoryKind>(k)), make_number(env, static_cast<double>(s.in_use[k])));
  }
  set(env, out, "byKind", by_kind);
  set(env, out, "inUse", make_number(env, static_cast<double>(s.in_use_total)));
  set(env, out, "peakInUse", make_number(env, static_cast<double>(s.peak_in_use)));
  set(env, out, "reserved", make_number(env, static_cast<double>(s.reserved)));
  set(env, out, "peakReserved", make_number(env, static_cast<double>(s.peak_reserved)));
  set(env, out, "cached", make_number(env, static_cast<double>(s.cached)));
  set(env, out, "deviceAllocations", make_number(env, static_cast<double>(s.device_allocations)));
  set(env, out, "liveBlocks", make_number(env, static_cast<double>(s.live_blocks)));
  return out;
}

napi_value empty_cache(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 1);
  external<ContextHandle>(env, argv[0], "context")->ctx->allocator->empty_cache();
  return undefined(env);
}

napi_value reset_peaks(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 1);
  external<ContextHandle>(env, argv[0], "context")->ctx->allocator->reset_peaks();
  return undefined(env);
}

napi_value synchronize(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 1);
  external<ContextHandle>(env, argv[0], "context")->ctx->device->synchronize();
  return undefined(env);
}

// --- tensors --------------------------------------------------------------------------------------------

/** A JS handle owning `t` (deleted when the handle is finalized). */
napi_value tensor_handle(napi_env env, std::unique_ptr<Tensor> t) {
  napi_value out;
  NAPI_OK(napi_create_external(
      env, t.get(), [](napi_env, void* data, void*) { delete static_cast<Tensor*>(data); }, nullptr, &out));
  t.release();
  return out;
}

// tensorCreate(ctx, dtype, numel, kind): a tensor with memory of its own.
napi_value tensor_create(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 4);
  auto* h = external<ContextHandle>(env, argv[0], "context");
  const DType dtype = dtype_from_name(string(env, argv[1], "dtype"));
  const size_t numel = count(env, argv[2], "numel");
  const MemoryKind kind = memory_kind_from_name(string(env, argv[3], "memory kind").c_str());
  if (numel == 0) throw JsError("a tensor needs at least one element");
  const size_t bytes = numel * dtype_size(dtype);
  void* base = h->ctx->allocator->allocate(bytes, kind);
  auto memory = std::make_shared<Allocation>(h->ctx, base, bytes);
  return tensor_handle(env, std::unique_ptr<Tensor>(new Tensor{h->ctx, memory, base, dtype, numel, kind}));
}

// tensorView(tensor, offset, numel): `numel` elements of the tensor's dtype starting `offset` elements after
// the tensor's start, in the same memory (which may reach past the tensor, not past its allocation). The
// memory is returned when the last tensor viewing it is freed.
napi_value tensor_view(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 3);
  Tensor* t = tensor(env, argv[0], "tensor");
  const size_t offset = count(env, argv[1], "offset");
  const size_t numel = count(env, argv[2], "numel");
  if (numel == 0) throw JsError("view: a tensor needs at least one element");
  if (offset > t->reach() || numel > t->reach() - offset) {
    throw JsError("view: elements [" + std::to_string(offset) + ", " + std::to_string(offset + numel) +
                  ") from the tensor's start reach past its memory (" + std::to_string(t->reach()) + " elements)");
  }
  void* ptr = static_cast<char*>(t->ptr) + offset * dtype_size(t->dtype);
  return tensor_handle(env, std::unique_ptr<Tensor>(new Tensor{t->ctx, t->memory, ptr, t->dtype, numel, t->kind}));
}

napi_value tensor_free(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 1);
  external<Tensor>(env, argv[0], "tensor")->free();
  return undefined(env);
}

// write(tensor, Float32Array) converts to the tensor's dtype on the host; write(tensor, Uint16Array |
// Int32Array | Uint8Array) copies raw bits (16-bit patterns, int32, or bytes) without conversion.
napi_value tensor_write(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 2);
  Tensor* t = tensor(env, argv[0], "tensor");
  TypedArray a = typed_array(env, argv[1], "values");
  Device& device = *t->ctx->device;
  if (a.type == napi_float32_array) {
    if (a.length != t->numel) throw JsError("write: " + std::to_string(a.length) + " values for a tensor of " + std::to_string(t->numel));
    if (t->dtype == DType::F32) {
      device.upload(t->ptr, a.data, t->bytes());
    } else {
      std::vector<uint8_t> staged(t->bytes());
      for (size_t i = 0; i < t->numel; i++) store_from_f32(staged.data(), t->dtype, i, static_cast<const float*>(a.data)[i]);
      device.upload(t->ptr, staged.data(), staged.size());
    }
    return undefined(env);
  }
  size_t bytes = 0;
  if (a.type == napi_uint16_array && dtype_size(t->dtype) == 2) bytes = a.length * 2;
  else if (a.type == napi_int32_array && t->dtype == DType::I32) bytes = a.length * 4;
  else if (a.type == napi_uint8_array) bytes = a.length;
  else throw JsError(std::string("write: a ") + dtype_name(t->dtype) + " tensor takes a Float32Array, or raw bits as " +
                     (dtype_size(t->dtype) == 2 ? "Uint16Array" : t->dtype == DType::I32 ? "Int32Array" : "Uint8Array"));
  if (bytes != t->bytes()) throw JsError("write: " + std::to_string(bytes) + " bytes for a tensor of " + std::to_string(t->bytes()));
  device.upload(t->ptr, a.data, bytes);
  return undefined(env);
}

// read(tensor, raw): fp32 values (converted) or, with raw, the stored bits (Uint16Array, Int32Array or Float32Array).
napi_value tensor_read(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 2);
  Tensor* t = tensor(env, argv[0], "tensor");
  const bool raw = boolean(env, argv[1]);
  std::vector<uint8_t> host(t->bytes());
  t->ctx->device->download(host.data(), t->ptr, host.size());
  napi_value buffer, out;
  void* data = nullptr;
  if (raw || t->dtype == DType::F32) {
    NAPI_OK(napi_create_arraybuffer(env, host.size(), &data, &buffer));
    std::memcpy(data, host.data(), host.size());
    napi_typedarray_type type = t->dtype == DType::F32 ? napi_float32_array : t->dtype == DType::I32 ? napi_int32_array : napi_uint16_array;
    NAPI_OK(napi_create_typedarray(env, type, t->numel, buffer, 0, &out));
    return out;
  }
  NAPI_OK(napi_create_arraybuffer(env, t->numel * 4, &data, &buffer));
  for (size_t i = 0; i < t->numel; i++) static_cast<float*>(data)[i] = load_as_f32(host.data(), t->dtype, i);
  NAPI_OK(napi_create_typedarray(env, napi_float32_array, t->numel, buffer, 0, &out));
  return out;
}

napi_value tensor_fill(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 2);
  Tensor* t = tensor(env, argv[0], "tensor");
  t->ctx->device->fill(t->ptr, t->dtype, t->numel, static_cast<float>(number(env, argv[1], "value")));
  return undefined(env);
}

// fillNormal(tensor, mean, std, seed): the counter-based normal samples of random_normal.h (seed a safe integer)
napi_value tensor_fill_normal(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 4);
  Tensor* t = tensor(env, argv[0], "tensor");
  if (t->dtype == DType::I32) throw JsError("fillNormal: an int32 tensor takes no normal samples; use a float dtype");
  const double mean = number(env, argv[1], "mean"), std = number(env, argv[2], "std");
  const double seed = number(env, argv[3], "seed");
  if (!(seed >= 0 && seed <= 9007199254740991.0 && seed == static_cast<double>(static_cast<uint64_t>(seed))))
    throw JsError("fillNormal: seed must be an integer in [0, 2^53)");
  t->ctx->device->fill_normal(t->ptr, t->dtype, t->numel, static_cast<float>(mean), static_cast<float>(std),
                              static_cast<uint64_t>(seed));
  return undefined(env);
}

napi_value tensor_copy(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 2);
  Tensor* dst = tensor(env, argv[0], "destination");
  Tensor* src = tensor(env, argv[1], "source");
  same_context(dst, src, "copy");
  if (dst->bytes() != src->bytes() || dst->dtype != src->dtype) throw JsError("copy: tensors differ in dtype or size; use cast to convert");
  dst->ctx->device->copy(dst->ptr, src->ptr, dst->bytes());
  return undefined(env);
}

napi_value build_info(napi_env env, napi_callback_info) {
  napi_value out;
  NAPI_OK(napi_create_object(env, &out));
  napi_value compiled;
  NAPI_OK(napi_get_boolean(env, cuda_compiled(), &compiled));
  set(env, out, "cudaCompiled", compiled);
  std::string reason;
  const int devices = cuda_device_count(&reason);
  set(env, out, "cudaDevices", make_number(env, devices));
  set(env, out, "cudaUnavailableReason", make_string(env, devices > 0 ? "" : reason));
  return out;
}

}  // namespace

void add_context_bindings(std::vector<Binding>& out) {
  out.insert(out.end(), {
      {"createContext", guarded<create_context>},
      {"contextInfo", guarded<context_info>},
      {"memoryStats", guarded<memory_stats>},
      {"emptyCache", guarded<empty_cache>},
      {"resetPeaks", guarded<reset_peaks>},
      {"synchronize", guarded<synchronize>},
      {"tensorCreate", guarded<tensor_create>},
      {"tensorView", guarded<tensor_view>},
      {"tensorFree", guarded<tensor_free>},
      {"tensorWrite", guarded<tensor_write>},
      {"tensorRead", guarded<tensor_read>},
      {"tensorFill", guarded<tensor_fill>},
      {"tensorFillNormal", guarded<tensor_fill_normal>},
      {"tensorCopy", guarded<tensor_copy>},
      {"buildInfo", guarded<build_info>},
  });
}

}  // namespace badam::napi
