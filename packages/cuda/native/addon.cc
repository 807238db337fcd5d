// Node-API entry point of @badam/cuda: contexts (a device with its caching allocator), tensors in device
// memory, and the kernels, registered from their binding files (bind_*.cc). Every argument is checked there
// and every C++ exception becomes a JS error (napi_args.h).
#include <node_api.h>

#include <vector>

#include "napi_args.h"

namespace badam::napi {

void add_context_bindings(std::vector<Binding>& out);
void add_optimizer_bindings(std::vector<Binding>& out);
void add_llama_bindings(std::vector<Binding>& out);

namespace {

napi_value init(napi_env env, napi_value exports) {
  std::vector<Binding> bindings;
  add_context_bindings(bindings);
  add_optimizer_bindings(bindings);
  add_llama_bindings(bindings);
  for (const Binding& b : bindings) {
    napi_value fn;
    napi_create_function(env, b.name, NAPI_AUTO_LENGTH, b.fn, nullptr, &fn);
    napi_set_named_property(env, exports, b.name, fn);
  }
  return exports;
}

}  // namespace
}  // namespace badam::napi

NAPI_MODULE(NODE_GYP_MODULE_NAME, badam::napi::init)
