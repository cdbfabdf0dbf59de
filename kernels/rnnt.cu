// RNN-T loss on the GPU: the same computation as ent-lattice's CPU reference (src/rnnt.rs),
// which is the oracle of the parity tests.
//
// Utterance b has T_b = logit_lens[b] frames and U_b = target_lens[b] labels y_1..y_U; its
// valid nodes are (t, u) with t < T_b, u <= U_b. With z = logits[b][t][u][:]:
//
//   D[t,u]        = log sum_v exp(z_v)                               (log-softmax normaliser)
//   blank[t,u]    = z_blank - D[t,u]
//   label[t,u]    = z_{y_{u+1}} - D[t,u]                               (u < U_b)
//   alpha[0,0]    = 0
//   alpha[t,u]    = logadd(alpha[t-1,u] + blank[t-1,u], alpha[t,u-1] + label[t,u-1])
//   beta[T-1,U]   = blank[T-1,U]
//   beta[t,u]     = logadd(beta[t+1,u] + blank[t,u], beta[t,u+1] + label[t,u])
//   log P         = alpha[T-1,U] + blank[T-1,U]      (= beta[0,0]; both are written, the host
//                                                       compares them)
//   cost_b        = -log P
//   Bc[t,u]       = exp(alpha[t,u] + blank[t,u] + beta'[t+1,u] - log P),
//                   beta'[T,U] = 0, beta'[T,u<U] = -inf
//   Lc[t,u]       = (1 + lambda) exp(alpha[t,u] + label[t,u] + beta[t,u+1] - log P)   (u < U)
//   d cost / d z_v = softmax(z)_v (Bc + Lc) - [v = blank] Bc - [v = y_{u+1}] Lc
//
// FastEmit (lambda) scales the label term of the gradient only, as torchaudio does. The
// gradient written is g_b * d cost_b / d z (g_b: the incoming gradient of utterance b, the
// reduction folded in), clamped to [-c |g_b|, c |g_b|] when clamp c > 0; padded rows are zero.
// An unreachable target (log P = -inf, only -inf logits cause it) costs +inf with zero gradient.
// NaN or +inf in a valid row makes D NaN, and so the utterance's cost and gradient.
//
// Shapes (all row-major, offsets 64-bit):
//   logits      [B][T][U+1][V]   f32 / f16 / bf16 / f64
//   targets     [B][U]           u32
//   logit_lens  [B]              u32, 1 <= logit_lens[b] <= T
//   target_lens [B]              u32, target_lens[b] <= U
//   lp          [B][T][U+1][3]   f64 scratch: blank, label, D
//   alpha, beta [B][T][U+1]      f64 scratch
//   log_p       [B][2]           f64: log P from alpha and from beta
//   costs       [B]              f64: -log P (0 for +inf with zero_infinity)
//   grad_costs  [B]              f64
//   grad        [B][T][U+1][V]   same dtype as logits
//
// Launch contracts:
//   rnnt_normalize_<dt>:  grid (ceil(B*T*(U+1) / 8)), block 256 (8 warps, one row per warp),
//                         no shared memory.
//   rnnt_alpha_beta:      grid (B, 2) (y = 0: alpha, y = 1: beta), block 256,
//                         shared memory 2 * (U+1) * 8 bytes. The anti-diagonal wavefront
//                         t + u = d advances one diagonal per step inside one block: no
//                         cross-block synchronisation.
//   rnnt_costs:           grid (ceil(B / 256)), block 256, no shared memory.
//   rnnt_grad_<dt>:       grid (ceil(B*T*(U+1) / 8)), block 256 (one row per warp); one
//                         streaming pass over the logits writing the gradient.
//
// f64 logits are computed in f64 throughout; f32, f16 and bf16 rows in f32 (the lattice is
// f64 for every type), as the CPU reference does.

#include "common.cuh"

using namespace ent;

