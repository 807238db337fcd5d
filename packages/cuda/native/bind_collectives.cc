// Node-API bindings of process groups (process_group.h): creating one from torchrun's variables, the
// collectives sharded training uses, and what is known when one fails. A collective on device tensors
// returns a work handle to wait on (the gather of the next layer runs while the caller computes); the
// tensors must stay alive until then, which the TypeScript side guarantees.
#include "napi_args.h"
#include "process_group.h"

namespace badam::napi {
namespace {

struct GroupHandle {
  std::shared_ptr<Context> ctx;  // keeps the device alive as long as the group
  std::shared_ptr<dist::Rendezvous> rendezvous;
  std::unique_ptr<dist::ProcessGroup> group;
  dist::ProcessGroup& live() {
    if (!group) throw JsError("the process group is closed");
    return *group;
  }
};

struct WorkHandle {
  std::shared_ptr<Context> ctx;
  std::shared_ptr<dist::Work> work;
};

napi_value wrap_group(napi_env env, GroupHandle* h) {
  napi_value out;
  NAPI_OK(napi_create_external(env, h, [](napi_env, void* data, void*) { delete static_cast<GroupHandle*>(data); }, nullptr, &out));
  return out;
}

napi_value wrap_work(napi_env env, WorkHandle* w) {
  napi_value out;
  NAPI_OK(napi_create_external(env, w, [](napi_env, void* data, void*) { delete static_cast<WorkHandle*>(data); }, nullptr, &out));
  return out;
}

/** counts (an array of element counts, one per rank) checked against the shard and the full tensor. */
std::vector<size_t> counts_of(napi_env env, napi_value v, const char* op, dist::ProcessGroup& g, const Tensor* shard,
                              const Tensor* full) {
  bool is_array = false;
  NAPI_OK(napi_is_array(env, v, &is_array));
  if (!is_array) throw JsError(std::string(op) + ": counts must be an array of element counts, one per rank");
  uint32_t n = 0;
  NAPI_OK(napi_get_array_length(env, v, &n));
  if (static_cast<int>(n) != g.size()) {
    throw JsError(std::string(op) + ": counts has " + std::to_string(n) + " entries, expected one per rank (" + std::to_string(g.size()) + ")");
  }
  std::vector<size_t> counts(n);
  size_t total = 0;
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    NAPI_OK(napi_get_element(env, v, i, &item));
    counts[i] = count(env, item, "count");
    total += counts[i];
  }
  if (total != full->numel) {
    throw JsError(std::string(op) + ": the counts add up to " + std::to_string(total) + " elements, the full tensor has " +
                  std::to_string(full->numel));
  }
  if (counts[g.rank()] != shard->numel) {
    throw JsError(std::string(op) + ": this rank's count is " + std::to_string(counts[g.rank()]) + ", its shard has " +
                  std::to_string(shard->numel) + " elements");
  }
  return counts;
}

napi_value collectives_info(napi_env env, napi_callback_info) {
  napi_value out;
  NAPI_OK(napi_create_object(env, &out));
  std::string gloo_why, nccl_why;
  const bool gloo = dist::gloo_available(&gloo_why);
  const bool nccl = dist::nccl_available(&nccl_why);
  napi_value b;
  NAPI_OK(napi_get_boolean(env, gloo, &b));
  set(env, out, "gloo", b);
  set(env, out, "glooUnavailableReason", make_string(env, gloo_why));
  NAPI_OK(napi_get_boolean(env, nccl, &b));
  set(env, out, "nccl", b);
  set(env, out, "ncclUnavailableReason", make_string(env, nccl_why));
  return out;
}

// processGroupCreate(ctx, backend, { rank, worldSize, masterAddr, masterPort, timeoutMs, exitOnPeerFailure })
napi_value process_group_create(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 3);
  auto* ctx = external<ContextHandle>(env, argv[0], "context");
  const std::string backend = string(env, argv[1], "backend");
  dist::GroupOptions o;
  o.rank = static_cast<int>(field(env, argv[2], "rank"));
  o.size = static_cast<int>(field(env, argv[2], "worldSize"));
  napi_value addr;
  NAPI_OK(napi_get_named_property(env, argv[2], "masterAddr", &addr));
  o.master_addr = string(env, addr, "masterAddr");
  o.master_port = static_cast<int>(field(env, argv[2], "masterPort"));
  o.timeout = std::chrono::milliseconds(static_cast<long long>(field(env, argv[2], "timeoutMs")));
  napi_value exit_flag;
  NAPI_OK(napi_get_named_property(env, argv[2], "exitOnPeerFailure", &exit_flag));
  o.exit_on_peer_failure = boolean(env, exit_flag);
  const bool on_gpu = ctx->ctx->device->native_stream() != nullptr;
  if (backend == "gloo" && on_gpu) throw JsError("the gloo backend moves host memory: use nccl on a CUDA device (or --cuda_device cpu)");
  if (backend == "nccl" && !on_gpu) throw JsError("the nccl backend moves GPU memory: use gloo on the CPU device");
  if (backend != "gloo" && backend != "nccl") throw JsError("backend must be gloo or nccl, got " + backend);
  auto* h = new GroupHandle{ctx->ctx, nullptr, nullptr};
  try {
    h->rendezvous = std::make_shared<dist::Rendezvous>(o);
    h->group = backend == "gloo" ? dist::make_gloo_group(o, h->rendezvous)
                                 : dist::make_nccl_group(o, h->rendezvous, *ctx->ctx->device);
  } catch (...) {
    delete h;
    throw;
  }
  return wrap_group(env, h);
}

