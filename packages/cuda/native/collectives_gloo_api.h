// The C interface between the addon and libbadam_gloo.so, the small library that holds every call into Gloo.
// Gloo is a C++ library without a stable ABI, linked here only into libbadam_gloo.so, which the addon opens
// at run time with dlopen (gloo_group.cc): the addon itself never links Gloo, so it builds and loads where
// Gloo is absent, and says why Gloo cannot be used when a run asks for it.
//
// Every function returns 0 on success, or non-zero with a message in `error` (at most `error_size` bytes).
// Buffers are host memory and sizes are in bytes: the collectives move bytes, the addon does the arithmetic.
#pragma once

#include <cstddef>

extern "C" {

/** Bumped whenever a signature below changes: the addon refuses a library of another version. */
#define BADAM_GLOO_ABI_VERSION 1

/** The rendezvous store, as the addon gives it to Gloo (gloo::rendezvous::Store calls these). */
struct badam_gloo_store {
  void* self;
  int (*set)(void* self, const char* key, const char* data, size_t size, char* error, size_t error_size);
  /** Waits for `key` up to `timeout_ms`; `*data` is malloc'd (the caller frees it with free()). */
  int (*get)(void* self, const char* key, char** data, size_t* size, long timeout_ms, char* error, size_t error_size);
};

typedef int (*badam_gloo_abi_version_fn)(void);
/**
 * Connects `size` ranks in a full mesh over Gloo's TCP transport bound to `hostname` (or the interface
 * `iface` when not empty), rendezvousing through `store`; every later call fails after `timeout_ms`.
 */
typedef void* (*badam_gloo_connect_fn)(int rank, int size, const char* hostname, const char* iface,
                                       const badam_gloo_store* store, long timeout_ms, char* error, size_t error_size);
/** `out` = the concatenation of every rank's `in`; rank r gives `bytes_per_rank[r]` bytes. */
typedef int (*badam_gloo_all_gather_v_fn)(void* group, const void* in, void* out, const size_t* bytes_per_rank,
                                          char* error, size_t error_size);
/** Sends `in_bytes[r]` bytes of `in` (in rank order) to rank r; receives `out_bytes[r]` from rank r into `out`. */
typedef int (*badam_gloo_all_to_all_v_fn)(void* group, const void* in, const size_t* in_bytes, void* out,
                                          const size_t* out_bytes, char* error, size_t error_size);
typedef int (*badam_gloo_broadcast_fn)(void* group, void* data, size_t bytes, int root, char* error, size_t error_size);
typedef int (*badam_gloo_barrier_fn)(void* group, char* error, size_t error_size);
typedef void (*badam_gloo_destroy_fn)(void* group);
}