namespace {

struct Dims {
    int64_t B, T, U1, V;
};

// The lattice row (b, t, u) of this warp: one warp per row, 8 warps per 256-thread block.
struct WarpRow {
    int64_t row, b, t, u;
    bool in_range;
};

__device__ __forceinline__ WarpRow warp_row(Dims d) {
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    return WarpRow{row, row / (d.T * d.U1), (row / d.U1) % d.T, row % d.U1,
                   row < d.B * d.T * d.U1};
}

template <typename T>
__device__ void normalize_row(const T* __restrict__ logits, const uint32_t* __restrict__ targets,
                              const uint32_t* __restrict__ logit_lens,
                              const uint32_t* __restrict__ target_lens, double* __restrict__ lp,
                              Dims d, int64_t blank) {
    const int lane = threadIdx.x & 31;
    const WarpRow r = warp_row(d);
    if (!r.in_range) return;
    const int64_t row = r.row, b = r.b, t = r.t, u = r.u;
    const int64_t ub = target_lens[b];
    if (t >= (int64_t)logit_lens[b] || u > ub) return;  // padding: never read
    const T* z = logits + row * d.V;
    Lse<acc_t<T>> acc;
    for_row(z, d.V, lane, 32, [&](int64_t, acc_t<T> x) { acc.push(x); });
    acc = warp_lse(acc);
    if (lane == 0) {
        const double D = (double)acc.log_norm();
        double* o = lp + row * 3;
        o[0] = to_f64(z[blank]) - D;
        o[1] = u < ub ? to_f64(z[targets[b * (d.U1 - 1) + u]]) - D : -INFINITY;
        o[2] = D;
    }
}

// One direction of one utterance, as an anti-diagonal wavefront: step k computes every node
// with t + u = k (alpha) or (T_b - 1 - t) + (U_b - u) = k (beta), each from the previous
// diagonal held in shared memory.
__device__ void alpha_beta(const double* __restrict__ lp, const uint32_t* __restrict__ logit_lens,
                           const uint32_t* __restrict__ target_lens, double* __restrict__ alpha,
                           double* __restrict__ beta, double* __restrict__ log_p, Dims d) {
    ENT_DYNAMIC_SHARED(double, diag);  // [2][U+1]
    const int64_t b = blockIdx.x;
    const bool backward = blockIdx.y == 1;
    const int64_t tn = logit_lens[b], un = (int64_t)target_lens[b] + 1;
    double* prev = diag;
    double* next = diag + d.U1;
    const int64_t base = b * d.T * d.U1;
    auto node = [&](int64_t t, int64_t u) { return base + t * d.U1 + u; };
    auto blank = [&](int64_t t, int64_t u) { return lp[node(t, u) * 3 + 0]; };
    auto label = [&](int64_t t, int64_t u) { return lp[node(t, u) * 3 + 1]; };
    double* out = backward ? beta : alpha;
    for (int64_t k = 0; k < tn + un - 1; ++k) {
        for (int64_t u = threadIdx.x; u < un; u += blockDim.x) {
            // Forward: t = k - u. Backward: node (t, u) with (tn-1-t) + (un-1-u) = k.
            const int64_t t = backward ? (tn - 1) - (k - (un - 1 - u)) : k - u;
            double v = -INFINITY;
            if (t >= 0 && t < tn) {
                if (!backward) {
                    if (t == 0 && u == 0) {
                        v = 0.0;
                    } else {
                        const double from_t = t > 0 ? prev[u] + blank(t - 1, u) : -INFINITY;
                        const double from_u = u > 0 ? prev[u - 1] + label(t, u - 1) : -INFINITY;
                        v = log_add(from_t, from_u);
                    }
                } else {
                    if (t == tn - 1 && u == un - 1) {
                        v = blank(t, u);
                    } else {
                        const double via_blank = t + 1 < tn ? prev[u] + blank(t, u) : -INFINITY;
                        const double via_label =
                            u + 1 < un ? prev[u + 1] + label(t, u) : -INFINITY;
                        v = log_add(via_blank, via_label);
                    }
                }
                out[node(t, u)] = v;
            }
            next[u] = v;
        }
        __syncthreads();
        double* tmp = prev;
        prev = next;
        next = tmp;
    }
    if (threadIdx.x == 0) {
        log_p[b * 2 + (backward ? 1 : 0)] =
            backward ? beta[node(0, 0)]
                     : alpha[node(tn - 1, un - 1)] + blank(tn - 1, un - 1);
    }
}

template <typename T>
__device__ void grad_row(const T* __restrict__ logits, const uint32_t* __restrict__ targets,
                         const uint32_t* __restrict__ logit_lens,
                         const uint32_t* __restrict__ target_lens,
                         const double* __restrict__ lp, const double* __restrict__ alpha,
                         const double* __restrict__ beta, const double* __restrict__ log_p,
                         const double* __restrict__ grad_costs, T* __restrict__ grad, Dims d,
                         int64_t blank, float lambda, float clamp) {
    using A = acc_t<T>;
    const int lane = threadIdx.x & 31;
    const WarpRow r = warp_row(d);
    if (!r.in_range) return;
    const int64_t row = r.row, b = r.b, t = r.t, u = r.u;
    const int64_t tn = logit_lens[b], ub = target_lens[b];
    T* g_row = grad + row * d.V;
    if (t >= tn || u > ub) {
        for (int64_t i = lane; i < d.V; i += 32) g_row[i] = from_acc<T>(A(0));
        return;
    }
    const double g = grad_costs[b];
    const double lpp = log_p[b * 2];
    const int64_t un = ub + 1;
    const int64_t base = b * d.T * d.U1;
    double bc = 0.0, lc = 0.0;
    if (lpp != -INFINITY) {  // unreachable target: zero gradient
        const double a = alpha[row];
        const double bl = lp[row * 3 + 0];
        const double beta_next_t = t + 1 < tn ? beta[base + (t + 1) * d.U1 + u]
                                   : (u == un - 1 ? 0.0 : -INFINITY);
        bc = exp(a + bl + beta_next_t - lpp);
        if (u < ub) {
            lc = (1.0 + (double)lambda) *
                 exp(a + lp[row * 3 + 1] + beta[base + t * d.U1 + u + 1] - lpp);
        }
    }
    const A D = (A)lp[row * 3 + 2];
    const A common = (A)((bc + lc) * g);
    const A gb = (A)(bc * g), gl = (A)(lc * g);
    const int64_t y = u < ub ? (int64_t)targets[b * (d.U1 - 1) + u] : -1;
    // The clamp's bound in f32 for every type, as the CPU reference computes it.
    const A lim = clamp > 0.f ? (A)(clamp * (float)fabs(g)) : (A)INFINITY;
    const T* z = logits + row * d.V;
    for_row(z, d.V, lane, 32, [&](int64_t v, A x) {
        A r = exp_acc(x - D) * common;
        if (v == blank) r -= gb;
        if (v == y) r -= gl;
        r = r < -lim ? -lim : (r > lim ? lim : r);
        g_row[v] = from_acc<T>(r);
    });
}

}  // namespace

