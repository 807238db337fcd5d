// The Gloo process group: libbadam_gloo.so (beside this addon, built where Gloo is found) opened with
// dlopen, its C functions (collectives_gloo_api.h) called on a communication thread, so that a layer's
// gather runs while the caller computes. Gloo moves host memory: this group serves the CPU device.
#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "collectives_gloo_api.h"
#include "process_group.h"

namespace badam::dist {
namespace {

struct GlooApi {
  badam_gloo_connect_fn connect;
  badam_gloo_all_gather_v_fn all_gather_v;
  badam_gloo_all_to_all_v_fn all_to_all_v;
  badam_gloo_broadcast_fn broadcast;
  badam_gloo_barrier_fn barrier;
  badam_gloo_destroy_fn destroy;
};

GlooApi api;
bool loaded = false;
std::string load_error;
std::once_flag once;

/** The folder of this addon (libbadam_gloo.so is built and packed beside it). */
std::string addon_folder() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&addon_folder), &info) == 0 || info.dli_fname == nullptr) return ".";
  std::string path = info.dli_fname;
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

template <typename F>
bool bind(void* lib, const char* name, F* out) {
  void* sym = dlsym(lib, name);
  if (sym == nullptr) {
    load_error = std::string("libbadam_gloo.so has no symbol ") + name + ": rebuild @badam/cuda (pnpm build)";
    return false;
  }
  *out = reinterpret_cast<F>(sym);
  return true;
}

void do_load() {
  const std::string folder = addon_folder();
  const std::string path = folder + "/libbadam_gloo.so";
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* why = dlerror();
    std::string reason = why != nullptr ? why : "not found";
    const std::string note = folder + "/gloo-unavailable.txt";
    if (FILE* f = std::fopen(note.c_str(), "r")) {
      char buf[512] = {0};
      const size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
      std::fclose(f);
      reason = std::string(buf, n);
      while (!reason.empty() && reason.back() == '\n') reason.pop_back();
      load_error = "this @badam/cuda was built without Gloo (" + reason +
                   "); install Gloo (Debian/Ubuntu: apt-get install libgloo-dev) and rebuild it (pnpm build, or npm rebuild @badam/cuda)";
      return;
    }
    load_error = "Gloo could not be loaded (" + reason +
                 "); install Gloo's library (Debian/Ubuntu: apt-get install libgloo0, or libgloo-dev to build)";
    return;
  }
  badam_gloo_abi_version_fn version = nullptr;
  if (!bind(lib, "badam_gloo_abi_version", &version)) return;
  if (version() != BADAM_GLOO_ABI_VERSION) {
    load_error = "libbadam_gloo.so is of another build of @badam/cuda (ABI " + std::to_string(version()) + ", expected " +
                 std::to_string(BADAM_GLOO_ABI_VERSION) + "); rebuild it (pnpm build)";
    return;
  }
  if (!bind(lib, "badam_gloo_connect", &api.connect) || !bind(lib, "badam_gloo_all_gather_v", &api.all_gather_v) ||
      !bind(lib, "badam_gloo_all_to_all_v", &api.all_to_all_v) || !bind(lib, "badam_gloo_broadcast", &api.broadcast) ||
      !bind(lib, "badam_gloo_barrier", &api.barrier) || !bind(lib, "badam_gloo_destroy", &api.destroy)) {
    return;
  }
  loaded = true;
}

const GlooApi& require_api() {
  std::call_once(once, do_load);
  if (!loaded) throw std::runtime_error(load_error);
  return api;
}

void copy_error(char* error, size_t size, const std::string& message) {
  std::strncpy(error, message.c_str(), size - 1);
  error[size - 1] = '\0';
}

// The rendezvous store as Gloo's C callbacks see it.
int store_set(void* self, const char* key, const char* data, size_t size, char* error, size_t error_size) {
  try {
    static_cast<TcpStoreClient*>(self)->set(key, std::vector<char>(data, data + size));
    return 0;
  } catch (const std::exception& e) {
    copy_error(error, error_size, e.what());
    return 1;
  }
}

int store_get(void* self, const char* key, char** data, size_t* size, long timeout_ms, char* error, size_t error_size) {
  try {
    const std::vector<char> value = static_cast<TcpStoreClient*>(self)->get(key, std::chrono::milliseconds(timeout_ms));
    *data = static_cast<char*>(std::malloc(value.empty() ? 1 : value.size()));
    if (!value.empty()) std::memcpy(*data, value.data(), value.size());
    *size = value.size();
    return 0;
  } catch (const std::exception& e) {
    copy_error(error, error_size, e.what());
    return 1;
  }
}

