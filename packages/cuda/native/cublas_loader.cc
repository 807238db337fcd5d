#include "cublas_loader.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <vector>

namespace badam::cublas {

namespace {
Api api;
bool loaded = false;
std::string load_error;
std::once_flag once;

template <typename F>
bool bind(void* lib, const char* name, F* out, std::string* error) {
  void* sym = dlsym(lib, name);
  if (sym == nullptr) {
    *error = std::string("libcublas has no symbol ") + name + ": a cuBLAS from CUDA 12 or 13 is needed";
    return false;
  }
  *out = reinterpret_cast<F>(sym);
  return true;
}

void do_load() {
  void* lib = nullptr;
  std::string why;
  for (const char* name : {"libcublas.so.13", "libcublas.so.12", "libcublas.so"}) {
    lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (lib != nullptr) break;
    const char* e = dlerror();  // the first failure's reason is the one reported
    if (why.empty() && e != nullptr) why = e;
  }
  // Not on the loader's path (no ldconfig entry, no LD_LIBRARY_PATH): the CUDA toolkit's usual folders.
  if (lib == nullptr) {
    std::vector<std::string> dirs;
    for (const char* var : {"CUDA_HOME", "CUDA_PATH"}) {
      const char* home = std::getenv(var);
      if (home != nullptr && *home != '\0') dirs.push_back(std::string(home) + "/lib64");
    }
    for (const char* dir : {"/usr/local/cuda/lib64", "/usr/local/cuda-13.0/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"}) {
      dirs.emplace_back(dir);
    }
    for (const auto& dir : dirs) {
      // libcublas needs libcublasLt, which the loader would look for on its path only: load it from the same
      // folder first (an object already loaded satisfies the dependency by its soname).
      void* lt = dlopen((dir + "/libcublasLt.so.13").c_str(), RTLD_NOW | RTLD_LOCAL);
      lib = dlopen((dir + "/libcublas.so.13").c_str(), RTLD_NOW | RTLD_LOCAL);
      if (lib != nullptr) break;
      if (lt != nullptr) dlclose(lt);
      dlerror();
    }
  }
  if (lib == nullptr) {
    load_error = std::string("cuBLAS could not be loaded (dlopen libcublas.so.13: ") + (why.empty() ? "not found" : why) +
                 "); install CUDA 13's cuBLAS or add its directory to LD_LIBRARY_PATH";
    return;
  }
  std::string error;
  if (!bind(lib, "cublasCreate_v2", &api.create, &error) || !bind(lib, "cublasDestroy_v2", &api.destroy, &error) ||
      !bind(lib, "cublasSetStream_v2", &api.set_stream, &error) || !bind(lib, "cublasGetVersion_v2", &api.get_version, &error) ||
      !bind(lib, "cublasGemmEx", &api.gemm_ex, &error) || !bind(lib, "cublasSetWorkspace_v2", &api.set_workspace, &error)) {
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

const char* status_name(Status status) {
  switch (status) {
    case 0: return "CUBLAS_STATUS_SUCCESS";
    case 1: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case 3: return "CUBLAS_STATUS_ALLOC_FAILED";
    case 7: return "CUBLAS_STATUS_INVALID_VALUE";
    case 8: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case 11: return "CUBLAS_STATUS_MAPPING_ERROR";
    case 13: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case 14: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case 15: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case 16: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}

}  // namespace badam::cublas
