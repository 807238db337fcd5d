// Node-API surface of @badam/cuda: contexts (a device with its caching allocator), tensors in device
// memory, and the kernels. Every argument is checked here — a wrong size or a freed tensor is a JS error
// naming the problem, never a read past the end of a buffer — and every C++ exception becomes a JS error.
#include <node_api.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "allocator.h"
#include "device.h"

namespace badam {
namespace {

struct Context {
  std::unique_ptr<Device> device;
  std::unique_ptr<CachingAllocator> allocator;
};

struct Tensor {
  std::shared_ptr<Context> ctx;
  void* ptr = nullptr;
  DType dtype = DType::F32;
  size_t numel = 0;
  MemoryKind kind = MemoryKind::Other;
  size_t bytes() const { return numel * dtype_size(dtype); }
  void free() {
    if (ptr != nullptr) {
      ctx->allocator->release(ptr);
      ptr = nullptr;
    }
  }
};

struct ContextHandle {
  std::shared_ptr<Context> ctx;
};

class JsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

#define NAPI_OK(call)                                                    \
  do {                                                                   \
    if ((call) != napi_ok) throw JsError("Node-API call failed: " #call); \
  } while (0)

napi_value undefined(napi_env env) {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

std::vector<napi_value> args_of(napi_env env, napi_callback_info info, size_t want) {
  size_t argc = want;
  std::vector<napi_value> argv(want);
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv.data(), nullptr, nullptr));
  if (argc < want) throw JsError("expected " + std::to_string(want) + " arguments, got " + std::to_string(argc));
  return argv;
}

double number(napi_env env, napi_value v, const char* what) {
  napi_valuetype t;
  NAPI_OK(napi_typeof(env, v, &t));
  if (t != napi_number) throw JsError(std::string(what) + " must be a number");
  double d;
  NAPI_OK(napi_get_value_double(env, v, &d));
  return d;
}

size_t count(napi_env env, napi_value v, const char* what) {
  double d = number(env, v, what);
  if (!(d >= 0) || d != static_cast<double>(static_cast<size_t>(d)) || d > 9007199254740991.0) {
    throw JsError(std::string(what) + " must be a non-negative integer, got " + std::to_string(d));
  }
  return static_cast<size_t>(d);
}

bool boolean(napi_env env, napi_value v) {
  bool b = false;
  if (napi_get_value_bool(env, v, &b) != napi_ok) throw JsError("expected a boolean");
  return b;
}

std::string string(napi_env env, napi_value v, const char* what) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, nullptr, 0, &len) != napi_ok) throw JsError(std::string(what) + " must be a string");
  std::string s(len, '\0');
  NAPI_OK(napi_get_value_string_utf8(env, v, s.data(), len + 1, &len));
  return s;
}

double field(napi_env env, napi_value obj, const char* name) {
  napi_value v;
  NAPI_OK(napi_get_named_property(env, obj, name, &v));
  return number(env, v, name);
}

template <typename T>
T* external(napi_env env, napi_value v, const char* what) {
  napi_valuetype t;
  NAPI_OK(napi_typeof(env, v, &t));
  if (t != napi_external) throw JsError(std::string(what) + " must be a handle from this addon");
  void* data = nullptr;
  NAPI_OK(napi_get_value_external(env, v, &data));
  return static_cast<T*>(data);
}

Tensor* tensor(napi_env env, napi_value v, const char* what) {
  Tensor* t = external<Tensor>(env, v, what);
  if (t->ptr == nullptr) throw JsError(std::string(what) + " was freed; create a new tensor");
  return t;
}

Tensor* optional_tensor(napi_env env, napi_value v, const char* what) {
  napi_valuetype t;
  NAPI_OK(napi_typeof(env, v, &t));
  if (t == napi_null || t == napi_undefined) return nullptr;
  return tensor(env, v, what);
}

void same_context(const Tensor* a, const Tensor* b, const char* what) {
  if (b != nullptr && a->ctx != b->ctx) throw JsError(std::string(what) + ": tensors live on different devices");
}

struct TypedArray {
  napi_typedarray_type type;
  void* data;
  size_t length;
};

TypedArray typed_array(napi_env env, napi_value v, const char* what) {
  bool is = false;
  NAPI_OK(napi_is_typedarray(env, v, &is));
  if (!is) throw JsError(std::string(what) + " must be a typed array");
  TypedArray a{};
  napi_value buffer;
  size_t offset;
  NAPI_OK(napi_get_typedarray_info(env, v, &a.type, &a.length, &a.data, &buffer, &offset));
  return a;
}

napi_value make_number(napi_env env, double d) {
  napi_value v;
  NAPI_OK(napi_create_double(env, d, &v));
  return v;
}

napi_value make_string(napi_env env, const std::string& s) {
  napi_value v;
  NAPI_OK(napi_create_string_utf8(env, s.c_str(), s.size(), &v));
  return v;
}

void set(napi_env env, napi_value obj, const char* name, napi_value v) { NAPI_OK(napi_set_named_property(env, obj, name, v)); }

using Body = napi_value (*)(napi_env, napi_callback_info);

