// Node-API bindings of the CPU kernels. Every function checks its arguments and throws a TypeError or
// RangeError that says what was wrong, so a bad call never reads out of bounds.
#include <node_api.h>

#include <cstdint>
#include <string>

#include "gemm.h"

namespace {

#define NAPI_OK(call)                                                          \
  do {                                                                         \
    if ((call) != napi_ok) {                                                   \
      napi_throw_error(env, nullptr, "badam native: Node-API call failed: " #call); \
      return nullptr;                                                          \
    }                                                                          \
  } while (0)

struct FloatView {
  float* data;
  size_t length;
};

bool float_view(napi_env env, napi_value value, const char* what, FloatView* out) {
  bool is_typed = false;
  napi_is_typedarray(env, value, &is_typed);
  if (!is_typed) {
    napi_throw_type_error(env, nullptr, (std::string(what) + " must be a Float32Array").c_str());
    return false;
  }
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  napi_get_typedarray_info(env, value, &type, &length, &data, nullptr, nullptr);
  if (type != napi_float32_array) {
    napi_throw_type_error(env, nullptr, (std::string(what) + " must be a Float32Array").c_str());
    return false;
  }
  out->data = static_cast<float*>(data);
  out->length = length;
  return true;
}

bool integer(napi_env env, napi_value value, const char* what, int64_t* out) {
  if (napi_get_value_int64(env, value, out) != napi_ok || *out < 0) {
    napi_throw_range_error(env, nullptr, (std::string(what) + " must be a non-negative integer").c_str());
    return false;
  }
  return true;
}

// gemm(a, b, c, m, n, k, transA, transB, batch, strideA, strideB, reference)
napi_value Gemm(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value args[12];
  NAPI_OK(napi_get_cb_info(env, info, &argc, args, nullptr, nullptr));
  if (argc != 12) {
    napi_throw_type_error(env, nullptr, "gemm expects 12 arguments: a, b, c, m, n, k, transA, transB, batch, strideA, strideB, reference");
    return nullptr;
  }
  FloatView a, b, c;
  int64_t m, n, k, batch, stride_a, stride_b;
  bool trans_a, trans_b, reference;
  if (!float_view(env, args[0], "a", &a) || !float_view(env, args[1], "b", &b) || !float_view(env, args[2], "c", &c)) return nullptr;
  if (!integer(env, args[3], "m", &m) || !integer(env, args[4], "n", &n) || !integer(env, args[5], "k", &k) ||
      !integer(env, args[8], "batch", &batch) || !integer(env, args[9], "strideA", &stride_a) ||
      !integer(env, args[10], "strideB", &stride_b))
    return nullptr;
  NAPI_OK(napi_get_value_bool(env, args[6], &trans_a));
  NAPI_OK(napi_get_value_bool(env, args[7], &trans_b));
  NAPI_OK(napi_get_value_bool(env, args[11], &reference));
  const auto need = [](int64_t count, int64_t stride, int64_t size) { return count == 0 ? 0 : (count - 1) * stride + size; };
  if (static_cast<int64_t>(a.length) < need(batch, stride_a, m * k) || static_cast<int64_t>(b.length) < need(batch, stride_b, k * n) ||
      static_cast<int64_t>(c.length) < batch * m * n) {
    napi_throw_range_error(env, nullptr, "gemm: an array is shorter than its batch x matrix size");
    return nullptr;
  }
  const int64_t lda = trans_a ? m : k;
  const int64_t ldb = trans_b ? k : n;
  for (int64_t i = 0; i < batch; ++i) {
    const float* ai = a.data + i * stride_a;
    const float* bi = b.data + i * stride_b;
    float* ci = c.data + i * m * n;
    if (reference) {
      badam::sgemm_reference(m, n, k, ai, lda, trans_a, bi, ldb, trans_b, ci, n);
    } else {
      badam::sgemm(m, n, k, ai, lda, trans_a, bi, ldb, trans_b, ci, n);
    }
  }
  return nullptr;
}

napi_value KernelName(napi_env env, napi_callback_info) {
  napi_value out;
  NAPI_OK(napi_create_string_utf8(env, badam::sgemm_kernel_name(), NAPI_AUTO_LENGTH, &out));
  return out;
}

napi_value Threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value args[1];
  NAPI_OK(napi_get_cb_info(env, info, &argc, args, nullptr, nullptr));
  if (argc == 1) {
    int64_t threads;
    if (!integer(env, args[0], "threads", &threads) || threads < 1) {
      if (!threads) napi_throw_range_error(env, nullptr, "threads must be an integer >= 1");
      return nullptr;
    }
    badam::set_sgemm_threads(static_cast<int>(threads));
  }
  napi_value out;
  NAPI_OK(napi_create_int32(env, badam::sgemm_threads(), &out));
  return out;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"gemm", nullptr, Gemm, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"kernelName", nullptr, KernelName, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"threads", nullptr, Threads, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  NAPI_OK(napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props));
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