// pgAllGather(group, shard, full, counts) -> work: full = every rank's shard, by rank (any dtype, the same)
napi_value pg_all_gather(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 4);
  auto& g = external<GroupHandle>(env, argv[0], "process group")->live();
  Tensor* shard = tensor(env, argv[1], "shard");
  Tensor* full = tensor(env, argv[2], "full");
  same_context(shard, full, "allGather");
  if (shard->dtype != full->dtype) throw JsError("allGather: shard and full must share a dtype");
  std::vector<size_t> counts = counts_of(env, argv[3], "allGather", g, shard, full);
  for (auto& c : counts) c *= dtype_size(full->dtype);
  return wrap_work(env, new WorkHandle{full->ctx, g.all_gather_v(shard->ptr, full->ptr, std::move(counts))});
}

// pgReduceScatterAdd(group, full, acc, counts) -> work: acc += this rank's range of the sum over ranks (fp32)
napi_value pg_reduce_scatter_add(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 4);
  auto& g = external<GroupHandle>(env, argv[0], "process group")->live();
  Tensor* full = tensor(env, argv[1], "full");
  Tensor* acc = tensor(env, argv[2], "accumulator");
  same_context(full, acc, "reduceScatterAdd");
  expect_dtype("reduceScatterAdd", "full", full, DType::F32);
  expect_dtype("reduceScatterAdd", "accumulator", acc, DType::F32);
  std::vector<size_t> counts = counts_of(env, argv[3], "reduceScatterAdd", g, acc, full);
  return wrap_work(env, new WorkHandle{full->ctx, g.reduce_scatter_add(static_cast<const float*>(full->ptr),
                                                                       static_cast<float*>(acc->ptr), std::move(counts))});
}

napi_value work_wait(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 1);
  auto* w = external<WorkHandle>(env, argv[0], "work");
  if (w->work) {
    auto work = std::move(w->work);
    work->wait();
  }
  return undefined(env);
}

// pgAllGatherHost(group, Float64Array) -> Float64Array of every rank's values, by rank
napi_value pg_all_gather_host(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 2);
  auto& g = external<GroupHandle>(env, argv[0], "process group")->live();
  TypedArray in = typed_array(env, argv[1], "values");
  if (in.type != napi_float64_array) throw JsError("allGatherHost: values must be a Float64Array");
  const size_t bytes = in.length * sizeof(double);
  void* data = nullptr;
  napi_value buffer, out;
  NAPI_OK(napi_create_arraybuffer(env, bytes * g.size(), &data, &buffer));
  if (bytes > 0) g.all_gather_host(in.data, data, bytes);
  NAPI_OK(napi_create_typedarray(env, napi_float64_array, in.length * g.size(), buffer, 0, &out));
  return out;
}

// pgBroadcastHost(group, Uint8Array, root): the array becomes root's, in place
napi_value pg_broadcast_host(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 3);
  auto& g = external<GroupHandle>(env, argv[0], "process group")->live();
  TypedArray a = typed_array(env, argv[1], "data");
  if (a.type != napi_uint8_array) throw JsError("broadcastHost: data must be a Uint8Array");
  const int root = int_in(env, argv[2], "broadcastHost", "root", 0, g.size() - 1);
  if (a.length > 0) g.broadcast_host(a.data, a.length, root);
  return undefined(env);
}

napi_value pg_barrier(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 1);
  external<GroupHandle>(env, argv[0], "process group")->live().barrier();
  return undefined(env);
}

napi_value pg_mark_progress(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 2);
  auto* h = external<GroupHandle>(env, argv[0], "process group");
  h->live();
  h->rendezvous->mark_progress(static_cast<int64_t>(number(env, argv[1], "step")));
  return undefined(env);
}

napi_value pg_diagnose(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 1);
  auto* h = external<GroupHandle>(env, argv[0], "process group");
  return make_string(env, h->rendezvous ? h->rendezvous->diagnose() : std::string("the process group is closed"));
}

napi_value pg_peer_failure(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 1);
  auto* h = external<GroupHandle>(env, argv[0], "process group");
  return make_string(env, h->rendezvous ? h->rendezvous->peer_failure() : std::string());
}

// pgClose(group): the collectives end, then every rank says goodbye to the store (rank 0 last).
napi_value pg_close(napi_env env, napi_callback_info info) {
  auto argv = args_of(env, info, 1);
  auto* h = external<GroupHandle>(env, argv[0], "process group");
  h->group.reset();
  if (h->rendezvous) h->rendezvous->close();
  h->rendezvous.reset();
  return undefined(env);
}

}  // namespace

void add_collective_bindings(std::vector<Binding>& out) {
  out.insert(out.end(), {
      {"collectivesInfo", guarded<collectives_info>},
      {"processGroupCreate", guarded<process_group_create>},
      {"pgAllGather", guarded<pg_all_gather>},
      {"pgReduceScatterAdd", guarded<pg_reduce_scatter_add>},
      {"workWait", guarded<work_wait>},
      {"pgAllGatherHost", guarded<pg_all_gather_host>},
      {"pgBroadcastHost", guarded<pg_broadcast_host>},
      {"pgBarrier", guarded<pg_barrier>},
      {"pgMarkProgress", guarded<pg_mark_progress>},
      {"pgDiagnose", guarded<pg_diagnose>},
      {"pgPeerFailure", guarded<pg_peer_failure>},
      {"pgClose", guarded<pg_close>},
  });
}

}  // namespace badam::napi
