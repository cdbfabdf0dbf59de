// The LSTM recurrence of ent-model (crates/ent-model/src/lstm.rs, whose CPU op is the oracle)
// on the GPU: one direction of one layer over a padded batch, the input projection
// gx = x W_ih^T + b_ih + b_hh already computed (one GEMM for all frames, by the caller).
//
// Utterance b runs over its own len_b frames: step s < len_b is frame t = s forwards, or
// t = len_b - 1 - s in reverse; h_prev = c_prev = 0 at step 0.
//
//   forward:  a = gx[b,t] + W_hh h_prev              (a = [a_i; a_f; a_g; a_o], each H wide)
//             i, f, o = sigmoid(a_i, a_f, a_o); g = tanh(a_g)
//             c = f c_prev + i g;  h = o tanh(c)
//   backward, walking the steps the other way, dh_rec = dc_rec = 0 at the last step:
//             dh = grad_hidden[b,t] + dh_rec
//             dc = dh o (1 - tanh(c)^2) + dc_rec
//             da = [dc g i(1-i); dc c_prev f(1-f); dc i (1-g^2); dh tanh(c) o(1-o)] = grad_gx[b,t]
//             dh_rec = W_hh^T da;  dc_rec = dc f
//   (dW_hh = sum over frames of da h_prev^T is one GEMM over grad_gx, by the caller.)
//
// Shapes (row-major, offsets 64-bit), F = float or double:
//   gx          [B][T][4H]   F
//   w_hh        [4H][H]      F
//   lens        [B]          u32, <= T
//   hidden      [B][T][H]    F, written everywhere (zero at t >= len_b)
//   gates       [B][T][4H]   F, i, f, g, o after their nonlinearity, written at valid frames
//   cells       [B][T][H]    F, c, written at valid frames
//   grad_hidden [B][T][H]    F
//   grad_gx     [B][T][4H]   F, written everywhere (zero at t >= len_b)
//
// Launch contract: lstm_forward_<dt>: grid (B), block a multiple of 32 (at most 1024), shared
// memory 5H elements (h_prev and a); lstm_backward_<dt>: grid (B), the same block, shared memory
// 6H elements (dh_rec, dc_rec, da). One block per utterance runs all its steps, two barriers
// per step: the matrix-vector product W_hh h_prev with one warp per row of W_hh (coalesced
// along H), then the gates with one thread per hidden unit; in the backward pass one thread
// per hidden unit for the gates, then W_hh^T da with one thread per column of W_hh. Every sum
// runs in a fixed order: results do not depend on the block size's scheduling.

#include "common.cuh"

using namespace ent;

namespace {

__device__ __forceinline__ float tanh_acc(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh_acc(double x) { return tanh(x); }

template <typename F>
__device__ __forceinline__ F sigmoid(F x) {
    return F(1) / (F(1) + exp_acc(-x));
}

template <typename F>
__device__ __forceinline__ F warp_sum(F x) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
    return x;
}

template <typename F>
__device__ void lstm_forward(const F* __restrict__ gx, const F* __restrict__ w,
                             const uint32_t* __restrict__ lens, F* __restrict__ hidden,
                             F* __restrict__ gates, F* __restrict__ cells, int64_t T, int64_t H,
                             int32_t reverse) {
    ENT_DYNAMIC_SHARED(unsigned char, smem);
    F* h_prev = reinterpret_cast<F*>(smem);  // [H]
    F* a = h_prev + H;                         // [4H]
    const int64_t b = blockIdx.x;
    const int64_t len = lens[b];
    const int64_t G = 4 * H;
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    const int warps = blockDim.x / 32;

    for (int64_t i = (b * T + len) * H + threadIdx.x; i < (b + 1) * T * H; i += blockDim.x)
        hidden[i] = F(0);
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x) h_prev[j] = F(0);
    __syncthreads();