template <Body body>
napi_value guarded(napi_env env, napi_callback_info info) {
  try {
    return body(env, info);
  } catch (const std::exception& e) {
    napi_throw_error(env, nullptr, e.what());
    return nullptr;
  }
}

// --- contexts -------------------------------------------------------------------------------------------

napi_value create_context(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 2);
  const std::string kind = string(env, argv[0], "device kind");
  const int ordinal = static_cast<int>(count(env, argv[1], "device ordinal"));
  auto ctx = std::make_shared<Context>();
  if (kind == "cuda") ctx->device = make_cuda_device(ordinal);
  else if (kind == "cpu") ctx->device = make_cpu_device();
  else throw JsError("device kind must be cuda or cpu, got " + kind);
  Device* device = ctx->device.get();
  ctx->allocator = std::make_unique<CachingAllocator>([device](size_t n) { return device->raw_alloc(n); },
                                                      [device](void* p) { device->raw_free(p); });
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

napi_value tensor_create(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 4);
  auto* h = external<ContextHandle>(env, argv[0], "context");
  const DType dtype = dtype_from_name(string(env, argv[1], "dtype"));
  const size_t numel = count(env, argv[2], "numel");
  const MemoryKind kind = memory_kind_from_name(string(env, argv[3], "memory kind").c_str());
  if (numel == 0) throw JsError("a tensor needs at least one element");
  auto* t = new Tensor{h->ctx, nullptr, dtype, numel, kind};
  try {
    t->ptr = h->ctx->allocator->allocate(t->bytes(), kind);
  } catch (...) {
    delete t;
    throw;
  }
  napi_value out;
  NAPI_OK(napi_create_external(
      env, t,
      [](napi_env, void* data, void*) {
        auto* t = static_cast<Tensor*>(data);
        try { t->free(); } catch (...) {}
        delete t;
      },
      nullptr, &out));
  return out;
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

napi_value tensor_copy(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 2);
  Tensor* dst = tensor(env, argv[0], "destination");
  Tensor* src = tensor(env, argv[1], "source");
  same_context(dst, src, "copy");
  if (dst->bytes() != src->bytes() || dst->dtype != src->dtype) throw JsError("copy: tensors differ in dtype or size; use cast to convert");
  dst->ctx->device->copy(dst->ptr, src->ptr, dst->bytes());
  return undefined(env);
}

// --- kernels --------------------------------------------------------------------------------------------

napi_value gemm(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 10);
  Tensor* a = tensor(env, argv[0], "A");
  Tensor* b = tensor(env, argv[1], "B");
  Tensor* c = tensor(env, argv[2], "C");
  same_context(a, b, "gemm");
  same_context(a, c, "gemm");
  const size_t m = count(env, argv[3], "m"), n = count(env, argv[4], "n"), k = count(env, argv[5], "k");
  if (m == 0 || n == 0 || k == 0 || m > 2147483647 || n > 2147483647 || k > 2147483647) throw JsError("gemm: m, n and k must be in [1, 2^31)");
  if (a->dtype != b->dtype || a->dtype == DType::I32) throw JsError("gemm: A and B must share a float dtype");
  if (c->dtype != DType::F32 && c->dtype != a->dtype) throw JsError("gemm: C must be float32 or the dtype of A and B");
  if (a->numel != m * k || b->numel != k * n || c->numel != m * n) {
    throw JsError("gemm: sizes do not match m, n, k (A " + std::to_string(a->numel) + ", B " + std::to_string(b->numel) + ", C " + std::to_string(c->numel) + ")");
  }
  a->ctx->device->gemm(a->ptr, b->ptr, c->ptr, a->dtype, c->dtype, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
                       boolean(env, argv[6]), boolean(env, argv[7]), static_cast<float>(number(env, argv[8], "alpha")),
                       static_cast<float>(number(env, argv[9], "beta")));
  return undefined(env);
}

// adamw(master | null, weight, grad, m, v, { lr, beta1, beta2, eps, weightDecay, step, gradScale })
napi_value adamw(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 6);
  Tensor* master = optional_tensor(env, argv[0], "master");
  Tensor* weight = tensor(env, argv[1], "weight");
  Tensor* grad = tensor(env, argv[2], "grad");
  Tensor* m = tensor(env, argv[3], "exp_avg");
  Tensor* v = tensor(env, argv[4], "exp_avg_sq");
  for (Tensor* t : {master, grad, m, v}) same_context(weight, t, "adamw");
  const size_t n = weight->numel;
  for (Tensor* t : {master, grad, m, v}) {
    if (t != nullptr && t->numel != n) throw JsError("adamw: master, grad, exp_avg and exp_avg_sq must have the weight's size");
  }
  if ((master != nullptr && master->dtype != DType::F32) || m->dtype != DType::F32 || v->dtype != DType::F32) throw JsError("adamw: master and moments must be float32");
  if (grad->dtype != DType::F32 && grad->dtype != DType::BF16) throw JsError("adamw: the gradient must be float32 or bfloat16");
  if (master == nullptr && weight->dtype != DType::F32) throw JsError("adamw: a 16-bit weight needs an fp32 master");
  if (weight->dtype == DType::I32) throw JsError("adamw: the weight must be a float tensor");
  ref::AdamWArgs a{};
  a.lr = static_cast<float>(field(env, argv[5], "lr"));
  a.beta1 = static_cast<float>(field(env, argv[5], "beta1"));
  a.beta2 = static_cast<float>(field(env, argv[5], "beta2"));
  a.eps = static_cast<float>(field(env, argv[5], "eps"));
  a.weight_decay = static_cast<float>(field(env, argv[5], "weightDecay"));
  a.step = static_cast<int>(field(env, argv[5], "step"));
  a.grad_scale = static_cast<float>(field(env, argv[5], "gradScale"));
  if (a.step < 1) throw JsError("adamw: step must be >= 1");
  weight->ctx->device->adamw(master ? static_cast<float*>(master->ptr) : nullptr, weight->ptr, weight->dtype, grad->ptr, grad->dtype,
                             static_cast<float*>(m->ptr), static_cast<float*>(v->ptr), n, a);
  return undefined(env);
}

