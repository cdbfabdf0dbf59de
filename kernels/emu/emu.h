// The CUDA built-ins that the kernels in kernels/ use, implemented for the host, so that the
// kernels' own sources compile as C++ and run on a CPU with CUDA's semantics:
//
// - every CUDA thread of a block is a std::thread; a launch runs its blocks in groups of
//   threads (ENT_EMU_GROUPS blocks at a time, default 2, with no ordering between groups, so
//   ThreadSanitizer sees races between blocks as well as inside one);
// - warps are 32 consecutive threads (linear thread index / 32); __shfl_xor_sync exchanges
//   values through the warp's buffer between two arrivals at a 32-lane barrier, and refuses a
//   mask that is not exactly the warp's live lanes;
// - __syncthreads / __syncthreads_or wait for every thread of the block that has not exited:
//   a thread that returns from the kernel is released from the block's and its warp's
//   barriers, as on the GPU;
// - dynamic shared memory (ENT_DYNAMIC_SHARED) is a per-block buffer of exactly the launch's
//   size, filled with 0xff bytes (NaN as f64) before each block and followed by a guard that is
//   checked after it;
// - a barrier nobody can complete aborts with a message after ENT_EMU_DEADLOCK_S seconds
//   (default 60) instead of hanging.
//
// Used by kernels.cpp, which includes the kernel sources after this header.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cmath>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

struct alignas(16) uint4 {
    unsigned x, y, z, w;
};

namespace ent_emu {

// What the running CUDA thread sees as threadIdx, blockIdx, blockDim and gridDim.
struct Coords {
    dim3 thread_idx, block_idx, block_dim, grid_dim;
};

const Coords& coords();
void sync_block();
int sync_block_or(int predicate);
uint64_t shfl_xor_bits(unsigned mask, uint64_t bits, int lane_mask, int width);
unsigned char* dynamic_shared();

}  // namespace ent_emu

#define threadIdx (::ent_emu::coords().thread_idx)
#define blockIdx (::ent_emu::coords().block_idx)
#define blockDim (::ent_emu::coords().block_dim)
#define gridDim (::ent_emu::coords().grid_dim)

#define ENT_DYNAMIC_SHARED(T, name) \
    T* name = reinterpret_cast<T*>(::ent_emu::dynamic_shared())

inline void __syncthreads() { ::ent_emu::sync_block(); }
inline int __syncthreads_or(int predicate) { return ::ent_emu::sync_block_or(predicate); }

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8,
                  "__shfl_xor_sync: at most 8 bytes of plain data");
    uint64_t bits = 0;
    memcpy(&bits, &value, sizeof(T));
    bits = ::ent_emu::shfl_xor_bits(mask, bits, lane_mask, width);
    T out;
    memcpy(&out, &bits, sizeof(T));
    return out;
}

template <typename T>
inline T __ldg(const T* p) {
    return *p;
}
