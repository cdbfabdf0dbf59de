// The host runtime behind emu.h: threads, barriers, warp shuffles, dynamic shared memory, and
// ent_emu_launch, which runs one kernel launch described as cuLaunchKernel describes it (a name,
// grid, block, dynamic shared bytes and an array of pointers to the argument values).

#include "emu.h"
#include "entry.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace ent_emu {
namespace {

constexpr unsigned WARP = 32;
constexpr size_t GUARD_BYTES = 256;
constexpr unsigned char GUARD = 0xa5;
constexpr unsigned char SHARED_POISON = 0xff;
// The dynamic shared memory a block may use without opting in (cudaFuncSetAttribute).
constexpr uint32_t MAX_SHARED = 48 * 1024;
constexpr uint32_t MAX_THREADS = 1024;

[[noreturn]] void fail(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("emulated CUDA: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    abort();
}

unsigned env_unsigned(const char* name, unsigned fallback) {
    const char* v = getenv(name);
    if (v == nullptr || *v == '\0') return fallback;
    char* end = nullptr;
    const unsigned long n = strtoul(v, &end, 10);
    return (*end == '\0' && n > 0) ? (unsigned)n : fallback;
}

std::chrono::seconds deadlock_timeout() {
    return std::chrono::seconds(env_unsigned("ENT_EMU_DEADLOCK_S", 60));
}

// Barrier completions so far, and the watchdog that turns a barrier nobody can complete into
// an abort with a message instead of a hang.
std::atomic<uint64_t> progress{0};
std::atomic<int> launches_running{0};

void start_watchdog() {
    static std::once_flag once;
    std::call_once(once, [] {
        std::thread([] {
            const auto limit = deadlock_timeout();
            uint64_t seen = progress.load();
            auto since = std::chrono::steady_clock::now();
            for (;;) {
                std::this_thread::sleep_for(std::chrono::milliseconds(200));
                const uint64_t now = progress.load();
                const auto t = std::chrono::steady_clock::now();
                if (now != seen || launches_running.load() == 0) {
                    seen = now;
                    since = t;
                } else if (t - since > limit) {
                    fail("no barrier completed for %lld s while a kernel ran: deadlock (a "
                         "barrier in divergent code, or a shuffle some lanes never reach)",
                         (long long)limit.count());
                }
            }
        }).detach();
    });
}

// A barrier over the threads that have not exited. arrive() returns once every live thread
// has arrived (and the OR of their predicates); leave() takes an exited thread out, which may
// complete the arrivals the others wait for. An optional hook runs at each release, under the
// lock, before anyone goes on. Waiters sleep on the generation counter (a futex), so a
// release wakes them all without a second round of lock contention.
class Barrier {
   public:
    void reset(unsigned live) {
        std::lock_guard<std::mutex> lk(m_);
        live_ = live;
        arrived_ = 0;
        or_acc_ = 0;
    }

    void on_release(std::function<void()> hook) { hook_ = std::move(hook); }

    int arrive(int predicate) {
        uint64_t gen;
        {
            std::lock_guard<std::mutex> lk(m_);
            or_acc_ |= predicate != 0;
            gen = gen_.load(std::memory_order_relaxed);
            if (++arrived_ == live_) {
                release();
                return or_result_;
            }
        }
        for (uint64_t g = gen; g == gen; g = gen_.load(std::memory_order_acquire)) {
            gen_.wait(gen, std::memory_order_acquire);
        }
        // Written before the release's store to gen_; the next release needs this thread.
        return or_result_;
    }

    void leave() {
        std::lock_guard<std::mutex> lk(m_);
        --live_;
        if (arrived_ > 0 && arrived_ == live_) release();
    }

   private:
    void release() {
        or_result_ = or_acc_;
        or_acc_ = 0;
        arrived_ = 0;
        if (hook_) hook_();
        progress.fetch_add(1, std::memory_order_relaxed);
        gen_.fetch_add(1, std::memory_order_release);
        gen_.notify_all();
    }

    std::mutex m_;
    unsigned live_ = 0;
    unsigned arrived_ = 0;
    std::atomic<uint64_t> gen_{0};
    int or_acc_ = 0;
    int or_result_ = 0;
    std::function<void()> hook_;
};

struct Warp {
    Barrier barrier;
    unsigned lanes = 0;       // threads in this warp (the last warp of a block may be partial)
    std::atomic<unsigned> live_mask{0};  // lanes that have not exited
    uint64_t exchange[2][WARP] = {};
};

struct Launch {
    const char* name;
    void (*run)(void**);
    void** args;
    dim3 grid, block;
    uint32_t shared_bytes;
    uint64_t blocks;
    unsigned threads;
    unsigned groups;
};

// One group of block-sized threads running every groups-th block of a launch.
struct Group {
    const Launch* launch = nullptr;
    unsigned index = 0;
    uint64_t block = 0;  // the block being run
    bool started = false;
    Barrier sync;        // __syncthreads
    Barrier between;     // all threads, between blocks
    std::unique_ptr<Warp[]> warps;
    unsigned warp_count = 0;
    std::vector<unsigned char> shared;

    void check_guard() const {
        for (size_t i = 0; i < GUARD_BYTES; ++i) {
            if (shared[launch->shared_bytes + i] != GUARD) {
                fail("kernel %s, block %llu: wrote past its %u bytes of dynamic shared memory "
                     "(byte %zu after the end)",
                     launch->name, (unsigned long long)block, launch->shared_bytes, i);
            }
        }
    }

    // Runs at the release of `between`: checks the block that ended, prepares the next.
    void next_block() {
        if (started) {
            check_guard();
            block += launch->groups;
        }
        started = true;
        sync.reset(launch->threads);
        for (unsigned w = 0; w < warp_count; ++w) {
            Warp& warp = warps[w];
            warp.barrier.reset(warp.lanes);
            warp.live_mask.store(warp.lanes == WARP ? 0xffffffffu : ((1u << warp.lanes) - 1));
        }
        std::fill(shared.begin(), shared.begin() + launch->shared_bytes, SHARED_POISON);
    }
};

struct ThreadCtx {
    Coords coords;
    Group* group = nullptr;
    unsigned linear = 0;
    unsigned shuffles = 0;
};

thread_local ThreadCtx* current = nullptr;

ThreadCtx& ctx() {
    if (current == nullptr) fail("a CUDA built-in was used outside a kernel launch");
    return *current;
}

dim3 unflatten(uint64_t i, dim3 d) {
    dim3 r;
    r.x = (unsigned)(i % d.x);
    r.y = (unsigned)((i / d.x) % d.y);
    r.z = (unsigned)(i / ((uint64_t)d.x * d.y));
    return r;
}

void worker(Group* g, unsigned linear) {
    const Launch& l = *g->launch;
    ThreadCtx self;
    self.group = g;
    self.linear = linear;
    self.coords.thread_idx = unflatten(linear, l.block);
    self.coords.block_dim = l.block;
    self.coords.grid_dim = l.grid;
    current = &self;
    Warp& warp = g->warps[linear / WARP];
    for (uint64_t b = g->index; b < l.blocks; b += l.groups) {
        g->between.arrive(0);
        self.coords.block_idx = unflatten(b, l.grid);
        self.shuffles = 0;
        l.run(l.args);
        // The thread has exited the kernel: it no longer holds up barriers.
        warp.live_mask.fetch_and(~(1u << (linear % WARP)));
        g->sync.leave();
        warp.barrier.leave();
    }
    current = nullptr;
}

// Threads kept between launches: creating a few hundred threads per launch costs more than
// the kernels. Every task of a launch gets a thread of its own at once (they wait for each
// other at barriers), taken from the idle ones or started.
class ThreadPool {
   public:
    void run_all(std::vector<std::function<void()>>& tasks) {
        Latch latch(tasks.size());
        std::vector<Worker*> ws = take(tasks.size());
        for (size_t i = 0; i < tasks.size(); ++i) {
            std::lock_guard<std::mutex> lk(ws[i]->m);
            ws[i]->task = &tasks[i];
            ws[i]->latch = &latch;
            ws[i]->cv.notify_one();
        }
        latch.wait();
    }

   private:
    struct Latch {
        explicit Latch(size_t n) : left(n) {}
        void count_down() {
            std::lock_guard<std::mutex> lk(m);
            if (--left == 0) cv.notify_all();
        }
        void wait() {
            std::unique_lock<std::mutex> lk(m);
            cv.wait(lk, [&] { return left == 0; });
        }
        std::mutex m;
        std::condition_variable cv;
        size_t left;
    };

    struct Worker {
        std::mutex m;
        std::condition_variable cv;
        std::function<void()>* task = nullptr;
        Latch* latch = nullptr;
    };

    std::vector<Worker*> take(size_t n) {
        std::vector<Worker*> out;
        std::lock_guard<std::mutex> lk(m_);
        while (out.size() < n && !idle_.empty()) {
            out.push_back(idle_.back());
            idle_.pop_back();
        }
        while (out.size() < n) {
            Worker* w = new Worker;  // lives as long as the process, like its thread
            try {
                std::thread(&ThreadPool::loop, this, w).detach();
            } catch (const std::system_error& e) {
                fail("could not start a thread: %s", e.what());
            }
            out.push_back(w);
        }
        return out;
    }

    void loop(Worker* w) {
        for (;;) {
            std::function<void()>* task;
            Latch* latch;
            {
                std::unique_lock<std::mutex> lk(w->m);
                w->cv.wait(lk, [&] { return w->task != nullptr; });
                task = w->task;
                latch = w->latch;
                w->task = nullptr;
            }
            (*task)();
            {
                std::lock_guard<std::mutex> lk(m_);
                idle_.push_back(w);
            }
            latch->count_down();
        }
    }

    std::mutex m_;
    std::vector<Worker*> idle_;
};

ThreadPool& pool() {
    static ThreadPool* p = new ThreadPool;  // never destroyed: its threads outlive main
    return *p;
}

}  // namespace

const Coords& coords() { return ctx().coords; }

void sync_block() {
    ThreadCtx& c = ctx();
    c.group->sync.arrive(0);
}

int sync_block_or(int predicate) {
    ThreadCtx& c = ctx();
    return c.group->sync.arrive(predicate);
}

uint64_t shfl_xor_bits(unsigned mask, uint64_t bits, int lane_mask, int width) {
    ThreadCtx& c = ctx();
    Group& g = *c.group;
    const unsigned lane = c.linear % WARP;
    Warp& w = g.warps[c.linear / WARP];
    if (width <= 0 || width > (int)WARP || (width & (width - 1)) != 0) {
        fail("kernel %s: __shfl_xor_sync width %d is not a power of two up to 32",
             g.launch->name, width);
    }
    const unsigned live = w.live_mask.load();
    if (mask != live) {
        fail("kernel %s, warp %u: __shfl_xor_sync mask %#x but the live lanes are %#x",
             g.launch->name, c.linear / WARP, mask, live);
    }
    const unsigned slot = c.shuffles++ & 1;
    w.exchange[slot][lane] = bits;
    w.barrier.arrive(0);
    unsigned src = lane ^ (unsigned)lane_mask;
    // A lane past its width-wide segment reads its own value.
    if (src / (unsigned)width != lane / (unsigned)width) src = lane;
    if (src >= w.lanes) {
        fail("kernel %s: lane %u reads lane %u of a %u-lane warp", g.launch->name, lane, src,
             w.lanes);
    }
    // The slot written next is the other one; this one is rewritten only after the next
    // shuffle's barrier, which this lane must reach first.
    return w.exchange[slot][src];
}

unsigned char* dynamic_shared() { return ctx().group->shared.data(); }

}  // namespace ent_emu

