// Emotion-lattice max pooling on the GPU: the same computation as ent-lattice's CPU reference
// (src/pool.rs), the oracle of the parity tests.
//
// Utterance b has label k*, neutral class n, and valid nodes (t, u), t < T_b, u <= U_b, with
// log p[t,u] = log_softmax_K(z[t,u]) (in f64):
//
//   (t1,u1) = argmax log p[t,u][k*]       first in row-major order on ties
//   (t2,u2) = argmin log p[t,u][n]        (neutral_term 0 = Min; 1 = Max: argmax; 2 = Off)
//   term(k, nodes) = mean over nodes of -log clamp(p[node][k], c, 1)
//   nodes: mode 0 (One) the selected node; 1 (FullT) every valid node of its frame;
//          2 (FullU) every valid node of its predictor position
//   cost_b  = term(k*, nodes(t1,u1)) + term(n, nodes(t2,u2))
//   d term / d z[node] = w (softmax(z[node]) - onehot(k)), w = 1 / |nodes|, zero where p < c
//
// A NaN in a valid row makes the cost NaN and puts NaN in row (0, 0) of the gradient, as the
// CPU reference does. The gradient written is g_b * d cost_b / d z (g_b: incoming gradient,
// reduction folded in); rows not selected are zero.
//
// Shapes (row-major, offsets 64-bit):
//   logits      [B][T][U+1][K]   f32 / f16 / bf16 / f64
//   labels      [B]              u32, < K
//   logit_lens  [B], target_lens [B]   u32
//   costs       [B]              f64
//   grad_costs  [B]              f64
//   grad        [B][T][U+1][K]   f32 (f64 for f64 logits), zeroed by the caller; the host
//                                casts it to the logits' dtype. May be null (and grad_costs
//                                with it): then only the costs are written.
//
// Launch contract: pool_<dt>: grid (B), block 256, shared memory 256 * 16 bytes. One block
// per utterance: selection by a block-wide arg-max / arg-min reduction over the valid nodes,
// then the two terms one after the other (a node selected twice accumulates without atomics).

#include "common.cuh"

using namespace ent;

namespace {

constexpr int MAX_K = 64;  // classes held in registers per node; the host refuses more

struct Best {
    double v;
    int64_t i;
};

// Better for arg-max (larger, then earlier) or arg-min (smaller, then earlier).
__device__ __forceinline__ bool better(Best a, Best b, bool max) {
    if (a.v == b.v) return a.i < b.i;
    return max ? a.v > b.v : a.v < b.v;
}

template <typename T>
__device__ void log_softmax(const T* z, int k, double* out) {
    double m = -INFINITY;
    for (int c = 0; c < k; ++c) m = fmax(m, to_f64(z[c]));
    double s = 0.0;
    for (int c = 0; c < k; ++c) s += exp(to_f64(z[c]) - m);
    const double lse = m + log(s);
    for (int c = 0; c < k; ++c) out[c] = to_f64(z[c]) - lse;
}

// Block-wide reduction of a Best; every thread gets the result.
__device__ Best block_best(Best mine, bool max, Best* sh) {
    sh[threadIdx.x] = mine;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s && better(sh[threadIdx.x + s], sh[threadIdx.x], max))
            sh[threadIdx.x] = sh[threadIdx.x + s];
        __syncthreads();
    }
    Best r = sh[0];
    __syncthreads();
    return r;
}

