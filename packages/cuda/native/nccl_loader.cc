#include "nccl_loader.h"

#include <dlfcn.h>
#include <glob.h>

#include <cstdlib>
#include <mutex>
#include <vector>

namespace badam::nccl {

namespace {
Api api;
bool loaded = false;
std::string load_error;
std::once_flag once;

template <typename F>
bool bind(void* lib, const char* name, F* out, std::string* error) {
  void* sym = dlsym(lib, name);
  if (sym == nullptr) {
    *error = std::string("libnccl.so.2 has no symbol ") + name + ": NCCL 2.12 or newer is needed";
    return false;
  }
  *out = reinterpret_cast<F>(sym);
  return true;
}

/** Folders that may hold libnccl.so.2 off the loader's path: NCCL_HOME, CUDA, and PyTorch's wheels. */
std::vector<std::string> candidate_folders() {
  std::vector<std::string> dirs;
  for (const char* var : {"NCCL_HOME", "CUDA_HOME", "CUDA_PATH"}) {
    const char* home = std::getenv(var);
    if (home != nullptr && *home != '\0') {
      dirs.push_back(std::string(home) + "/lib");
      dirs.push_back(std::string(home) + "/lib64");
    }
  }
  dirs.emplace_back("/usr/local/cuda/lib64");
  // pip's nvidia-nccl-cu12 / -cu13 (what `pip install torch` brings): <site-packages>/nvidia/nccl/lib.
  std::vector<std::string> patterns;
  for (const char* var : {"VIRTUAL_ENV", "CONDA_PREFIX"}) {
    const char* prefix = std::getenv(var);
    if (prefix != nullptr && *prefix != '\0') patterns.push_back(std::string(prefix) + "/lib/python3*/site-packages/nvidia/nccl/lib");
  }
  if (const char* home = std::getenv("HOME")) patterns.push_back(std::string(home) + "/.local/lib/python3*/site-packages/nvidia/nccl/lib");
  patterns.emplace_back("/usr/local/lib/python3*/dist-packages/nvidia/nccl/lib");
  patterns.emplace_back("/usr/local/lib/python3*/site-packages/nvidia/nccl/lib");
  patterns.emplace_back("/usr/lib/python3/dist-packages/nvidia/nccl/lib");
  for (const auto& pattern : patterns) {
    glob_t found{};
    if (glob(pattern.c_str(), 0, nullptr, &found) == 0) {
      for (size_t i = 0; i < found.gl_pathc; i++) dirs.emplace_back(found.gl_pathv[i]);
    }
    globfree(&found);
  }
  return dirs;
}

void do_load() {
  std::string why;
  void* lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* e = dlerror();
    why = e != nullptr ? e : "not found";
    for (const auto& dir : candidate_folders()) {
      lib = dlopen((dir + "/libnccl.so.2").c_str(), RTLD_NOW | RTLD_LOCAL);
      if (lib != nullptr) break;
      dlerror();
    }
  }
  if (lib == nullptr) {
    load_error = "NCCL could not be loaded (dlopen libnccl.so.2: " + why +
                 "); install NCCL (the CUDA installation's, or `pip install nvidia-nccl-cu12`) or add its folder to LD_LIBRARY_PATH";
    return;
  }
  std::string error;
  if (!bind(lib, "ncclGetVersion", &api.get_version, &error) || !bind(lib, "ncclGetUniqueId", &api.get_unique_id, &error) ||
      !bind(lib, "ncclCommInitRank", &api.comm_init_rank, &error) || !bind(lib, "ncclCommDestroy", &api.comm_destroy, &error) ||
      !bind(lib, "ncclCommAbort", &api.comm_abort, &error) ||
      !bind(lib, "ncclCommGetAsyncError", &api.comm_get_async_error, &error) ||
      !bind(lib, "ncclGetErrorString", &api.get_error_string, &error) || !bind(lib, "ncclBroadcast", &api.broadcast, &error) ||
      !bind(lib, "ncclReduce", &api.reduce, &error) || !bind(lib, "ncclAllGather", &api.all_gather, &error) ||
      !bind(lib, "ncclAllReduce", &api.all_reduce, &error) || !bind(lib, "ncclGroupStart", &api.group_start, &error) ||
      !bind(lib, "ncclGroupEnd", &api.group_end, &error)) {
    load_error = error;
    return;
  }
  loaded = true;
}
}  // namespace

const Api* load(std::string* error) {
  std::call_once(once, do_load);
  if (!loaded && error != nullptr) *error = load_error;
  return loaded ? &api : nullptr;
}

}  // namespace badam::nccl
