// What every Node-API binding file of @badam/cuda shares (bind_*.cc, addon.cc): the context and tensor handles
// JS holds, reading and checking arguments, and turning C++ exceptions into JS errors. Every argument is
// checked in the bindings (a wrong size or a freed tensor is a JS error naming the problem, never a read
// past the end of a buffer); errors read "op: argument ...".
#pragma once

#include <node_api.h>

#include <cstring>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "allocator.h"
#include "device.h"

namespace badam::napi {

/** A device with its caching allocator, and the GEMM library's workspace drawn from that allocator. */
struct Context {
  std::unique_ptr<Device> device;
  std::unique_ptr<CachingAllocator> allocator;
  void* gemm_workspace = nullptr;
  // The last tensor is gone: the workspace goes back to the pool (the allocator frees it next, before the
  // device and its GEMM handle, which runs nothing more).
  ~Context() {
    if (gemm_workspace != nullptr) {
      try { allocator->release(gemm_workspace); } catch (...) {}
    }
  }
};

/**
 * One block of device memory from the caching allocator, shared by the tensors that view it: returned to the
 * pool when the last of them is freed (or finalized).
 */
struct Allocation {
  std::shared_ptr<Context> ctx;
  void* base = nullptr;
  size_t bytes = 0;
  Allocation(std::shared_ptr<Context> c, void* b, size_t n) : ctx(std::move(c)), base(b), bytes(n) {}
  Allocation(const Allocation&) = delete;
  Allocation& operator=(const Allocation&) = delete;
  ~Allocation() {
    try { ctx->allocator->release(base); } catch (...) {}
  }
};

/**
 * A tensor: `numel` elements of `dtype` at `ptr`, inside an allocation it shares with the other views of it
 * (a fused weight's parts, for instance). Strided operands may reach past `numel` up to the allocation's
 * end, never beyond (reach()).
 */
struct Tensor {
  std::shared_ptr<Context> ctx;
  std::shared_ptr<Allocation> memory;
  void* ptr = nullptr;
  DType dtype = DType::F32;
  size_t numel = 0;
  MemoryKind kind = MemoryKind::Other;
  size_t bytes() const { return numel * dtype_size(dtype); }
  /** Elements from ptr to the end of the allocation. */
  size_t reach() const {
    return (memory->bytes - static_cast<size_t>(static_cast<char*>(ptr) - static_cast<char*>(memory->base))) / dtype_size(dtype);
  }
  void free() {
    memory.reset();
    ptr = nullptr;
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

/** One function of the addon's exports. */
struct Binding {
  const char* name;
  napi_callback fn;
};

inline napi_value undefined(napi_env env) {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

inline std::vector<napi_value> args_of(napi_env env, napi_callback_info info, size_t want) {
  size_t argc = want;
  std::vector<napi_value> argv(want);
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv.data(), nullptr, nullptr));
  if (argc < want) throw JsError("expected " + std::to_string(want) + " arguments, got " + std::to_string(argc));
  return argv;
}

/** `max` arguments, of which the last max - min may be absent (undefined). */
inline std::vector<napi_value> args_between(napi_env env, napi_callback_info info, size_t min, size_t max) {
  size_t argc = max;
  std::vector<napi_value> argv(max);
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv.data(), nullptr, nullptr));
  if (argc < min) throw JsError("expected at least " + std::to_string(min) + " arguments, got " + std::to_string(argc));
  return argv;
}

inline double number(napi_env env, napi_value v, const char* what) {
  napi_valuetype t;
  NAPI_OK(napi_typeof(env, v, &t));
  if (t != napi_number) throw JsError(std::string(what) + " must be a number");
  double d;
  NAPI_OK(napi_get_value_double(env, v, &d));
  return d;
}

inline size_t count(napi_env env, napi_value v, const char* what) {
  double d = number(env, v, what);
  if (!(d >= 0) || d != static_cast<double>(static_cast<size_t>(d)) || d > 9007199254740991.0) {
    throw JsError(std::string(what) + " must be a non-negative integer, got " + std::to_string(d));
  }
  return static_cast<size_t>(d);
}

inline bool boolean(napi_env env, napi_value v) {
  bool b = false;
  if (napi_get_value_bool(env, v, &b) != napi_ok) throw JsError("expected a boolean");
  return b;
}

inline std::string string(napi_env env, napi_value v, const char* what) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, nullptr, 0, &len) != napi_ok) throw JsError(std::string(what) + " must be a string");
  std::string s(len, '\0');
  NAPI_OK(napi_get_value_string_utf8(env, v, s.data(), len + 1, &len));
  return s;
}

