// The CPU engine's one thread pool: its GEMMs and every other kernel split their work over the same threads,
// so a step never has two pools competing for the cores.
#pragma once

#include <cstdint>
#include <functional>

namespace badam::engine {

/** Threads the pool runs work on, the calling thread included (BADAM_THREADS, else the hardware's). */
int pool_threads();

/** Resizes the pool (1 runs everything on the caller). */
void set_pool_threads(int threads);

/**
 * Calls `body(task)` for task = 0 .. tasks - 1, spread over the pool's threads (the caller works too), and
 * returns when all are done. Tasks are handed out in order from a shared counter, so uneven tasks balance.
 * Called from inside a task (nested), it runs the tasks on the calling thread: no deadlock, no oversubscription.
 * The first exception a task throws is rethrown here after every task has finished.
 */
void parallel_for(int64_t tasks, const std::function<void(int64_t)>& body);

/**
 * Splits [0, n) into about `chunks_per_thread` chunks per thread, each a multiple of `grain` (the last may be
 * shorter), and runs `body(begin, end)` on each in parallel. Small n runs on the caller.
 */
void parallel_range(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body,
                    int chunks_per_thread = 4);

}  // namespace badam::engine