class GlooGroup final : public ProcessGroup {
 public:
  GlooGroup(const GroupOptions& options, std::shared_ptr<Rendezvous> rendezvous)
      : ProcessGroup(std::move(rendezvous)), api_(require_api()) {
    // Gloo's TCP transport binds the address the other ranks reach this machine by (GLOO_SOCKET_IFNAME, as
    // PyTorch reads it, names an interface instead).
    const char* iface = std::getenv("GLOO_SOCKET_IFNAME");
    const std::string host = local_address_toward(options.master_addr, options.master_port);
    if ((iface == nullptr || *iface == '\0') && host.empty()) {
      throw std::runtime_error("cannot find the local address that reaches MASTER_ADDR " + options.master_addr +
                               "; set GLOO_SOCKET_IFNAME to the network interface to use");
    }
    badam_gloo_store store{&rendezvous_->store(), store_set, store_get};
    char error[1024] = {0};
    group_ = api_.connect(options.rank, options.size, host.c_str(), iface != nullptr ? iface : "", &store,
                          static_cast<long>(options.timeout.count()), error, sizeof(error));
    if (group_ == nullptr) throw std::runtime_error(std::string("Gloo rendezvous failed: ") + error);
  }
  ~GlooGroup() override {
    comm_.reset();  // finishes what is queued first
    if (group_ != nullptr) api_.destroy(group_);
  }

  std::string backend() const override { return "gloo"; }

  std::shared_ptr<Work> all_gather_v(const void* in, void* out, std::vector<size_t> bytes) override {
    return comm_->submit([this, in, out, bytes = std::move(bytes)] {
      char error[1024] = {0};
      if (api_.all_gather_v(group_, in, out, bytes.data(), error, sizeof(error)) != 0) fail("all-gather", error);
    });
  }

  std::shared_ptr<Work> reduce_scatter_add(const float* full, float* acc, std::vector<size_t> counts) override {
    return comm_->submit([this, full, acc, counts = std::move(counts)] {
      const int n = size();
      const size_t mine = counts[rank()];
      // Every rank sends rank r its range of `full`; this rank gets its range from every rank, by rank.
      std::vector<size_t> sent(n), received(n, mine * sizeof(float));
      for (int r = 0; r < n; r++) sent[r] = counts[r] * sizeof(float);
      std::vector<float> pieces(mine * n);
      char error[1024] = {0};
      if (api_.all_to_all_v(group_, full, sent.data(), pieces.data(), received.data(), error, sizeof(error)) != 0) {
        fail("reduce-scatter", error);
      }
      // The sum in rank order, the same on every rank and in every run with this many ranks.
      for (size_t i = 0; i < mine; i++) {
        float s = pieces[i];
        for (int r = 1; r < n; r++) s += pieces[r * mine + i];
        acc[i] += s;
      }
    });
  }

  void all_gather_host(const void* in, void* out, size_t bytes) override {
    comm_->run([this, in, out, bytes] {
      std::vector<size_t> each(size(), bytes);
      char error[1024] = {0};
      if (api_.all_gather_v(group_, in, out, each.data(), error, sizeof(error)) != 0) fail("all-gather", error);
    });
  }

  void broadcast_host(void* data, size_t bytes, int root) override {
    comm_->run([this, data, bytes, root] {
      char error[1024] = {0};
      if (api_.broadcast(group_, data, bytes, root, error, sizeof(error)) != 0) fail("broadcast", error);
    });
  }

  void barrier() override {
    comm_->run([this] {
      char error[1024] = {0};
      if (api_.barrier(group_, error, sizeof(error)) != 0) fail("barrier", error);
    });
  }

 private:
  [[noreturn]] void fail(const char* op, const char* error) {
    throw std::runtime_error(std::string("Gloo ") + op + " failed on rank " + std::to_string(rank()) + ": " + error);
  }
  const GlooApi& api_;
  void* group_ = nullptr;
  std::unique_ptr<CommThread> comm_ = std::make_unique<CommThread>();
};

}  // namespace

bool gloo_available(std::string* why) {
  try {
    require_api();
    return true;
  } catch (const std::exception& e) {
    if (why != nullptr) *why = e.what();
    return false;
  }
}

std::unique_ptr<ProcessGroup> make_gloo_group(const GroupOptions& options, std::shared_ptr<Rendezvous> rendezvous) {
  return std::make_unique<GlooGroup>(options, std::move(rendezvous));
}

}  // namespace badam::dist
