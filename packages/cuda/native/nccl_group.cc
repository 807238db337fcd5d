// The NCCL process group (CUDA build only): the same collectives as the Gloo group, on device memory, on a
// communication stream of its own so that a layer's gather overlaps the device's compute stream. Every op
// waits for the compute stream's work so far (an event), runs on the communication stream, and its wait()
// makes the compute stream wait for it (another event): no host synchronisation on the hot path.
// Uneven shards use grouped broadcasts (all-gather-v) and grouped reduces (reduce-scatter-v). A watchdog
// thread aborts the communicator when an op has not finished within the timeout, as PyTorch's does, so a
// hung or dead rank turns into an error instead of a hang.
//
// Unverified: written and compiled without a GPU (no NCCL run has happened yet).
#include <cuda_runtime.h>

#include <cstring>
#include <stdexcept>

#include "nccl_loader.h"
#include "process_group.h"

namespace badam::dist {
namespace {

void cuda_ok(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

class NcclWork final : public Work {
 public:
  NcclWork(cudaEvent_t done, cudaStream_t compute) : done_(done), compute_(compute) {}
  ~NcclWork() override { cudaEventDestroy(done_); }
  void wait() override { cuda_ok(cudaStreamWaitEvent(compute_, done_, 0), "NCCL wait (cudaStreamWaitEvent)"); }

 private:
  cudaEvent_t done_;
  cudaStream_t compute_;
};

class NcclGroup final : public ProcessGroup {
 public:
  NcclGroup(const GroupOptions& options, std::shared_ptr<Rendezvous> rendezvous, Device& device)
      : ProcessGroup(std::move(rendezvous)), device_(device), timeout_(options.timeout) {
    compute_ = static_cast<cudaStream_t>(device.native_stream());
    if (compute_ == nullptr) throw std::runtime_error("NCCL moves GPU memory: open the CUDA device (the CPU device uses Gloo)");
    std::string why;
    api_ = nccl::load(&why);
    if (api_ == nullptr) throw std::runtime_error(why);
    // Rank 0 makes the communicator's id and hands it to the others through the rendezvous store.
    nccl::UniqueId id{};
    const std::string key = "badam/nccl/unique_id";
    if (options.rank == 0) {
      check(api_->get_unique_id(&id), "ncclGetUniqueId");
      rendezvous_->store().set(key, std::vector<char>(id.internal, id.internal + nccl::kUniqueIdBytes));
    } else {
      const std::vector<char> got = rendezvous_->store().get(key, options.timeout);
      if (got.size() != nccl::kUniqueIdBytes) throw std::runtime_error("NCCL rendezvous: the unique id from rank 0 has the wrong size");
      std::memcpy(id.internal, got.data(), nccl::kUniqueIdBytes);
    }
    check(api_->comm_init_rank(&comm_, options.size, id, options.rank), "ncclCommInitRank");
    cuda_ok(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    cuda_ok(cudaGetDevice(&ordinal_), "cudaGetDevice");
    watchdog_ = std::thread([this] { watch(); });
  }

  ~NcclGroup() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    if (watchdog_.joinable()) watchdog_.join();
    cudaStreamSynchronize(comm_stream_);
    if (comm_ != nullptr) api_->comm_destroy(comm_);
    cudaStreamDestroy(comm_stream_);
    if (scratch_ != nullptr) cudaFree(scratch_);
  }

  std::string backend() const override { return "nccl"; }

  std::shared_ptr<Work> all_gather_v(const void* in, void* out, std::vector<size_t> bytes) override {
    begin();
    check(api_->group_start(), "ncclGroupStart");
    size_t offset = 0;
    for (int r = 0; r < size(); r++) {
      char* dst = static_cast<char*>(out) + offset;
      check(api_->broadcast(r == rank() ? in : dst, dst, bytes[r], nccl::kUint8, r, comm_, comm_stream_), "ncclBroadcast");
      offset += bytes[r];
    }
    check(api_->group_end(), "ncclGroupEnd");
    return finish();
  }

  std::shared_ptr<Work> reduce_scatter_add(const float* full, float* acc, std::vector<size_t> counts) override {
    const size_t mine = counts[rank()];
    float* reduced = static_cast<float*>(scratch(mine * sizeof(float)));
    begin();
    check(api_->group_start(), "ncclGroupStart");
    size_t offset = 0;
    for (int r = 0; r < size(); r++) {
      check(api_->reduce(full + offset, reduced, counts[r], nccl::kFloat32, nccl::kSum, r, comm_, comm_stream_), "ncclReduce");
      offset += counts[r];
    }
    check(api_->group_end(), "ncclGroupEnd");
    auto work = finish();
    // acc += reduced, on the compute stream once the reduce is done (the next op's begin() orders the
    // scratch buffer's reuse after this add).
    work->wait();
    device_.accumulate(acc, DType::F32, reduced, DType::F32, mine, 1.0f);
    return work;
  }

  void all_gather_host(const void* in, void* out, size_t bytes) override {
    char* staging = static_cast<char*>(scratch(bytes * (size() + 1)));
    cuda_ok(cudaMemcpyAsync(staging, in, bytes, cudaMemcpyHostToDevice, compute_), "cudaMemcpyAsync");
    begin();
    check(api_->all_gather(staging, staging + bytes, bytes, nccl::kUint8, comm_, comm_stream_), "ncclAllGather");
    host_wait(finish());
    cuda_ok(cudaMemcpy(out, staging + bytes, bytes * size(), cudaMemcpyDeviceToHost), "cudaMemcpy");
  }

  void broadcast_host(void* data, size_t bytes, int root) override {
    char* staging = static_cast<char*>(scratch(bytes));
    cuda_ok(cudaMemcpyAsync(staging, data, bytes, cudaMemcpyHostToDevice, compute_), "cudaMemcpyAsync");
    begin();
    check(api_->broadcast(staging, staging, bytes, nccl::kUint8, root, comm_, comm_stream_), "ncclBroadcast");
    host_wait(finish());
    cuda_ok(cudaMemcpy(data, staging, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
  }

  void barrier() override {
    char* staging = static_cast<char*>(scratch(sizeof(float)));
    begin();
    check(api_->all_reduce(staging, staging, 1, nccl::kFloat32, nccl::kSum, comm_, comm_stream_), "ncclAllReduce");
    host_wait(finish());
  }

 private:
  void check(nccl::Result rc, const char* what) {
    if (rc != 0) throw std::runtime_error(std::string(what) + " failed on rank " + std::to_string(rank()) + ": " + api_->get_error_string(rc));
  }

  /** The communication stream waits for the compute stream's work so far. */
  void begin() {
    const std::string failed = failure();
    if (!failed.empty()) throw std::runtime_error("an earlier collective failed: " + failed);
    cudaEvent_t ready;
    cuda_ok(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "cudaEventCreate");
    cuda_ok(cudaEventRecord(ready, compute_), "cudaEventRecord");
    cuda_ok(cudaStreamWaitEvent(comm_stream_, ready, 0), "cudaStreamWaitEvent");
    cudaEventDestroy(ready);
  }

  /** An event at the end of the op on the communication stream, watched until it completes. */
  std::shared_ptr<NcclWork> finish() {
    cudaEvent_t done, watched;
    cuda_ok(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate");
    cuda_ok(cudaEventRecord(done, comm_stream_), "cudaEventRecord");
    cuda_ok(cudaEventCreateWithFlags(&watched, cudaEventDisableTiming), "cudaEventCreate");
    cuda_ok(cudaEventRecord(watched, comm_stream_), "cudaEventRecord");
    {
      std::lock_guard<std::mutex> lock(mutex_);
      pending_.push_back({watched, std::chrono::steady_clock::now() + timeout_});
    }
    return std::make_shared<NcclWork>(done, compute_);
  }

  /** Waits on the host for `work`, failing (not hanging) when the watchdog aborted the communicator. */
  void host_wait(const std::shared_ptr<NcclWork>& work) {
    work->wait();
    for (;;) {
      const cudaError_t state = cudaStreamQuery(compute_);
      if (state == cudaSuccess) return;
      if (state != cudaErrorNotReady) cuda_ok(state, "NCCL collective");
      const std::string failed = failure();
      if (!failed.empty()) throw std::runtime_error(failed);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  void* scratch(size_t bytes) {
    if (bytes > scratch_bytes_) {
      // Reallocated only when it grows; the streams are idle around it.
      cuda_ok(cudaStreamSynchronize(comm_stream_), "cudaStreamSynchronize");
      cuda_ok(cudaStreamSynchronize(compute_), "cudaStreamSynchronize");
      if (scratch_ != nullptr) cudaFree(scratch_);
      scratch_ = nullptr;
      cuda_ok(cudaMalloc(&scratch_, bytes), "cudaMalloc (collective scratch)");
      scratch_bytes_ = bytes;
    }
    return scratch_;
  }

  std::string failure() {
    std::lock_guard<std::mutex> lock(mutex_);
    return failure_;
  }

  void watch() {
    cudaSetDevice(ordinal_);  // the device is per thread: the events live on the group's
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) return;
        while (!pending_.empty() && cudaEventQuery(pending_.front().event) == cudaSuccess) {
          cudaEventDestroy(pending_.front().event);
          pending_.pop_front();
        }
        nccl::Result async = 0;
        api_->comm_get_async_error(comm_, &async);
        const bool late = !pending_.empty() && std::chrono::steady_clock::now() > pending_.front().deadline;
        if (failure_.empty() && ((async != 0 && async != nccl::kInProgress) || late)) {
          failure_ = late ? "an NCCL collective did not finish within the timeout (" + std::to_string(timeout_.count() / 1000) +
                                " s) on rank " + std::to_string(rank()) + ": " + rendezvous_->diagnose()
                          : std::string("NCCL failed on rank ") + std::to_string(rank()) + ": " + api_->get_error_string(async);
          api_->comm_abort(comm_);  // kernels waiting on the peer return; the streams report errors
          comm_ = nullptr;
          return;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  struct Pending {
    cudaEvent_t event;
    std::chrono::steady_clock::time_point deadline;
  };
  Device& device_;
  int ordinal_ = 0;
  std::chrono::milliseconds timeout_;
  const nccl::Api* api_ = nullptr;
  nccl::Comm comm_ = nullptr;
  cudaStream_t compute_ = nullptr;
  cudaStream_t comm_stream_ = nullptr;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  std::mutex mutex_;
  std::deque<Pending> pending_;
  std::string failure_;
  bool stopping_ = false;
  std::thread watchdog_;
};

}  // namespace

std::unique_ptr<ProcessGroup> make_nccl_group(const GroupOptions& options, std::shared_ptr<Rendezvous> rendezvous,
                                              Device& device) {
  return std::make_unique<NcclGroup>(options, std::move(rendezvous), device);
}

}  // namespace badam::dist