napi_value sum_squares(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 1);
  bool is_array = false;
  NAPI_OK(napi_is_array(env, argv[0], &is_array));
  if (!is_array) throw JsError("sumSquares takes an array of tensors");
  uint32_t len = 0;
  NAPI_OK(napi_get_array_length(env, argv[0], &len));
  std::vector<TensorView> views;
  Tensor* first = nullptr;
  for (uint32_t i = 0; i < len; i++) {
    napi_value el;
    NAPI_OK(napi_get_element(env, argv[0], i, &el));
    Tensor* t = tensor(env, el, "tensor");
    if (t->dtype == DType::I32) throw JsError("sumSquares: int32 tensors are not gradients");
    if (first == nullptr) first = t;
    same_context(first, t, "sumSquares");
    views.push_back(TensorView{t->ptr, t->dtype, t->numel});
  }
  if (first == nullptr) return make_number(env, 0);
  return make_number(env, first->ctx->device->sum_squares(views));
}

napi_value scale(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 2);
  Tensor* t = tensor(env, argv[0], "tensor");
  if (t->dtype == DType::I32) throw JsError("scale: float tensors only");
  t->ctx->device->scale(t->ptr, t->dtype, t->numel, static_cast<float>(number(env, argv[1], "factor")));
  return undefined(env);
}

napi_value accumulate(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 3);
  Tensor* dst = tensor(env, argv[0], "destination");
  Tensor* src = tensor(env, argv[1], "source");
  same_context(dst, src, "accumulate");
  if (dst->dtype != DType::F32 || src->dtype == DType::I32) throw JsError("accumulate: an fp32 destination and a float source");
  if (dst->numel != src->numel) throw JsError("accumulate: sizes differ");
  dst->ctx->device->accumulate(static_cast<float*>(dst->ptr), src->ptr, src->dtype, dst->numel, static_cast<float>(number(env, argv[2], "factor")));
  return undefined(env);
}

napi_value cast(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 2);
  Tensor* src = tensor(env, argv[0], "source");
  Tensor* dst = tensor(env, argv[1], "destination");
  same_context(src, dst, "cast");
  if (dst->numel != src->numel) throw JsError("cast: sizes differ");
  if (src->dtype == DType::I32 || dst->dtype == DType::I32) throw JsError("cast: float tensors only");
  src->ctx->device->cast(src->ptr, src->dtype, dst->ptr, dst->dtype, src->numel);
  return undefined(env);
}

// sparseAdam(param, weight | null, grad, indices, m, v, { lr, beta1, beta2, eps, step })
napi_value sparse_adam(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 7);
  Tensor* param = tensor(env, argv[0], "param");
  Tensor* weight = optional_tensor(env, argv[1], "weight");
  Tensor* grad = tensor(env, argv[2], "grad");
  Tensor* indices = tensor(env, argv[3], "indices");
  Tensor* m = tensor(env, argv[4], "exp_avg");
  Tensor* v = tensor(env, argv[5], "exp_avg_sq");
  for (Tensor* t : {weight, grad, indices, m, v}) same_context(param, t, "sparseAdam");
  if (param->dtype != DType::F32 || m->dtype != DType::F32 || v->dtype != DType::F32) throw JsError("sparseAdam: param and moments must be float32");
  if (indices->dtype != DType::I32) throw JsError("sparseAdam: indices must be int32");
  if (grad->numel != param->numel || (weight != nullptr && weight->numel != param->numel)) throw JsError("sparseAdam: grad and weight must have the param's size");
  if (m->numel != indices->numel || v->numel != indices->numel) throw JsError("sparseAdam: exp_avg and exp_avg_sq need one entry per index");
  if (grad->dtype == DType::I32 || (weight != nullptr && weight->dtype == DType::I32)) throw JsError("sparseAdam: float gradients and weights only");
  // Indices are checked on the host once per upload would be cheaper; here they are checked every call.
  std::vector<int32_t> host(indices->numel);
  param->ctx->device->download(host.data(), indices->ptr, indices->bytes());
  for (int32_t i : host) {
    if (i < 0 || static_cast<size_t>(i) >= param->numel) throw JsError("sparseAdam: index " + std::to_string(i) + " is outside the param");
  }
  ref::SparseAdamArgs a{};
  a.lr = static_cast<float>(field(env, argv[6], "lr"));
  a.beta1 = static_cast<float>(field(env, argv[6], "beta1"));
  a.beta2 = static_cast<float>(field(env, argv[6], "beta2"));
  a.eps = static_cast<float>(field(env, argv[6], "eps"));
  a.step = static_cast<int>(field(env, argv[6], "step"));
  if (a.step < 1) throw JsError("sparseAdam: step must be >= 1");
  param->ctx->device->sparse_adam(static_cast<float*>(param->ptr), weight ? weight->ptr : nullptr, weight ? weight->dtype : DType::F32,
                                  grad->ptr, grad->dtype, static_cast<const int32_t*>(indices->ptr), static_cast<float*>(m->ptr),
                                  static_cast<float*>(v->ptr), indices->numel, a);
  return undefined(env);
}