__device__ double block_sum(double mine, double* sh) {
    sh[threadIdx.x] = mine;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

template <typename E, typename G>
__device__ void pool(const E* __restrict__ logits, const uint32_t* __restrict__ labels,
                     const uint32_t* __restrict__ logit_lens,
                     const uint32_t* __restrict__ target_lens, double* __restrict__ costs,
                     const double* __restrict__ grad_costs, G* __restrict__ grad, int64_t T,
                     int64_t U1, int k, int neutral, int mode, int neutral_term,
                     double prob_clamp) {
    ENT_DYNAMIC_SHARED(unsigned char, smem);
    Best* shb = reinterpret_cast<Best*>(smem);
    double* shd = reinterpret_cast<double*>(smem);
    const int64_t b = blockIdx.x;
    const int64_t tn = logit_lens[b], un = (int64_t)target_lens[b] + 1;
    const int label = (int)labels[b];
    const int64_t base = b * T * U1;
    auto row = [&](int64_t t, int64_t u) { return logits + (base + t * U1 + u) * k; };
    double lp[MAX_K];

    // Selection.
    Best emo{-INFINITY, INT64_MAX};
    Best neu{neutral_term == 0 ? INFINITY : -INFINITY, INT64_MAX};
    int nan = 0;
    for (int64_t i = threadIdx.x; i < tn * un; i += blockDim.x) {
        log_softmax(row(i / un, i % un), k, lp);
        const double e = lp[label], n = lp[neutral];
        nan |= isnan(e) || isnan(n);
        if (better(Best{e, i}, emo, true)) emo = Best{e, i};
        if (better(Best{n, i}, neu, neutral_term != 0)) neu = Best{n, i};
    }
    nan = __syncthreads_or(nan);
    emo = block_best(emo, true, shb);
    neu = block_best(neu, neutral_term != 0, shb);
    const bool want_grad = grad != nullptr;
    const double g = want_grad ? grad_costs[b] : 0.0;
    if (nan) {
        if (threadIdx.x == 0) {
            costs[b] = NAN;
            if (want_grad)
                for (int c = 0; c < k; ++c) grad[base * k + c] = (G)NAN;
        }
        return;
    }

    // Terms.
    double cost = 0.0;
    const int terms = neutral_term == 2 ? 1 : 2;
    for (int term = 0; term < terms; ++term) {
        const int cls = term == 0 ? label : neutral;
        const int64_t sel = term == 0 ? emo.i : neu.i;
        const int64_t ts = sel / un, us = sel % un;
        const int64_t count = mode == 0 ? 1 : (mode == 1 ? un : tn);
        const double w = 1.0 / (double)count;
        for (int64_t j = threadIdx.x; j < count; j += blockDim.x) {
            const int64_t t = mode == 2 ? j : ts;
            const int64_t u = mode == 1 ? j : (mode == 2 ? us : us);
            log_softmax(row(t, u), k, lp);
            const double prob = exp(lp[cls]);
            if (prob < prob_clamp) {
                cost -= w * log(prob_clamp);
            } else {
                cost -= w * lp[cls];
                if (!want_grad) continue;
                G* out = grad + (base + t * U1 + u) * k;
                for (int c = 0; c < k; ++c) {
                    const double d = w * exp(lp[c]) - (c == cls ? w : 0.0);
                    out[c] = (G)((double)out[c] + g * d);
                }
            }
        }
        __syncthreads();  // a node selected by both terms is updated by one term at a time
    }
    cost = block_sum(cost, shd);
    if (threadIdx.x == 0) costs[b] = cost;
}

}  // namespace

#define POOL_ENTRY(DT, TY, GT)                                                                  \
    extern "C" __global__ void pool_##DT(                                                      \
        const TY* logits, const uint32_t* labels, const uint32_t* logit_lens,                   \
        const uint32_t* target_lens, double* costs, const double* grad_costs, GT* grad,         \
        int64_t T, int64_t U1, int32_t k, int32_t neutral, int32_t mode, int32_t neutral_term, \
        double prob_clamp) {                                                                    \
        pool<TY, GT>(logits, labels, logit_lens, target_lens, costs, grad_costs, grad, T, U1,   \
                     k, neutral, mode, neutral_term, prob_clamp);                               \
    }

POOL_ENTRY(f32, float, float)
POOL_ENTRY(f64, double, double)
POOL_ENTRY(f16, __half, float)
POOL_ENTRY(bf16, __nv_bfloat16, float)
