// Node-API surface of @badam/cuda: contexts (a device with its caching allocator), tensors in device
// memory, and the kernels. Every argument is checked here — a wrong size or a freed tensor is a JS error
// naming the problem, never a read past the end of a buffer — and every C++ exception becomes a JS error.
#include <node_api.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
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