// --- Llama ops (issue 12) ---------------------------------------------------------------------------------
// Shapes are derived from element counts (a tensor here is a flat buffer) and every one is checked, so a
// kernel never reads or writes past a buffer. Errors read "op: argument ...", naming what is wrong.

std::string shape_error(const char* op, const char* name, const Tensor* t, size_t want, const std::string& as) {
  return std::string(op) + ": " + name + " has " + std::to_string(t->numel) + " elements, expected " +
         std::to_string(want) + " (" + as + ")";
}

void expect_numel(const char* op, const char* name, const Tensor* t, size_t want, const std::string& as) {
  if (t->numel != want) throw JsError(shape_error(op, name, t, want, as));
}

void expect_float(const char* op, const char* name, const Tensor* t) {
  if (t->dtype == DType::I32) throw JsError(std::string(op) + ": " + name + " must be a float tensor (float32, bfloat16 or float16), got int32");
}

void expect_dtype(const char* op, const char* name, const Tensor* t, DType want) {
  if (t->dtype != want) {
    throw JsError(std::string(op) + ": " + name + " must be " + dtype_name(want) + ", got " + dtype_name(t->dtype));
  }
}

/** Activations of one op share a dtype (float32, bfloat16 or float16). */
void expect_same_dtype(const char* op, const char* name, const Tensor* t, const Tensor* like, const char* like_name) {
  if (t->dtype != like->dtype) {
    throw JsError(std::string(op) + ": " + name + " must have the dtype of " + like_name + " (" + dtype_name(like->dtype) +
                  "), got " + dtype_name(t->dtype));
  }
}

/** A whole number in [lo, hi], named in the error. */
int int_in(napi_env env, napi_value v, const char* op, const char* what, long long lo, long long hi) {
  const double d = number(env, v, what);
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || d != static_cast<double>(static_cast<long long>(d))) {
    throw JsError(std::string(op) + ": " + what + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                  "], got " + std::to_string(d));
  }
  return static_cast<int>(d);
}

/** How many rows of `cols` elements `t` holds; an error naming `t` when it is not whole rows. */
size_t rows_of(const char* op, const char* name, const Tensor* t, size_t cols, const char* cols_name) {
  if (cols == 0 || t->numel % cols != 0) {
    throw JsError(std::string(op) + ": " + name + " has " + std::to_string(t->numel) + " elements, not a whole number of rows of " +
                  std::to_string(cols) + " (" + cols_name + ")");
  }
  return t->numel / cols;
}

/** H of an [N, H] tensor `t` with one row per id. */
size_t row_length_per_id(const char* op, const char* name, const Tensor* t, const Tensor* ids) {
  if (t->numel % ids->numel != 0) {
    throw JsError(std::string(op) + ": " + name + " has " + std::to_string(t->numel) + " elements, not N * H for N = " +
                  std::to_string(ids->numel) + " ids");
  }
  return t->numel / ids->numel;
}

// embedding(table [V, H], ids int32 [N], out [N, H])
napi_value embedding(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 3);
  Tensor* table = tensor(env, argv[0], "table");
  Tensor* ids = tensor(env, argv[1], "ids");
  Tensor* out = tensor(env, argv[2], "out");
  for (Tensor* t : {ids, out}) same_context(table, t, "embedding");
  expect_float("embedding", "table", table);
  expect_dtype("embedding", "ids", ids, DType::I32);
  expect_float("embedding", "out", out);
  const size_t hidden = row_length_per_id("embedding", "out", out, ids);
  const size_t vocab = rows_of("embedding", "table", table, hidden, "H = out's row length");
  table->ctx->device->embedding(table->ptr, table->dtype, static_cast<const int32_t*>(ids->ptr), out->ptr, out->dtype, ids->numel,
                                vocab, hidden);
  return undefined(env);
}