inline double field(napi_env env, napi_value obj, const char* name) {
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

inline Tensor* tensor(napi_env env, napi_value v, const char* what) {
  Tensor* t = external<Tensor>(env, v, what);
  if (t->ptr == nullptr) throw JsError(std::string(what) + " was freed; create a new tensor");
  return t;
}

inline Tensor* optional_tensor(napi_env env, napi_value v, const char* what) {
  napi_valuetype t;
  NAPI_OK(napi_typeof(env, v, &t));
  if (t == napi_null || t == napi_undefined) return nullptr;
  return tensor(env, v, what);
}

inline void same_context(const Tensor* a, const Tensor* b, const char* what) {
  if (b != nullptr && a->ctx != b->ctx) throw JsError(std::string(what) + ": tensors live on different devices");
}

struct TypedArray {
  napi_typedarray_type type;
  void* data;
  size_t length;
};

inline TypedArray typed_array(napi_env env, napi_value v, const char* what) {
  bool is = false;
  NAPI_OK(napi_is_typedarray(env, v, &is));
  if (!is) throw JsError(std::string(what) + " must be a typed array");
  TypedArray a{};
  napi_value buffer;
  size_t offset;
  NAPI_OK(napi_get_typedarray_info(env, v, &a.type, &a.length, &a.data, &buffer, &offset));
  return a;
}

inline napi_value make_number(napi_env env, double d) {
  napi_value v;
  NAPI_OK(napi_create_double(env, d, &v));
  return v;
}

inline napi_value make_string(napi_env env, const std::string& s) {
  napi_value v;
  NAPI_OK(napi_create_string_utf8(env, s.c_str(), s.size(), &v));
  return v;
}

inline void set(napi_env env, napi_value obj, const char* name, napi_value v) { NAPI_OK(napi_set_named_property(env, obj, name, v)); }

using Body = napi_value (*)(napi_env, napi_callback_info);

template <Body body>
inline napi_value guarded(napi_env env, napi_callback_info info) {
  try {
    return body(env, info);
  } catch (const std::exception& e) {
    napi_throw_error(env, nullptr, e.what());
    return nullptr;
  }
}

/**
 * Device memory of kind Workspace for one call (the GPU kernels' scratch: column sums, split partial sums),
 * from the context's allocator so the accounting shows it; released when the call returns, while the
 * kernels may still run: later work on the device's one stream is ordered after them.
 */
class CallWorkspace {
 public:
  CallWorkspace(Context& ctx, size_t floats)
      : ctx_(ctx), ptr_(floats > 0 ? ctx.allocator->allocate(floats * sizeof(float), MemoryKind::Workspace) : nullptr) {}
  CallWorkspace(const CallWorkspace&) = delete;
  CallWorkspace& operator=(const CallWorkspace&) = delete;
  ~CallWorkspace() {
    if (ptr_ != nullptr) {
      try { ctx_.allocator->release(ptr_); } catch (...) {}
    }
  }
  float* floats() const { return static_cast<float*>(ptr_); }

 private:
  Context& ctx_;
  void* ptr_;
};

/** A non-negative whole number of elements from argv (0 when the argument is absent or undefined). */
inline size_t optional_count(napi_env env, const std::vector<napi_value>& argv, size_t index, const char* what) {
  if (index >= argv.size()) return 0;
  napi_valuetype t;
  NAPI_OK(napi_typeof(env, argv[index], &t));
  if (t == napi_undefined || t == napi_null) return 0;
  return count(env, argv[index], what);
}

// --- shape and dtype checks -------------------------------------------------------------------------------
// Shapes are derived from element counts (a tensor here is a flat buffer) and every one is checked, so a
// kernel never reads or writes past a buffer.

inline std::string shape_error(const char* op, const char* name, const Tensor* t, size_t want, const std::string& as) {
  return std::string(op) + ": " + name + " has " + std::to_string(t->numel) + " elements, expected " +
         std::to_string(want) + " (" + as + ")";
}

inline void expect_numel(const char* op, const char* name, const Tensor* t, size_t want, const std::string& as) {
  if (t->numel != want) throw JsError(shape_error(op, name, t, want, as));
}

inline void expect_float(const char* op, const char* name, const Tensor* t) {
  if (t->dtype == DType::I32) throw JsError(std::string(op) + ": " + name + " must be a float tensor (float32, bfloat16 or float16), got int32");
}

inline void expect_dtype(const char* op, const char* name, const Tensor* t, DType want) {
  if (t->dtype != want) {
    throw JsError(std::string(op) + ": " + name + " must be " + dtype_name(want) + ", got " + dtype_name(t->dtype));
  }
}

/** Activations of one op share a dtype (float32, bfloat16 or float16). */
inline void expect_same_dtype(const char* op, const char* name, const Tensor* t, const Tensor* like, const char* like_name) {
  if (t->dtype != like->dtype) {
    throw JsError(std::string(op) + ": " + name + " must have the dtype of " + like_name + " (" + dtype_name(like->dtype) +
                  "), got " + dtype_name(t->dtype));
  }
}

/** A whole number in [lo, hi], named in the error. */
inline int int_in(napi_env env, napi_value v, const char* op, const char* what, long long lo, long long hi) {
  const double d = number(env, v, what);
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || d != static_cast<double>(static_cast<long long>(d))) {
    throw JsError(std::string(op) + ": " + what + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                  "], got " + std::to_string(d));
  }
  return static_cast<int>(d);
}

/** How many rows of `cols` elements `t` holds; an error naming `t` when it is not whole rows. */
inline size_t rows_of(const char* op, const char* name, const Tensor* t, size_t cols, const char* cols_name) {
  if (cols == 0 || t->numel % cols != 0) {
    throw JsError(std::string(op) + ": " + name + " has " + std::to_string(t->numel) + " elements, not a whole number of rows of " +
                  std::to_string(cols) + " (" + cols_name + ")");
  }
  return t->numel / cols;
}

/** H of an [N, H] tensor `t` with one row per id. */
inline size_t row_length_per_id(const char* op, const char* name, const Tensor* t, const Tensor* ids) {
  if (t->numel % ids->numel != 0) {
    throw JsError(std::string(op) + ": " + name + " has " + std::to_string(t->numel) + " elements, not N * H for N = " +
                  std::to_string(ids->numel) + " ids");
  }
  return t->numel / ids->numel;
}

/** Elementwise operands: the same context, float dtypes and `n` elements each. */
inline void elementwise(const char* op, std::initializer_list<std::pair<const char*, Tensor*>> tensors) {
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

}  // namespace badam::napi
