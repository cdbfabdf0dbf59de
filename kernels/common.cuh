// Shared device helpers of the lattice kernels: element conversion, 16-byte row loads, warp
// and block reductions. Included by rnnt.cu and pool.cu; no entry points of its own.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

// A kernel's dynamic shared memory, `extern __shared__ T name[]` on the GPU. The emulation
// of the CUDA built-ins (kernels/emu/emu.h) defines it first, as a pointer into the block's
// buffer.
#ifndef ENT_DYNAMIC_SHARED
#define ENT_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

namespace ent {

// What a logit type is computed in: f64 logits in f64, every other type in f32 (as the CPU
// reference does).
template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };
template <typename T> using acc_t = typename AccOf<T>::type;

__device__ __forceinline__ double to_f64(float x) { return (double)x; }
__device__ __forceinline__ double to_f64(double x) { return x; }
__device__ __forceinline__ double to_f64(__half x) { return (double)__half2float(x); }
__device__ __forceinline__ double to_f64(__nv_bfloat16 x) { return (double)__bfloat162float(x); }

// An accumulator value (f32 or f64) stored as the logit type T, rounded to nearest even.
template <typename T> __device__ __forceinline__ T from_acc(acc_t<T> x);
template <> __device__ __forceinline__ float from_acc<float>(float x) { return x; }
template <> __device__ __forceinline__ double from_acc<double>(double x) { return x; }
template <> __device__ __forceinline__ __half from_acc<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

// A logit in its accumulator type, acc_t<T>.
__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }

// Calls f(index, value) for every element of row[0..n), the value converted to acc_t<T>; lane
// `lane` of `lanes` takes every lanes-th 16-byte vector (coalesced across the warp) when the
// row is 16-byte aligned and n is a multiple of the vector width, element by element otherwise.
template <typename T, typename F>
__device__ __forceinline__ void for_row(const T* __restrict__ row, int64_t n, int lane, int lanes,
                                        F f) {
    constexpr int VEC = 16 / sizeof(T);
    if ((reinterpret_cast<uintptr_t>(row) % 16 == 0) && (n % VEC == 0)) {
        const uint4* v = reinterpret_cast<const uint4*>(row);
        int64_t nv = n / VEC;
        for (int64_t i = lane; i < nv; i += lanes) {
            uint4 raw = __ldg(v + i);
            const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
            for (int k = 0; k < VEC; ++k) f(i * VEC + k, to_acc(e[k]));
        }
    } else {
        for (int64_t i = lane; i < n; i += lanes) f(i, to_acc(row[i]));
    }
}

__device__ __forceinline__ float exp_acc(float x) { return expf(x); }
__device__ __forceinline__ double exp_acc(double x) { return exp(x); }
__device__ __forceinline__ float log_acc(float x) { return logf(x); }
__device__ __forceinline__ double log_acc(double x) { return log(x); }

// Online log-sum-exp state in A (f32 or f64): m = running max, s = sum exp(x - m), bad = saw
// NaN or +inf.
template <typename A>
struct Lse {
    A m;
    A s;
    bool bad;
    __device__ __forceinline__ Lse() : m(-INFINITY), s(0), bad(false) {}
    __device__ __forceinline__ void push(A x) {
        if (isnan(x) || x == INFINITY) {
            bad = true;
            return;
        }
        if (x == -INFINITY) return;
        if (x > m) {
            s = s * exp_acc(m - x) + A(1);
            m = x;
        } else {
            s += exp_acc(x - m);
        }
    }
    __device__ __forceinline__ void merge(A om, A os, bool obad) {
        bad = bad || obad;
        if (om == -INFINITY) return;
        if (m == -INFINITY) {
            m = om;
            s = os;
            return;
        }
        A nm = m > om ? m : om;
        s = s * exp_acc(m - nm) + os * exp_acc(om - nm);
        m = nm;
    }
    // ln sum exp(x); NaN when a NaN or +inf was pushed.
    __device__ __forceinline__ A log_norm() const { return bad ? A(NAN) : m + log_acc(s); }
};

template <typename A>
__device__ __forceinline__ Lse<A> warp_lse(Lse<A> a) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        A om = __shfl_xor_sync(0xffffffffu, a.m, off);
        A os = __shfl_xor_sync(0xffffffffu, a.s, off);
        int ob = __shfl_xor_sync(0xffffffffu, (int)a.bad, off);
        a.merge(om, os, ob != 0);
    }
    return a;
}

// log(exp(a) + exp(b)) in f64, exact for -inf, NaN-propagating (as the CPU reference).
__device__ __forceinline__ double log_add(double a, double b) {
    double hi = a > b ? a : b;
    double lo = a > b ? b : a;
    if (isnan(a) || isnan(b)) return NAN;
    if (lo == -INFINITY) return hi;
    return hi + log1p(exp(lo - hi));
}

}  // namespace ent