// embeddingBackward(dOut [N, H], ids int32 [N], dTable fp32 [V, H] +=)
napi_value embedding_backward(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 3);
  Tensor* d_out = tensor(env, argv[0], "dOut");
  Tensor* ids = tensor(env, argv[1], "ids");
  Tensor* d_table = tensor(env, argv[2], "dTable");
  for (Tensor* t : {ids, d_table}) same_context(d_out, t, "embeddingBackward");
  expect_float("embeddingBackward", "dOut", d_out);
  expect_dtype("embeddingBackward", "ids", ids, DType::I32);
  expect_dtype("embeddingBackward", "dTable", d_table, DType::F32);
  const size_t hidden = row_length_per_id("embeddingBackward", "dOut", d_out, ids);
  const size_t vocab = rows_of("embeddingBackward", "dTable", d_table, hidden, "H = dOut's row length");
  d_out->ctx->device->embedding_backward(d_out->ptr, d_out->dtype, static_cast<const int32_t*>(ids->ptr),
                                         static_cast<float*>(d_table->ptr), ids->numel, vocab, hidden);
  return undefined(env);
}

// rmsNorm(x [N, H], weight [H], out [N, H], rstd fp32 [N], eps)
napi_value rms_norm(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 5);
  Tensor* x = tensor(env, argv[0], "x");
  Tensor* weight = tensor(env, argv[1], "weight");
  Tensor* out = tensor(env, argv[2], "out");
  Tensor* rstd = tensor(env, argv[3], "rstd");
  for (Tensor* t : {weight, out, rstd}) same_context(x, t, "rmsNorm");
  for (auto [name, t] : {std::pair{"x", x}, {"weight", weight}, {"out", out}}) expect_float("rmsNorm", name, t);
  expect_dtype("rmsNorm", "rstd", rstd, DType::F32);
  const size_t hidden = weight->numel;
  const size_t n = rows_of("rmsNorm", "x", x, hidden, "H = weight's size");
  expect_numel("rmsNorm", "out", out, x->numel, "x's size");
  expect_numel("rmsNorm", "rstd", rstd, n, "one per row of x");
  const double eps = number(env, argv[4], "eps");
  if (!(eps >= 0)) throw JsError("rmsNorm: eps must be a non-negative number");
  x->ctx->device->rms_norm(x->ptr, x->dtype, weight->ptr, weight->dtype, out->ptr, out->dtype, static_cast<float*>(rstd->ptr), n,
                           hidden, static_cast<float>(eps));
  return undefined(env);
}

// rmsNormBackward(dOut [N, H], x [N, H], weight [H], rstd fp32 [N], dx [N, H], dWeight fp32 [H] | null, accumulateDx)
napi_value rms_norm_backward(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 7);
  Tensor* d_out = tensor(env, argv[0], "dOut");
  Tensor* x = tensor(env, argv[1], "x");
  Tensor* weight = tensor(env, argv[2], "weight");
  Tensor* rstd = tensor(env, argv[3], "rstd");
  Tensor* dx = tensor(env, argv[4], "dx");
  Tensor* d_weight = optional_tensor(env, argv[5], "dWeight");
  for (Tensor* t : {x, weight, rstd, dx, d_weight}) same_context(d_out, t, "rmsNormBackward");
  for (auto [name, t] : {std::pair{"dOut", d_out}, {"x", x}, {"weight", weight}, {"dx", dx}}) expect_float("rmsNormBackward", name, t);
  expect_dtype("rmsNormBackward", "rstd", rstd, DType::F32);
  if (d_weight != nullptr) expect_dtype("rmsNormBackward", "dWeight", d_weight, DType::F32);
  const size_t hidden = weight->numel;
  const size_t n = rows_of("rmsNormBackward", "x", x, hidden, "H = weight's size");
  expect_numel("rmsNormBackward", "dOut", d_out, x->numel, "x's size");
  expect_numel("rmsNormBackward", "dx", dx, x->numel, "x's size");
  expect_numel("rmsNormBackward", "rstd", rstd, n, "one per row of x");
  if (d_weight != nullptr) expect_numel("rmsNormBackward", "dWeight", d_weight, hidden, "weight's size");
  const bool accumulate_dx = boolean(env, argv[6]);
  d_out->ctx->device->rms_norm_backward(d_out->ptr, d_out->dtype, x->ptr, x->dtype, weight->ptr, weight->dtype,
                                        static_cast<const float*>(rstd->ptr), dx->ptr, dx->dtype,
                                        d_weight ? static_cast<float*>(d_weight->ptr) : nullptr, n, hidden, accumulate_dx);
  return undefined(env);
}

