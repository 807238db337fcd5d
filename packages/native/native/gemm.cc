// Blocked SGEMM in the GotoBLAS style: B is packed into K x NR panels, A into MR x K panels, and a
// register-blocked micro-kernel computes MR x NR tiles. The micro-kernel is chosen at run time:
// AVX-512 (8 x 32), AVX2 + FMA (6 x 16), or portable C++. Large products are split across a small
// persistent thread pool by blocks of rows of C.
#include "gemm.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define BADAM_X86 1
#endif

namespace badam {
namespace {

constexpr int64_t KC = 256;  // depth of a packed panel
constexpr int64_t MC = 96;   // rows of A per packed block (a multiple of 8 and 6)
constexpr int64_t NC = 4096; // columns of B per packed block

inline float at(const float* x, int64_t ld, bool trans, int64_t row, int64_t col) {
  return trans ? x[col * ld + row] : x[row * ld + col];
}

// ---- micro-kernels: C[mr x nr] (+)= Ap[kc x MR] * Bp[kc x NR]; results go to a tile, the caller stores them.

struct Kernel {
  int mr;
  int nr;
  void (*run)(int64_t kc, const float* ap, const float* bp, float* tile);  // tile is mr x nr, overwritten
  const char* name;
};

void kernel_scalar(int64_t kc, const float* ap, const float* bp, float* tile) {
  constexpr int MR = 4, NR = 16;
  float acc[MR][NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    for (int i = 0; i < MR; ++i) {
      const float av = ap[p * MR + i];
      for (int j = 0; j < NR; ++j) acc[i][j] += av * bp[p * NR + j];
    }
  }
  std::memcpy(tile, acc, sizeof(acc));
}

#ifdef BADAM_X86
__attribute__((target("avx2,fma"))) void kernel_avx2(int64_t kc, const float* ap, const float* bp, float* tile) {
  constexpr int MR = 6;
  __m256 c[MR][2];
  for (int i = 0; i < MR; ++i) c[i][0] = c[i][1] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_loadu_ps(bp + p * 16);
    const __m256 b1 = _mm256_loadu_ps(bp + p * 16 + 8);
    for (int i = 0; i < MR; ++i) {
      const __m256 a = _mm256_broadcast_ss(ap + p * MR + i);
      c[i][0] = _mm256_fmadd_ps(a, b0, c[i][0]);
      c[i][1] = _mm256_fmadd_ps(a, b1, c[i][1]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    _mm256_storeu_ps(tile + i * 16, c[i][0]);
    _mm256_storeu_ps(tile + i * 16 + 8, c[i][1]);
  }
}

__attribute__((target("avx512f"))) void kernel_avx512(int64_t kc, const float* ap, const float* bp, float* tile) {
  constexpr int MR = 8;
  __m512 c[MR][2];
  for (int i = 0; i < MR; ++i) c[i][0] = c[i][1] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_loadu_ps(bp + p * 32);
    const __m512 b1 = _mm512_loadu_ps(bp + p * 32 + 16);
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(ap[p * MR + i]);
      c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
      c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    _mm512_storeu_ps(tile + i * 32, c[i][0]);
    _mm512_storeu_ps(tile + i * 32 + 16, c[i][1]);
  }
}
#endif

const Kernel& kernel() {
  static const Kernel chosen = [] {
#ifdef BADAM_X86
    __builtin_cpu_init();
    const char* force = std::getenv("BADAM_GEMM_KERNEL");
    const bool allow512 = !force || std::strcmp(force, "avx512") == 0;
    const bool allow2 = !force || std::strcmp(force, "avx512") == 0 || std::strcmp(force, "avx2") == 0;
    if (allow512 && __builtin_cpu_supports("avx512f")) return Kernel{8, 32, kernel_avx512, "avx512"};
    if (allow2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Kernel{6, 16, kernel_avx2, "avx2"};
#endif
    return Kernel{4, 16, kernel_scalar, "scalar"};
  }();
  return chosen;
}

// ---- packing (zero-padded to whole panels)

void pack_b(const float* b, int64_t ldb, bool trans, int64_t pc, int64_t kc, int64_t jc, int64_t nc, int nr, float* out) {
  for (int64_t j0 = 0; j0 < nc; j0 += nr) {
    const int64_t cols = std::min<int64_t>(nr, nc - j0);
    for (int64_t p = 0; p < kc; ++p) {
      float* dst = out + (j0 / nr) * kc * nr + p * nr;
      for (int64_t j = 0; j < cols; ++j) dst[j] = at(b, ldb, trans, pc + p, jc + j0 + j);
      for (int64_t j = cols; j < nr; ++j) dst[j] = 0.0f;
    }
  }
}

void pack_a(const float* a, int64_t lda, bool trans, int64_t ic, int64_t mc, int64_t pc, int64_t kc, int mr, float* out) {
  for (int64_t i0 = 0; i0 < mc; i0 += mr) {
    const int64_t rows = std::min<int64_t>(mr, mc - i0);
    float* panel = out + (i0 / mr) * kc * mr;
    for (int64_t p = 0; p < kc; ++p) {
      for (int64_t i = 0; i < rows; ++i) panel[p * mr + i] = at(a, lda, trans, ic + i0 + i, pc + p);
      for (int64_t i = rows; i < mr; ++i) panel[p * mr + i] = 0.0f;
    }
  }
}

// ---- a small persistent pool: run(n, f) calls f(0..n-1) spread over the threads, the caller included.

class Pool {
 public:
  explicit Pool(int threads) { resize(threads); }
  ~Pool() { stop(); }
  int size() const { return static_cast<int>(workers_.size()) + 1; }
  void resize(int threads) {
    std::lock_guard<std::mutex> serial(serial_);
    stop();
    stopping_ = false;
    for (int t = 1; t < std::max(1, threads); ++t) workers_.emplace_back([this] { loop(); });
  }
  void run(int64_t n, const std::function<void(int64_t)>& f) {
    if (workers_.empty() || n <= 1) {
      for (int64_t i = 0; i < n; ++i) f(i);
      return;
    }
    // One job at a time: two threads multiplying at once (e.g. Node worker_threads sharing this process's
    // addon, hence this pool) would otherwise overwrite each other's job.
    std::lock_guard<std::mutex> serial(serial_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &f;
      total_ = n;
      next_.store(0);
      pending_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    wake_.notify_all();
    work();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  void work() {
    for (int64_t i = next_.fetch_add(1); i < total_; i = next_.fetch_add(1)) (*job_)(i);
  }
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
      }
      work();
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }
  std::vector<std::thread> workers_;
  std::mutex serial_;  // held by run() and resize(): one job, or one resize, at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t)>* job_ = nullptr;
  std::atomic<int64_t> next_{0};
  int64_t total_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
};

int default_threads() {
  if (const char* env = std::getenv("BADAM_THREADS")) {
    const int t = std::atoi(env);
    if (t > 0) return t;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

Pool& pool() {
  static Pool p(default_threads());
  return p;
}

}  // namespace

const char* sgemm_kernel_name() { return kernel().name; }
int sgemm_threads() { return pool().size(); }
void set_sgemm_threads(int threads) { pool().resize(threads); }

void sgemm_reference(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, bool trans_a, const float* b,
                     int64_t ldb, bool trans_b, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0.0;
      for (int64_t p = 0; p < k; ++p) sum += static_cast<double>(at(a, lda, trans_a, i, p)) * at(b, ldb, trans_b, p, j);
      c[i * ldc + j] = static_cast<float>(sum);
    }
  }
}

void sgemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, bool trans_a, const float* b, int64_t ldb,
           bool trans_b, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    return;
  }
  const Kernel& ker = kernel();
  const int mr = ker.mr, nr = ker.nr;
  const bool parallel = m * n * k >= (int64_t{1} << 18) && m > MC / 2;
  std::vector<float> bpack(static_cast<size_t>(((std::min(n, NC) + nr - 1) / nr) * nr * std::min(k, KC)));
  for (int64_t jc = 0; jc < n; jc += NC) {
    const int64_t nc = std::min(NC, n - jc);
    for (int64_t pc = 0; pc < k; pc += KC) {
      const int64_t kc = std::min(KC, k - pc);
      pack_b(b, ldb, trans_b, pc, kc, jc, nc, nr, bpack.data());
      const int64_t row_blocks = (m + MC - 1) / MC;
      auto block = [&](int64_t rb) {
        thread_local std::vector<float> apack;
        thread_local std::vector<float> tile;
        const int64_t ic = rb * MC;
        const int64_t mc = std::min(MC, m - ic);
        apack.resize(static_cast<size_t>(((mc + mr - 1) / mr) * mr * kc));
        tile.resize(static_cast<size_t>(mr * nr));
        pack_a(a, lda, trans_a, ic, mc, pc, kc, mr, apack.data());
        for (int64_t jr = 0; jr < nc; jr += nr) {
          const int64_t cols = std::min<int64_t>(nr, nc - jr);
          const float* bp = bpack.data() + (jr / nr) * kc * nr;
          for (int64_t ir = 0; ir < mc; ir += mr) {
            const int64_t rows = std::min<int64_t>(mr, mc - ir);
            ker.run(kc, apack.data() + (ir / mr) * kc * mr, bp, tile.data());
            for (int64_t i = 0; i < rows; ++i) {
              float* dst = c + (ic + ir + i) * ldc + jc + jr;
              const float* src = tile.data() + i * nr;
              if (pc == 0) {
                std::memcpy(dst, src, static_cast<size_t>(cols) * sizeof(float));
              } else {
                for (int64_t j = 0; j < cols; ++j) dst[j] += src[j];
              }
            }
          }
        }
      };
      if (parallel) {
        pool().run(row_blocks, block);
      } else {
        for (int64_t rb = 0; rb < row_blocks; ++rb) block(rb);
      }
    }
  }
}

}  // namespace badam