using ent_emu::EntryPoint;

namespace {

void set_error(char* err, size_t len, const std::string& msg) {
    if (err == nullptr || len == 0) return;
    const size_t n = msg.size() < len - 1 ? msg.size() : len - 1;
    memcpy(err, msg.data(), n);
    err[n] = '\0';
}

const EntryPoint* find_entry(const char* name) {
    for (size_t i = 0; i < ent_emu_entry_count; ++i) {
        if (strcmp(ent_emu_entries[i].name, name) == 0) return &ent_emu_entries[i];
    }
    return nullptr;
}

}  // namespace

extern "C" size_t ent_emu_kernel_count() { return ent_emu_entry_count; }

extern "C" const char* ent_emu_kernel_name(size_t i) {
    return i < ent_emu_entry_count ? ent_emu_entries[i].name : nullptr;
}

// Runs one launch. `params` holds two bytes per argument, its kind ('p', 'i', 'f') and size,
// which must match the kernel's parameters. Returns 0, or -1 with a message in err for what
// cuLaunchKernel would refuse or a GPU would silently misread (unknown entry point, wrong
// arguments, bad geometry, too much shared memory). Failures inside the kernel (deadlock, bad
// shuffle mask, shared-memory overrun) abort the process with a message.
extern "C" int ent_emu_launch(const char* name, const uint32_t grid[3], const uint32_t block[3],
                              uint32_t shared_bytes, void** args, const unsigned char* params,
                              size_t nargs, char* err, size_t err_len) {
    using namespace ent_emu;
    const EntryPoint* entry = find_entry(name);
    if (entry == nullptr) {
        set_error(err, err_len, std::string("no kernel named ") + name);
        return -1;
    }
    if (nargs != entry->arity) {
        set_error(err, err_len,
                  "kernel " + std::string(name) + " takes " + std::to_string(entry->arity) +
                      " arguments, the launch passes " + std::to_string(nargs));
        return -1;
    }
    for (size_t i = 0; i < nargs; ++i) {
        const Param want = entry->params[i];
        if (params[2 * i] != (unsigned char)want.kind || params[2 * i + 1] != want.size) {
            set_error(err, err_len,
                      "kernel " + std::string(name) + " parameter " + std::to_string(i) +
                          " is '" + want.kind + "' of " + std::to_string(want.size) +
                          " bytes, the launch passes '" + (char)params[2 * i] + "' of " +
                          std::to_string(params[2 * i + 1]) + " bytes");
            return -1;
        }
    }
    Launch l;
    l.name = entry->name;
    l.run = entry->run;
    l.args = args;
    l.grid = dim3{grid[0], grid[1], grid[2]};
    l.block = dim3{block[0], block[1], block[2]};
    l.shared_bytes = shared_bytes;
    const uint64_t threads = (uint64_t)block[0] * block[1] * block[2];
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || grid[0] > 0x7fffffffu ||
        grid[1] > 65535 || grid[2] > 65535) {
        set_error(err, err_len,
                  "kernel " + std::string(name) + ": invalid grid (" + std::to_string(grid[0]) +
                      ", " + std::to_string(grid[1]) + ", " + std::to_string(grid[2]) + ")");
        return -1;
    }
    if (threads == 0 || threads > MAX_THREADS || block[2] > 64) {
        set_error(err, err_len,
                  "kernel " + std::string(name) + ": invalid block of " +
                      std::to_string(threads) + " threads");
        return -1;
    }
    if (shared_bytes > MAX_SHARED) {
        set_error(err, err_len,
                  "kernel " + std::string(name) + ": " + std::to_string(shared_bytes) +
                      " bytes of dynamic shared memory exceed the default limit of " +
                      std::to_string(MAX_SHARED));
        return -1;
    }
    l.threads = (unsigned)threads;
    l.blocks = (uint64_t)grid[0] * grid[1] * grid[2];
    const uint64_t groups = env_unsigned("ENT_EMU_GROUPS", 2);
    l.groups = (unsigned)(groups < l.blocks ? groups : l.blocks);

    std::vector<std::unique_ptr<Group>> gs;
    for (unsigned i = 0; i < l.groups; ++i) {
        auto g = std::make_unique<Group>();
        g->launch = &l;
        g->index = i;
        g->block = i;
        g->warp_count = (l.threads + WARP - 1) / WARP;
        g->warps.reset(new Warp[g->warp_count]);
        for (unsigned w = 0; w < g->warp_count; ++w) {
            const unsigned left = l.threads - w * WARP;
            g->warps[w].lanes = left < WARP ? left : WARP;
        }
        g->shared.assign((size_t)shared_bytes + GUARD_BYTES, GUARD);
        g->between.reset(l.threads);
        Group* raw = g.get();
        g->between.on_release([raw] { raw->next_block(); });
        gs.push_back(std::move(g));
    }
    std::vector<std::function<void()>> tasks;
    tasks.reserve((size_t)l.groups * l.threads);
    for (auto& g : gs) {
        for (unsigned t = 0; t < l.threads; ++t) {
            Group* raw = g.get();
            tasks.emplace_back([raw, t] { worker(raw, t); });
        }
    }
    start_watchdog();
    launches_running.fetch_add(1);
    pool().run_all(tasks);
    launches_running.fetch_sub(1);
    for (auto& g : gs) g->check_guard();
    return 0;
}