// rope(x [N, heads * headDim] in place, cos fp32 [maxPos, headDim / 2], sin (same), seqLen, heads, headDim, inverse)
napi_value rope(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 7);
  Tensor* x = tensor(env, argv[0], "x");
  Tensor* cos = tensor(env, argv[1], "cos");
  Tensor* sin = tensor(env, argv[2], "sin");
  for (Tensor* t : {cos, sin}) same_context(x, t, "rope");
  expect_float("rope", "x", x);
  expect_dtype("rope", "cos", cos, DType::F32);
  expect_dtype("rope", "sin", sin, DType::F32);
  const int seq_len = int_in(env, argv[3], "rope", "seqLen", 1, 1 << 30);
  const int heads = int_in(env, argv[4], "rope", "heads", 1, 1 << 20);
  const int head_dim = int_in(env, argv[5], "rope", "headDim", 2, 1 << 16);
  if (head_dim % 2 != 0) throw JsError("rope: headDim must be even, got " + std::to_string(head_dim));
  const size_t half = static_cast<size_t>(head_dim / 2);
  const size_t n = rows_of("rope", "x", x, static_cast<size_t>(heads) * head_dim, "heads * headDim");
  if (n % static_cast<size_t>(seq_len) != 0) {
    throw JsError("rope: x has " + std::to_string(n) + " tokens, not a whole number of sequences of seqLen " + std::to_string(seq_len));
  }
  const size_t max_pos = rows_of("rope", "cos", cos, half, "headDim / 2");
  expect_numel("rope", "sin", sin, cos->numel, "cos's size");
  if (max_pos < static_cast<size_t>(seq_len)) {
    throw JsError("rope: the cos/sin tables cover " + std::to_string(max_pos) + " positions, fewer than seqLen " + std::to_string(seq_len));
  }
  x->ctx->device->rope(x->ptr, x->dtype, static_cast<const float*>(cos->ptr), static_cast<const float*>(sin->ptr), n, seq_len, heads,
                       head_dim, boolean(env, argv[6]));
  return undefined(env);
}

/** Reads (batch, seqLen, heads, kvHeads, headDim, scale, causal, lengths) from argv[first..] and checks them. */
ref::AttentionDims attention_dims(napi_env env, const std::vector<napi_value>& argv, size_t first, const char* op,
                                  const Tensor* q, Tensor** lengths_out) {
  ref::AttentionDims d{};
  // batch and heads index CUDA grid dimensions (at most 65535 each), on both devices alike.
  d.batch = int_in(env, argv[first], op, "batch", 1, 65535);
  d.seq_len = int_in(env, argv[first + 1], op, "seqLen", 1, 1 << 24);
  d.heads = int_in(env, argv[first + 2], op, "heads", 1, 65535);
  d.kv_heads = int_in(env, argv[first + 3], op, "kvHeads", 1, 65535);
  d.head_dim = int_in(env, argv[first + 4], op, "headDim", 1, 128);
  d.scale = static_cast<float>(number(env, argv[first + 5], "scale"));
  d.causal = boolean(env, argv[first + 6]);
  if (d.heads % d.kv_heads != 0) {
    throw JsError(std::string(op) + ": heads (" + std::to_string(d.heads) + ") must be a multiple of kvHeads (" +
                  std::to_string(d.kv_heads) + ")");
  }
  Tensor* lengths = optional_tensor(env, argv[first + 7], "lengths");
  if (lengths != nullptr) {
    same_context(q, lengths, op);
    expect_dtype(op, "lengths", lengths, DType::I32);
    expect_numel(op, "lengths", lengths, static_cast<size_t>(d.batch), "one per batch row");
  }
  d.lengths = lengths ? static_cast<const int32_t*>(lengths->ptr) : nullptr;
  *lengths_out = lengths;
  return d;
}

void check_attention_operands(const char* op, const ref::AttentionDims& d, std::initializer_list<std::pair<const char*, Tensor*>> q_like,
                              std::initializer_list<std::pair<const char*, Tensor*>> kv_like, Tensor* q) {
  const size_t tokens = static_cast<size_t>(d.batch) * d.seq_len;
  const size_t q_numel = tokens * d.heads * d.head_dim, kv_numel = tokens * d.kv_heads * d.head_dim;
  for (auto [name, t] : q_like) {
    same_context(q, t, op);
    expect_float(op, name, t);
    expect_same_dtype(op, name, t, q, "q");
    expect_numel(op, name, t, q_numel, "batch * seqLen * heads * headDim");
  }
  for (auto [name, t] : kv_like) {
    same_context(q, t, op);
    expect_same_dtype(op, name, t, q, "q");
    expect_numel(op, name, t, kv_numel, "batch * seqLen * kvHeads * headDim");
  }
}

// attention(q, k, v, out, lse fp32 [batch, heads, seqLen], batch, seqLen, heads, kvHeads, headDim, scale, causal, lengths | null)
napi_value attention(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 13);
  Tensor* q = tensor(env, argv[0], "q");
  Tensor* k = tensor(env, argv[1], "k");
  Tensor* v = tensor(env, argv[2], "v");
  Tensor* out = tensor(env, argv[3], "out");
  Tensor* lse = tensor(env, argv[4], "lse");
  Tensor* lengths = nullptr;
  const ref::AttentionDims d = attention_dims(env, argv, 5, "attention", q, &lengths);
  check_attention_operands("attention", d, {{"q", q}, {"out", out}}, {{"k", k}, {"v", v}}, q);
  same_context(q, lse, "attention");
  expect_dtype("attention", "lse", lse, DType::F32);
  expect_numel("attention", "lse", lse, static_cast<size_t>(d.batch) * d.heads * d.seq_len, "batch * heads * seqLen");
  q->ctx->device->attention(q->ptr, k->ptr, v->ptr, out->ptr, static_cast<float*>(lse->ptr), q->dtype, d);
  return undefined(env);
}