extern "C" __global__ void rnnt_alpha_beta(const double* lp, const uint32_t* logit_lens,
                                           const uint32_t* target_lens, double* alpha,
                                           double* beta, double* log_p, int64_t B, int64_t T,
                                           int64_t U1) {
    alpha_beta(lp, logit_lens, target_lens, alpha, beta, log_p, Dims{B, T, U1, 0});
}

extern "C" __global__ void rnnt_costs(const double* log_p, double* costs, int64_t B,
                                      int32_t zero_infinity) {
    const int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= B) return;
    const double c = -log_p[b * 2];
    costs[b] = (zero_infinity && c == INFINITY) ? 0.0 : c;
}

#define RNNT_ENTRY(DT, TY)                                                                     \
    extern "C" __global__ void rnnt_normalize_##DT(                                           \
        const TY* logits, const uint32_t* targets, const uint32_t* logit_lens,                 \
        const uint32_t* target_lens, double* lp, int64_t B, int64_t T, int64_t U1, int64_t V, \
        int64_t blank) {                                                                       \
        normalize_row<TY>(logits, targets, logit_lens, target_lens, lp, Dims{B, T, U1, V},     \
                          blank);                                                              \
    }                                                                                          \
    extern "C" __global__ void rnnt_grad_##DT(                                                \
        const TY* logits, const uint32_t* targets, const uint32_t* logit_lens,                 \
        const uint32_t* target_lens, const double* lp, const double* alpha,                    \
        const double* beta, const double* log_p, const double* grad_costs, TY* grad,           \
        int64_t B, int64_t T, int64_t U1, int64_t V, int64_t blank, float lambda,             \
        float clamp) {                                                                         \
        grad_row<TY>(logits, targets, logit_lens, target_lens, lp, alpha, beta, log_p,         \
                     grad_costs, grad, Dims{B, T, U1, V}, blank, lambda, clamp);               \
    }

RNNT_ENTRY(f32, float)
RNNT_ENTRY(f64, double)
RNNT_ENTRY(f16, __half)
RNNT_ENTRY(bf16, __nv_bfloat16)
