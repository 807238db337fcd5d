#include "process_group.h"

#include "nccl_loader.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace badam::dist {
namespace {

std::vector<char> text(const std::string& s) { return {s.begin(), s.end()}; }
std::string str(const std::vector<char>& v) { return {v.begin(), v.end()}; }

/** 4000 ms -> "4", 2500 ms -> "2.5". */
std::string seconds_text(std::chrono::milliseconds ms) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", static_cast<double>(ms.count()) / 1000.0);
  return buf;
}

}  // namespace

// --- rendezvous -----------------------------------------------------------------------------------------

Rendezvous::Rendezvous(const GroupOptions& options) : options_(options) {
  if (options.size < 1 || options.rank < 0 || options.rank >= options.size) {
    throw std::invalid_argument("RANK must be in [0, WORLD_SIZE): got RANK " + std::to_string(options.rank) +
                                " and WORLD_SIZE " + std::to_string(options.size));
  }
  // Rank 0 hosts the store on MASTER_PORT of every interface (MASTER_ADDR is how the others reach it).
  if (options.rank == 0) server_ = std::make_unique<TcpStoreServer>("", options.master_port);
  client_ = std::make_unique<TcpStoreClient>(options.master_addr, options.master_port, options.rank, options.timeout);
  watcher_client_ = std::make_unique<TcpStoreClient>(options.master_addr, options.master_port, -1, options.timeout);
  watcher_ = std::thread([this] { watch(); });
}

Rendezvous::~Rendezvous() {
  closing_ = true;
  if (watcher_client_) watcher_client_->interrupt();
  if (watcher_.joinable()) watcher_.join();
}

void Rendezvous::watch() {
  std::string failure;
  try {
    failure = str(watcher_client_->get(kFailedKey, std::chrono::milliseconds(-1)));
  } catch (const std::exception&) {
    if (closing_) return;
    failure = "rank 0 exited or was killed (it hosts the rendezvous store at " + watcher_client_->address() +
              ", whose connection closed)";
  }
  if (closing_) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    failure_ = failure;
  }
  if (!options_.exit_on_peer_failure) return;
  // Give this rank the chance to stop by itself (its next collective with the failed rank fails at once and
  // the program reports it); if it is still here after the grace period it is blocked, so stop it.
  const auto grace = std::min<std::chrono::milliseconds>(options_.timeout / 2, std::chrono::seconds(30));
  const auto until = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < until) {
    if (closing_) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (closing_) return;
  std::fprintf(stderr, "rank %d: stopping: %s\n", options_.rank, failure.c_str());
  std::fflush(stderr);
  ::_exit(1);
}

std::string Rendezvous::peer_failure() {
  std::lock_guard<std::mutex> lock(mutex_);
  return failure_;
}

void Rendezvous::mark_progress(int64_t step) {
  client_->set("badam/progress/" + std::to_string(options_.rank), text(std::to_string(step)));
}

std::string Rendezvous::diagnose() {
  const std::string known = peer_failure();
  if (!known.empty()) return known;
  try {
    // A fresh connection: a timed-out wait spoils the one it ran on. A rank that just died may be published
    // a moment after this rank's collective failed, so wait a second for it.
    {
      TcpStoreClient probe(options_.master_addr, options_.master_port, -1, std::chrono::seconds(2));
      try {
        return str(probe.get(kFailedKey, std::chrono::seconds(1)));
      } catch (const std::exception&) {
        // Nobody failed (or the store is gone: the next connection says so).
      }
    }
    TcpStoreClient probe(options_.master_addr, options_.master_port, -1, std::chrono::seconds(2));
    // Nobody exited: every rank whose collective failed says so, and the one that never does is the one the
    // others were waiting for (stuck, or slower than the timeout allows).
    probe.set("badam/stalled/" + std::to_string(options_.rank), text("1"));
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    std::string missing;
    for (int r = 0; r < options_.size; r++) {
      if (!probe.check("badam/stalled/" + std::to_string(r))) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
    }
    std::string progress;
    for (int r = 0; r < options_.size; r++) {
      const std::string key = "badam/progress/" + std::to_string(r);
      progress += (r > 0 ? ", " : "") + std::string("rank ") + std::to_string(r) + " " +
                  (probe.check(key) ? "at step " + str(probe.get(key, std::chrono::seconds(2))) : "not started");
    }
    if (!missing.empty()) {
      return "rank(s) " + missing + " did not reach the collective the others waited " +
             seconds_text(options_.timeout) +
             " s for (stuck, or slower than the timeout, --ddp_timeout, allows); progress: " + progress;
    }
    return "no rank is known to have exited; progress: " + progress + " (a rank behind the others may be stuck)";
  } catch (const std::exception& e) {
    return std::string("the rendezvous store cannot be reached (") + e.what() + "): rank 0 may be gone";
  }
}