// attentionBackward(q, k, v, out, dOut, lse, dq, dk, dv, batch, seqLen, heads, kvHeads, headDim, scale, causal, lengths | null)
napi_value attention_backward(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 17);
  const char* op = "attentionBackward";
  Tensor* q = tensor(env, argv[0], "q");
  Tensor* k = tensor(env, argv[1], "k");
  Tensor* v = tensor(env, argv[2], "v");
  Tensor* out = tensor(env, argv[3], "out");
  Tensor* d_out = tensor(env, argv[4], "dOut");
  Tensor* lse = tensor(env, argv[5], "lse");
  Tensor* dq = tensor(env, argv[6], "dq");
  Tensor* dk = tensor(env, argv[7], "dk");
  Tensor* dv = tensor(env, argv[8], "dv");
  Tensor* lengths = nullptr;
  const ref::AttentionDims d = attention_dims(env, argv, 9, op, q, &lengths);
  check_attention_operands(op, d, {{"q", q}, {"out", out}, {"dOut", d_out}, {"dq", dq}}, {{"k", k}, {"v", v}, {"dk", dk}, {"dv", dv}}, q);
  same_context(q, lse, op);
  expect_dtype(op, "lse", lse, DType::F32);
  const size_t rows = static_cast<size_t>(d.batch) * d.heads * d.seq_len;
  expect_numel(op, "lse", lse, rows, "batch * heads * seqLen");
  // D = rowsum(dOut * out), one fp32 per query row, lives only for this call.
  Context& ctx = *q->ctx;
  void* d_rows = ctx.allocator->allocate(rows * sizeof(float), MemoryKind::Workspace);
  try {
    ctx.device->attention_backward(q->ptr, k->ptr, v->ptr, out->ptr, d_out->ptr, static_cast<const float*>(lse->ptr), dq->ptr,
                                   dk->ptr, dv->ptr, static_cast<float*>(d_rows), q->dtype, d);
  } catch (...) {
    ctx.allocator->release(d_rows);
    throw;
  }
  // Released to the pool while the kernels may still run: later work on the same stream is ordered after them.
  ctx.allocator->release(d_rows);
  return undefined(env);
}

/** Elementwise operands: the same context, float dtypes and `n` elements each. */
void elementwise(const char* op, std::initializer_list<std::pair<const char*, Tensor*>> tensors) {
  const auto& first = *tensors.begin();
  for (auto [name, t] : tensors) {
    same_context(first.second, t, op);
    expect_float(op, name, t);
    if (t->numel != first.second->numel) {
      throw JsError(std::string(op) + ": " + name + " has " + std::to_string(t->numel) + " elements, expected " +
                    std::to_string(first.second->numel) + " (" + first.first + "'s size)");
    }
  }
}

// swiglu(gate [N, I], up [N, I], out [N, I])
napi_value swiglu(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 3);
  Tensor* gate = tensor(env, argv[0], "gate");
  Tensor* up = tensor(env, argv[1], "up");
  Tensor* out = tensor(env, argv[2], "out");
  elementwise("swiglu", {{"gate", gate}, {"up", up}, {"out", out}});
  gate->ctx->device->swiglu(gate->ptr, gate->dtype, up->ptr, up->dtype, out->ptr, out->dtype, gate->numel);
  return undefined(env);
}

// swigluBackward(gate, up, dOut, dGate, dUp), all [N, I]
napi_value swiglu_backward(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 5);
  Tensor* gate = tensor(env, argv[0], "gate");
  Tensor* up = tensor(env, argv[1], "up");
  Tensor* d_out = tensor(env, argv[2], "dOut");
  Tensor* d_gate = tensor(env, argv[3], "dGate");
  Tensor* d_up = tensor(env, argv[4], "dUp");
  elementwise("swigluBackward", {{"gate", gate}, {"up", up}, {"dOut", d_out}, {"dGate", d_gate}, {"dUp", d_up}});
  gate->ctx->device->swiglu_backward(gate->ptr, gate->dtype, up->ptr, up->dtype, d_out->ptr, d_out->dtype, d_gate->ptr,
                                     d_gate->dtype, d_up->ptr, d_up->dtype, gate->numel);
  return undefined(env);
}

// add(a, b, out), one shape; out may alias a or b
napi_value add(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 3);
  Tensor* a = tensor(env, argv[0], "a");
  Tensor* b = tensor(env, argv[1], "b");
  Tensor* out = tensor(env, argv[2], "out");
  elementwise("add", {{"a", a}, {"b", b}, {"out", out}});
  a->ctx->device->add(a->ptr, a->dtype, b->ptr, b->dtype, out->ptr, out->dtype, a->numel);
  return undefined(env);
}

// addBias(x [N, C] in place, bias [C])
napi_value add_bias(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 2);
  Tensor* x = tensor(env, argv[0], "x");
  Tensor* bias = tensor(env, argv[1], "bias");
  same_context(x, bias, "addBias");
  expect_float("addBias", "x", x);
  expect_float("addBias", "bias", bias);
  rows_of("addBias", "x", x, bias->numel, "C = bias's size");
  x->ctx->device->add_bias(x->ptr, x->dtype, bias->ptr, bias->dtype, x->numel, bias->numel);
  return undefined(env);
}

