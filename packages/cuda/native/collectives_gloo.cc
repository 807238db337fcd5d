// libbadam_gloo.so: the only code that calls Gloo (Debian's libgloo-dev: TCP transport, the collectives
// PyTorch uses between CPU processes). The addon opens it with dlopen and calls the C functions below
// (collectives_gloo_api.h); built only where Gloo's headers and library are found.
#include <gloo/allgatherv.h>
#include <gloo/alltoallv.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "collectives_gloo_api.h"

#define BADAM_GLOO_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

void set_error(char* error, size_t size, const std::string& message) {
  if (error == nullptr || size == 0) return;
  std::strncpy(error, message.c_str(), size - 1);
  error[size - 1] = '\0';
}

/** Gloo's Store interface over the addon's rendezvous store. */
class StoreAdapter final : public gloo::rendezvous::Store {
 public:
  StoreAdapter(const badam_gloo_store& store, std::chrono::milliseconds timeout) : store_(store), timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    char error[512] = {0};
    if (store_.set(store_.self, key.c_str(), data.data(), data.size(), error, sizeof(error)) != 0) {
      throw std::runtime_error(error);
    }
  }
  std::vector<char> get(const std::string& key) override { return get_within(key, timeout_); }
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    for (const auto& key : keys) get_within(key, timeout);
  }

 private:
  std::vector<char> get_within(const std::string& key, std::chrono::milliseconds timeout) {
    char error[512] = {0};
    char* data = nullptr;
    size_t size = 0;
    if (store_.get(store_.self, key.c_str(), &data, &size, static_cast<long>(timeout.count()), error, sizeof(error)) != 0) {
      throw std::runtime_error(error);
    }
    std::vector<char> out(data, data + size);
    std::free(data);
    return out;
  }
  badam_gloo_store store_;
  std::chrono::milliseconds timeout_;
};

struct Group {
  std::shared_ptr<gloo::transport::Device> device;
  std::shared_ptr<gloo::rendezvous::Context> context;
};

template <typename F>
int guarded(char* error, size_t error_size, F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    set_error(error, error_size, e.what());
  } catch (...) {
    set_error(error, error_size, "unknown error in Gloo");
  }
  return 1;
}

}  // namespace

BADAM_GLOO_EXPORT int badam_gloo_abi_version(void) { return BADAM_GLOO_ABI_VERSION; }

BADAM_GLOO_EXPORT void* badam_gloo_connect(int rank, int size, const char* hostname, const char* iface,
                                           const badam_gloo_store* store, long timeout_ms, char* error,
                                           size_t error_size) {
  auto* group = new Group();
  const int rc = guarded(error, error_size, [&] {
    gloo::transport::tcp::attr attr;
    if (iface != nullptr && *iface != '\0') attr.iface = iface;
    else attr.hostname = hostname;
    group->device = gloo::transport::tcp::CreateDevice(attr);
    group->context = std::make_shared<gloo::rendezvous::Context>(rank, size);
    group->context->setTimeout(std::chrono::milliseconds(timeout_ms));
    StoreAdapter adapter(*store, std::chrono::milliseconds(timeout_ms));
    group->context->connectFullMesh(adapter, group->device);
  });
  if (rc != 0) {
    delete group;
    return nullptr;
  }
  return group;
}

BADAM_GLOO_EXPORT int badam_gloo_all_gather_v(void* g, const void* in, void* out, const size_t* bytes_per_rank,
                                              char* error, size_t error_size) {
  auto* group = static_cast<Group*>(g);
  return guarded(error, error_size, [&] {
    const int size = group->context->size;
    std::vector<size_t> elements(bytes_per_rank, bytes_per_rank + size);
    gloo::AllgathervOptions opts(group->context);
    // Gloo reads the input only; its interface takes a mutable pointer.
    opts.setInput(const_cast<uint8_t*>(static_cast<const uint8_t*>(in)), elements[group->context->rank]);
    opts.setOutput(static_cast<uint8_t*>(out), elements);
    gloo::allgatherv(opts);
  });
}

BADAM_GLOO_EXPORT int badam_gloo_all_to_all_v(void* g, const void* in, const size_t* in_bytes, void* out,
                                              const size_t* out_bytes, char* error, size_t error_size) {
  auto* group = static_cast<Group*>(g);
  return guarded(error, error_size, [&] {
    const int size = group->context->size;
    std::vector<int64_t> sent(in_bytes, in_bytes + size), received(out_bytes, out_bytes + size);
    gloo::AlltoallvOptions opts(group->context);
    opts.setInput(const_cast<uint8_t*>(static_cast<const uint8_t*>(in)), sent);
    opts.setOutput(static_cast<uint8_t*>(out), received);
    gloo::alltoallv(opts);
  });
}

BADAM_GLOO_EXPORT int badam_gloo_broadcast(void* g, void* data, size_t bytes, int root, char* error, size_t error_size) {
  auto* group = static_cast<Group*>(g);
  return guarded(error, error_size, [&] {
    gloo::BroadcastOptions opts(group->context);
    if (group->context->rank == root) opts.setInput(static_cast<uint8_t*>(data), bytes);
    opts.setOutput(static_cast<uint8_t*>(data), bytes);
    opts.setRoot(root);
    gloo::broadcast(opts);
  });
}

BADAM_GLOO_EXPORT int badam_gloo_barrier(void* g, char* error, size_t error_size) {
  auto* group = static_cast<Group*>(g);
  return guarded(error, error_size, [&] {
    gloo::BarrierOptions opts(group->context);
    gloo::barrier(opts);
  });
}

BADAM_GLOO_EXPORT void badam_gloo_destroy(void* g) { delete static_cast<Group*>(g); }