void Rendezvous::close() {
  if (closed_) return;
  closed_ = true;
  closing_ = true;
  watcher_client_->interrupt();
  if (watcher_.joinable()) watcher_.join();
  if (options_.rank != 0) {
    try {
      client_->add("badam/leaving", 1);
    } catch (...) {
      // The store is gone: nobody is left to say goodbye to.
    }
    client_->bye();
    return;
  }
  // Rank 0 keeps the store up until every other rank has left, so none of them sees it vanish.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  try {
    while (client_->add("badam/leaving", 0) < options_.size - 1 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  } catch (...) {
  }
  client_->bye();
}

// --- the communication thread -----------------------------------------------------------------------------

struct CommThread::Task {
  std::function<void()> op;
  std::mutex mutex;
  std::condition_variable cv;
  bool done = false;
  std::exception_ptr error;
};

namespace {
class TaskWork final : public Work {
 public:
  explicit TaskWork(std::shared_ptr<void> task, std::function<void()> wait) : task_(std::move(task)), wait_(std::move(wait)) {}
  void wait() override { wait_(); }

 private:
  std::shared_ptr<void> task_;
  std::function<void()> wait_;
};
}  // namespace

CommThread::CommThread() : thread_([this] { loop(); }) {}

CommThread::~CommThread() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::shared_ptr<Work> CommThread::submit(std::function<void()> op) {
  auto task = std::make_shared<Task>();
  task->op = std::move(op);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(task);
  }
  cv_.notify_all();
  return std::make_shared<TaskWork>(task, [task] {
    std::unique_lock<std::mutex> lock(task->mutex);
    task->cv.wait(lock, [&] { return task->done; });
    if (task->error) std::rethrow_exception(task->error);
  });
}

void CommThread::loop() {
  for (;;) {
    std::shared_ptr<Task> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      task = queue_.front();
      queue_.pop_front();
    }
    std::exception_ptr error;
    if (!failure_.empty()) {
      error = std::make_exception_ptr(std::runtime_error("an earlier collective failed: " + failure_));
    } else {
      try {
        task->op();
      } catch (const std::exception& e) {
        failure_ = e.what();
        error = std::current_exception();
      } catch (...) {
        failure_ = "unknown error";
        error = std::current_exception();
      }
    }
    {
      std::lock_guard<std::mutex> lock(task->mutex);
      task->done = true;
      task->error = error;
    }
    task->cv.notify_all();
  }
}

bool nccl_available(std::string* why) {
  std::string error;
  if (nccl::load(&error) != nullptr) return true;
  if (why != nullptr) *why = error;
  return false;
}

#ifndef BADAM_WITH_CUDA
std::unique_ptr<ProcessGroup> make_nccl_group(const GroupOptions&, std::shared_ptr<Rendezvous>, Device&) {
  throw std::runtime_error("this build of @badam/cuda has no CUDA device, so no NCCL: use the gloo backend on the CPU device");
}
#endif

}  // namespace badam::dist
