// A process group: the ranks of one multi-process run and the collectives BAdam's sharded training needs,
// from an existing library (Gloo between CPU processes, NCCL between GPUs), never home-made networking. The
// rendezvous (the TCP store rank 0 hosts) is shared by both, and so is failure detection: a rank whose
// connection to the store closes without a goodbye is published as failed, and every other rank learns it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "device.h"
#include "tcp_store.h"

namespace badam::dist {

/** Who this process is in the run, and where the rendezvous store is (torchrun's environment). */
struct GroupOptions {
  int rank = 0;
  int size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  /** Every collective and the rendezvous fail after this long (LLaMA-Factory's --ddp_timeout). */
  std::chrono::milliseconds timeout{1800000};
  /**
   * When another rank is published as failed and this process has not stopped by itself within the
   * grace period (it may be blocked in a collective with a live peer), print why and exit with code 1,
   * as torchrun's agent stops the surviving workers.
   */
  bool exit_on_peer_failure = true;
};

/**
 * The store connection of one rank, its server on rank 0, and a thread watching for another rank's failure.
 * Also records this rank's progress (a step number) so that a failure message can say who was behind.
 */
class Rendezvous {
 public:
  explicit Rendezvous(const GroupOptions& options);
  ~Rendezvous();
  TcpStoreClient& store() { return *client_; }
  const GroupOptions& options() const { return options_; }
  /** Why the run failed, when the watcher saw another rank fail (empty otherwise). */
  std::string peer_failure();
  /** Publishes this rank's progress (e.g. the optimizer step it is on). */
  void mark_progress(int64_t step);
  /**
   * What is known about the other ranks when a collective fails: the failed rank the store published, or
   * each rank's last progress. Never throws (the store may be gone).
   */
  std::string diagnose();
  /** A clean end: waits for every rank to say goodbye (rank 0 keeps the store up until they have). */
  void close();

 private:
  void watch();
  GroupOptions options_;
  std::unique_ptr<TcpStoreServer> server_;
  std::unique_ptr<TcpStoreClient> client_;
  std::unique_ptr<TcpStoreClient> watcher_client_;
  std::thread watcher_;
  std::mutex mutex_;
  std::string failure_;
  std::atomic<bool> closing_{false};
  bool closed_ = false;
};

/** One collective in flight; wait() returns when it is done and rethrows its failure. */
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
};

/** The collectives, on the memory of the device the group was made for (host memory for Gloo). */
class ProcessGroup {
 public:
  explicit ProcessGroup(std::shared_ptr<Rendezvous> rendezvous) : rendezvous_(std::move(rendezvous)) {}
  virtual ~ProcessGroup() = default;
  int rank() const { return rendezvous_->options().rank; }
  int size() const { return rendezvous_->options().size; }
  Rendezvous& rendezvous() { return *rendezvous_; }
  virtual std::string backend() const = 0;

  /** `out` = the concatenation of every rank's `in`, rank r giving `bytes[r]` bytes (device memory). */
  virtual std::shared_ptr<Work> all_gather_v(const void* in, void* out, std::vector<size_t> bytes) = 0;
  /**
   * `acc[i] += sum over ranks r, in rank order, of rank r's full[offset + i]` for this rank's range
   * [offset, offset + counts[rank]) of the fp32 `full` (device memory): a reduce-scatter, deterministic for
   * a fixed number of ranks.
   */
  virtual std::shared_ptr<Work> reduce_scatter_add(const float* full, float* acc, std::vector<size_t> counts) = 0;
  /** Host memory: `out` = every rank's `bytes` bytes of `in`, by rank. */
  virtual void all_gather_host(const void* in, void* out, size_t bytes) = 0;
  /** Host memory: `data` becomes rank `root`'s. */
  virtual void broadcast_host(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;

 protected:
  std::shared_ptr<Rendezvous> rendezvous_;
};

/**
 * A thread that runs collectives one after the other, in the order they were submitted (the same order on
 * every rank), so that a layer's gather runs while the caller computes. After a failure every later
 * collective fails with the same message: a group that failed once is not used again.
 */
class CommThread {
 public:
  CommThread();
  ~CommThread();
  std::shared_ptr<Work> submit(std::function<void()> op);
  /** Runs `op` on the thread and waits for it (ordered after everything submitted before). */
  void run(std::function<void()> op) { submit(std::move(op))->wait(); }

 private:
  struct Task;
  void loop();
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Task>> queue_;
  bool stop_ = false;
  std::string failure_;
  std::thread thread_;
};

/** Whether this build can make a Gloo group here, and if not, why. */
bool gloo_available(std::string* why);
/** Whether NCCL can be loaded here (libnccl.so.2), and if not, why. */
bool nccl_available(std::string* why);

/** The Gloo group of `options` over TCP (a CPU device's memory); throws saying what is missing. */
std::unique_ptr<ProcessGroup> make_gloo_group(const GroupOptions& options, std::shared_ptr<Rendezvous> rendezvous);
/** The NCCL group of `options` on `device` (a CUDA device); throws in a build without CUDA. */
std::unique_ptr<ProcessGroup> make_nccl_group(const GroupOptions& options, std::shared_ptr<Rendezvous> rendezvous,
                                              Device& device);

}  // namespace badam::dist
