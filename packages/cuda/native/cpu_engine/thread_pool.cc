#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace badam::engine {
namespace {

thread_local bool inside_task = false;  // set while a thread runs a task: nested calls run inline

class Pool {
 public:
  explicit Pool(int threads) { start(threads); }
  ~Pool() { stop(); }
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int threads) {
    std::lock_guard<std::mutex> serial(serial_);
    stop();
    start(threads);
  }

  void run(int64_t tasks, const std::function<void(int64_t)>& body) {
    if (tasks <= 0) return;
    if (workers_.empty() || tasks == 1 || inside_task) {
      const bool was_inside = inside_task;
      inside_task = true;
      try {
        for (int64_t i = 0; i < tasks; ++i) body(i);
      } catch (...) {
        inside_task = was_inside;
        throw;
      }
      inside_task = was_inside;
      return;
    }
    // One job at a time: two JS threads (worker_threads) sharing this addon take turns.
    std::lock_guard<std::mutex> serial(serial_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &body;
      total_ = tasks;
      next_.store(0);
      error_ = nullptr;
      pending_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    wake_.notify_all();
    work();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void start(int threads) {
    stopping_ = false;
    for (int t = 1; t < std::max(1, threads); ++t) workers_.emplace_back([this] { loop(); });
  }

  void work() {
    inside_task = true;
    for (int64_t i = next_.fetch_add(1); i < total_; i = next_.fetch_add(1)) {
      try {
        (*job_)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
        next_.store(total_);  // hand out no more tasks
      }
    }
    inside_task = false;
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
  std::mutex serial_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t)>* job_ = nullptr;
  std::atomic<int64_t> next_{0};
  int64_t total_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

int default_threads() {
  if (const char* env = std::getenv("BADAM_THREADS")) {
    const int t = std::atoi(env);
    if (t > 0) return t;
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

Pool& pool() {
  static Pool p(default_threads());
  return p;
}

}  // namespace

int pool_threads() { return pool().size(); }
void set_pool_threads(int threads) { pool().resize(threads); }

void parallel_for(int64_t tasks, const std::function<void(int64_t)>& body) { pool().run(tasks, body); }

void parallel_range(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body,
                    int chunks_per_thread) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t wanted = static_cast<int64_t>(pool_threads()) * std::max(1, chunks_per_thread);
  int64_t chunk = (n + wanted - 1) / wanted;
  chunk = (chunk + grain - 1) / grain * grain;
  const int64_t chunks = (n + chunk - 1) / chunk;
  parallel_for(chunks, [&](int64_t c) { body(c * chunk, std::min(n, (c + 1) * chunk)); });
}

}  // namespace badam::engine