// biasBackward(dOut [N, C], dBias fp32 [C] +=)
napi_value bias_backward(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 2);
  Tensor* d_out = tensor(env, argv[0], "dOut");
  Tensor* d_bias = tensor(env, argv[1], "dBias");
  same_context(d_out, d_bias, "biasBackward");
  expect_float("biasBackward", "dOut", d_out);
  expect_dtype("biasBackward", "dBias", d_bias, DType::F32);
  rows_of("biasBackward", "dOut", d_out, d_bias->numel, "C = dBias's size");
  d_out->ctx->device->bias_backward(d_out->ptr, d_out->dtype, static_cast<float*>(d_bias->ptr), d_out->numel, d_bias->numel);
  return undefined(env);
}

// crossEntropy(logits [n, V] (gradient in place), labels int32 [n], losses fp32 [n], gradScale)
napi_value cross_entropy(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 4);
  Tensor* logits = tensor(env, argv[0], "logits");
  Tensor* labels = tensor(env, argv[1], "labels");
  Tensor* losses = tensor(env, argv[2], "losses");
  for (Tensor* t : {labels, losses}) same_context(logits, t, "crossEntropy");
  expect_float("crossEntropy", "logits", logits);
  expect_dtype("crossEntropy", "labels", labels, DType::I32);
  expect_dtype("crossEntropy", "losses", losses, DType::F32);
  expect_numel("crossEntropy", "losses", losses, labels->numel, "one per label");
  if (logits->numel % labels->numel != 0) {
    throw JsError("crossEntropy: logits has " + std::to_string(logits->numel) + " elements, not a whole number of rows for " +
                  std::to_string(labels->numel) + " labels");
  }
  const double grad_scale = number(env, argv[3], "gradScale");
  logits->ctx->device->cross_entropy(logits->ptr, logits->dtype, static_cast<const int32_t*>(labels->ptr),
                                     static_cast<float*>(losses->ptr), labels->numel, logits->numel / labels->numel,
                                     static_cast<float>(grad_scale));
  return undefined(env);
}

// argmaxRows(x [n, V], out int32 [n])
napi_value argmax_rows(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 2);
  Tensor* x = tensor(env, argv[0], "x");
  Tensor* out = tensor(env, argv[1], "out");
  same_context(x, out, "argmaxRows");
  expect_float("argmaxRows", "x", x);
  expect_dtype("argmaxRows", "out", out, DType::I32);
  if (x->numel % out->numel != 0) {
    throw JsError("argmaxRows: x has " + std::to_string(x->numel) + " elements, not a whole number of rows for out's " +
                  std::to_string(out->numel));
  }
  x->ctx->device->argmax_rows(x->ptr, x->dtype, static_cast<int32_t*>(out->ptr), out->numel, x->numel / out->numel);
  return undefined(env);
}

// sum(x) -> number (double accumulation)
napi_value sum(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 1);
  Tensor* x = tensor(env, argv[0], "x");
  expect_float("sum", "x", x);
  return make_number(env, x->ctx->device->sum(x->ptr, x->dtype, x->numel));
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

napi_value init(napi_env env, napi_value exports) {
  const struct {
    const char* name;
    napi_callback fn;
  } functions[] = {
      {"createContext", guarded<create_context>},   {"contextInfo", guarded<context_info>},
      {"memoryStats", guarded<memory_stats>},       {"emptyCache", guarded<empty_cache>},
      {"resetPeaks", guarded<reset_peaks>},         {"synchronize", guarded<synchronize>},
      {"tensorCreate", guarded<tensor_create>},     {"tensorFree", guarded<tensor_free>},
      {"tensorWrite", guarded<tensor_write>},       {"tensorRead", guarded<tensor_read>},
      {"tensorFill", guarded<tensor_fill>},         {"tensorCopy", guarded<tensor_copy>},
      {"gemm", guarded<gemm>},                      {"adamw", guarded<adamw>},
      {"sumSquares", guarded<sum_squares>},         {"scale", guarded<scale>},
      {"accumulate", guarded<accumulate>},          {"cast", guarded<cast>},
      {"sparseAdam", guarded<sparse_adam>},         {"buildInfo", guarded<build_info>},
      {"embedding", guarded<embedding>},            {"embeddingBackward", guarded<embedding_backward>},
      {"rmsNorm", guarded<rms_norm>},               {"rmsNormBackward", guarded<rms_norm_backward>},
      {"rope", guarded<rope>},                      {"attention", guarded<attention>},
      {"attentionBackward", guarded<attention_backward>},
      {"swiglu", guarded<swiglu>},                  {"swigluBackward", guarded<swiglu_backward>},
      {"add", guarded<add>},                        {"addBias", guarded<add_bias>},
      {"biasBackward", guarded<bias_backward>},     {"crossEntropy", guarded<cross_entropy>},
      {"argmaxRows", guarded<argmax_rows>},         {"sum", guarded<sum>},
  };
  for (const auto& f : functions) {
    napi_value fn;
    napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.fn, nullptr, &fn);
    napi_set_named_property(env, exports, f.name, fn);
  }
  return exports;
}

}  // namespace
}  // namespace badam

NAPI_MODULE(NODE_GYP_MODULE_NAME, badam::init)