    for (int64_t s = 0; s < len; ++s) {
        const int64_t t = reverse ? len - 1 - s : s;
        const int64_t tp = reverse ? t + 1 : t - 1;
        const F* x = gx + (b * T + t) * G;
        for (int64_t r = warp; r < G; r += warps) {
            const F* wr = w + r * H;
            F acc = F(0);
            for (int64_t k = lane; k < H; k += 32) acc += wr[k] * h_prev[k];
            acc = warp_sum(acc);
            if (lane == 0) a[r] = x[r] + acc;
        }
        __syncthreads();  // a complete; every read of h_prev done
        F* gr = gates + (b * T + t) * G;
        for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
            const F i = sigmoid(a[j]);
            const F f = sigmoid(a[H + j]);
            const F g = tanh_acc(a[2 * H + j]);
            const F o = sigmoid(a[3 * H + j]);
            const F cp = s > 0 ? cells[(b * T + tp) * H + j] : F(0);
            const F c = f * cp + i * g;
            const F h = o * tanh_acc(c);
            gr[j] = i;
            gr[H + j] = f;
            gr[2 * H + j] = g;
            gr[3 * H + j] = o;
            cells[(b * T + t) * H + j] = c;
            hidden[(b * T + t) * H + j] = h;
            h_prev[j] = h;
        }
        __syncthreads();  // h_prev complete; every read of a done
    }
}

template <typename F>
__device__ void lstm_backward(const F* __restrict__ grad_hidden, const F* __restrict__ w,
                              const F* __restrict__ gates, const F* __restrict__ cells,
                              const uint32_t* __restrict__ lens, F* __restrict__ grad_gx,
                              int64_t T, int64_t H, int32_t reverse) {
    ENT_DYNAMIC_SHARED(unsigned char, smem);
    F* dh_rec = reinterpret_cast<F*>(smem);  // [H]
    F* dc_rec = dh_rec + H;                    // [H]
    F* da = dc_rec + H;                        // [4H]
    const int64_t b = blockIdx.x;
    const int64_t len = lens[b];
    const int64_t G = 4 * H;

    for (int64_t i = (b * T + len) * G + threadIdx.x; i < (b + 1) * T * G; i += blockDim.x)
        grad_gx[i] = F(0);
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
        dh_rec[j] = F(0);
        dc_rec[j] = F(0);
    }
    __syncthreads();

    for (int64_t s = len - 1; s >= 0; --s) {
        const int64_t t = reverse ? len - 1 - s : s;
        const int64_t tp = reverse ? t + 1 : t - 1;
        const F* gr = gates + (b * T + t) * G;
        F* dg = grad_gx + (b * T + t) * G;
        for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
            const F i = gr[j];
            const F f = gr[H + j];
            const F g = gr[2 * H + j];
            const F o = gr[3 * H + j];
            const F tc = tanh_acc(cells[(b * T + t) * H + j]);
            const F cp = s > 0 ? cells[(b * T + tp) * H + j] : F(0);
            const F dh = grad_hidden[(b * T + t) * H + j] + dh_rec[j];
            const F dc = dh * o * (F(1) - tc * tc) + dc_rec[j];
            const F di = dc * g * i * (F(1) - i);
            const F df = dc * cp * f * (F(1) - f);
            const F dgg = dc * i * (F(1) - g * g);
            const F dout = dh * tc * o * (F(1) - o);
            da[j] = di;
            da[H + j] = df;
            da[2 * H + j] = dgg;
            da[3 * H + j] = dout;
            dg[j] = di;
            dg[H + j] = df;
            dg[2 * H + j] = dgg;
            dg[3 * H + j] = dout;
            dc_rec[j] = dc * f;
        }
        __syncthreads();  // da complete; every read of dh_rec done
        if (s > 0) {
            for (int64_t k = threadIdx.x; k < H; k += blockDim.x) {
                F acc = F(0);
                for (int64_t r = 0; r < G; ++r) acc += w[r * H + k] * da[r];
                dh_rec[k] = acc;
            }
        }
        __syncthreads();  // dh_rec complete; every read of da done
    }
}

}  // namespace

#define LSTM_ENTRY(DT, TY)                                                                      \
    extern "C" __global__ void lstm_forward_##DT(const TY* gx, const TY* w_hh,                  \
                                                 const uint32_t* lens, TY* hidden, TY* gates,   \
                                                 TY* cells, int64_t T, int64_t H,               \
                                                 int32_t reverse) {                             \
        lstm_forward<TY>(gx, w_hh, lens, hidden, gates, cells, T, H, reverse);                  \
    }                                                                                           \
    extern "C" __global__ void lstm_backward_##DT(const TY* grad_hidden, const TY* w_hh,        \
                                                  const TY* gates, const TY* cells,             \
                                                  const uint32_t* lens, TY* grad_gx, int64_t T, \
                                                  int64_t H, int32_t reverse) {                 \
        lstm_backward<TY>(grad_hidden, w_hh, gates, cells, lens, grad_gx, T, H, reverse);       \
    }

LSTM_ENTRY(f32, float)
LSTM_ENTRY(f64, double)
