// Shared device helpers of the lattice kernels: element conversion, 16-byte row loads, warp
// and block reductions. Included by rnnt.cu and pool.cu; no entry points of its own.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace ent {

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(double x) { return (float)x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

__device__ __forceinline__ double to_f64(float x) { return (double)x; }
__device__ __forceinline__ double to_f64(double x) { return x; }
__device__ __forceinline__ double to_f64(__half x) { return (double)__half2float(x); }
__device__ __forceinline__ double to_f64(__nv_bfloat16 x) { return (double)__bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ double from_f32<double>(float x) { return (double)x; }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

// Calls f(index, value-as-f32) for every element of row[0..n), lane `lane` of `lanes` taking
// every lanes-th 16-byte vector (coalesced across the warp) when the row is 16-byte aligned and
// n is a multiple of the vector width, element by element otherwise.
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
            for (int k = 0; k < VEC; ++k) f(i * VEC + k, to_f32(e[k]));
        }
    } else {
        for (int64_t i = lane; i < n; i += lanes) f(i, to_f32(row[i]));
    }
}

// Online log-sum-exp state: m = running max, s = sum exp(x - m), bad = saw NaN or +inf.
struct Lse {
    float m;
    float s;
    bool bad;
    __device__ __forceinline__ Lse() : m(-INFINITY), s(0.f), bad(false) {}
    __device__ __forceinline__ void push(float x) {
        if (isnan(x) || x == INFINITY) {
            bad = true;
            return;
        }
        if (x == -INFINITY) return;
        if (x > m) {
            s = s * expf(m - x) + 1.f;
            m = x;
        } else {
            s += expf(x - m);
        }
    }
    __device__ __forceinline__ void merge(float om, float os, bool obad) {
        bad = bad || obad;
        if (om == -INFINITY) return;
        if (m == -INFINITY) {
            m = om;
            s = os;
            return;
        }
        float nm = fmaxf(m, om);
        s = s * expf(m - nm) + os * expf(om - nm);
        m = nm;
    }
    // ln sum exp(x); NaN when a NaN or +inf was pushed.
    __device__ __forceinline__ float log_norm() const { return bad ? NAN : m + logf(s); }
};

__device__ __forceinline__ Lse warp_lse(Lse a) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        float om = __shfl_xor_sync(0xffffffffu, a.m, off);
        float os = __shfl_xor_sync(0xffffffffu, a.s, off);
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
