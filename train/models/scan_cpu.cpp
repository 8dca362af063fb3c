// The selective scan core on the CPU, run along time keeping only one channel's state.
//
//     h_t = exp(delta_t * A) * h_{t-1} + delta_t * u_t * B_t,   y_t = <C_t, h_t>
//
// Plain C entry points (loaded with ctypes by scan_fused.py), one per dtype. Layouts, all
// contiguous: u, delta, y (batch, dim, L); A (dim, state); B (batch, gb, L, state);
// C (batch, gc, L, state) -- time-major per group, so B_t and C_t are contiguous state vectors.
// Work is split into items (batch b, channel chunk k of `chunks`), run on `threads` threads.
// The backward recomputes each channel's decays and states into a per-thread (L, state) buffer,
// then runs the reverse recurrence. Sums over channels (dB, dC) and over batch (dA) go to
// per-item slots so no two threads write one place; the caller adds the slots up.

#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

namespace {

// With OpenMP the items run on the OpenMP pool of the process. Linked by soname (libgomp.so.1),
// that is the pool torch already loaded, so the kernel shares torch's threads instead of
// competing with them while they spin-wait after a torch op.
template <typename F>
void run_items(int64_t n_items, int64_t threads, F &&body) {
    if (threads > n_items) threads = n_items;
    if (threads <= 1) {
        for (int64_t i = 0; i < n_items; ++i) body(i);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int64_t i = 0; i < n_items; ++i) body(i);
#else
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (int64_t w = 0; w < threads; ++w) {
        pool.emplace_back([&, w] {
            for (int64_t i = w; i < n_items; i += threads) body(i);
        });
    }
    for (auto &th : pool) th.join();
#endif
}

struct Dims {
    int64_t batch, dim, length, state, gb, gc, chunks;
    int64_t chunk_begin(int64_t k) const { return k * dim / chunks; }
};

// NS > 0: the state size known at compile time (the common 16, 8, 4), so the state loop unrolls
// into whole vector registers (a third faster at state 16); NS = 0: any state size.
template <typename T, int NS>
void forward(const T *u, const T *delta, const T *A, const T *B, const T *C, T *y, T *last,
             Dims s, int64_t threads) {
    const int64_t L = s.length, N = NS ? NS : s.state;
    run_items(s.batch * s.chunks, threads, [&](int64_t item) {
        const int64_t b = item / s.chunks, k = item % s.chunks;
        std::vector<T> h(N);
        for (int64_t d = s.chunk_begin(k); d < s.chunk_begin(k + 1); ++d) {
            const int64_t row = (b * s.dim + d) * L;
            const T *Ad = A + d * N;
            const T *Bg = B + (b * s.gb + d / (s.dim / s.gb)) * L * N;
            const T *Cg = C + (b * s.gc + d / (s.dim / s.gc)) * L * N;
            T *hp = h.data();
            for (int64_t n = 0; n < N; ++n) hp[n] = 0;
            for (int64_t t = 0; t < L; ++t) {
                const T dt = delta[row + t], du = dt * u[row + t];
                const T *Bt = Bg + t * N, *Ct = Cg + t * N;
                T acc = 0;
                for (int64_t n = 0; n < N; ++n) {
                    hp[n] = std::exp(dt * Ad[n]) * hp[n] + du * Bt[n];
                    acc += hp[n] * Ct[n];
                }
                y[row + t] = acc;
            }
            T *ld = last + (b * s.dim + d) * N;
            for (int64_t n = 0; n < N; ++n) ld[n] = hp[n];
        }
    });
}

// One reverse step over the state: g = dL/dh_t on exit (before the decay a_t is applied).
template <typename T>
inline void reverse_step(int64_t N, T gy, T dt, T dut, const T *__restrict__ Bt,
                         const T *__restrict__ Ct, const T *__restrict__ at,
                         const T *__restrict__ ht, const T *__restrict__ hprev,
                         const T *__restrict__ Ad, T *__restrict__ dBt, T *__restrict__ dCt,
                         T *__restrict__ g, T *__restrict__ dAd, T *g_b_out, T *g_x_out) {
    T g_b = 0, g_x = 0;
    for (int64_t n = 0; n < N; ++n) {
        dCt[n] += gy * ht[n];
        const T gn = g[n] + gy * Ct[n];
        dBt[n] += gn * dut;
        g_b += gn * Bt[n];
        const T x = gn * hprev[n] * at[n];  // dL/d(dt A_n)
        g_x += x * Ad[n];
        dAd[n] += x * dt;
        g[n] = gn * at[n];
    }
    *g_b_out = g_b;
    *g_x_out = g_x;
}

// Run F<NS> with the state size as a compile-time constant where it is a common one.
template <template <int> class F, typename... Args>
void dispatch_state(int64_t state, Args &&...args) {
    switch (state) {
        case 16: F<16>::run(args...); break;
        case 8: F<8>::run(args...); break;
        case 4: F<4>::run(args...); break;
        default: F<0>::run(args...);
    }
}

// grad_last may be null. Outputs: du, ddelta (batch, dim, L); dA (batch, dim, state), summed
// over batch by the caller; dB (batch, chunks, gb, L, state) and dC (batch, chunks, gc, L, state),
// zero on entry, summed over chunks by the caller.
// (A compile-time state size does not help here: gcc then unrolls the state loop of
// reverse_step and no longer vectorises it, which is three times slower.)
template <typename T>
void backward(const T *u, const T *delta, const T *A, const T *B, const T *C, const T *grad_y,
              const T *grad_last, T *du, T *ddelta, T *dA, T *dB, T *dC, Dims s, int64_t threads) {
    const int64_t L = s.length, N = s.state;
    run_items(s.batch * s.chunks, threads, [&](int64_t item) {
        const int64_t b = item / s.chunks, k = item % s.chunks;
        std::vector<T> decay(L * N), states(L * N), g(N), zero(N, T(0));
        for (int64_t d = s.chunk_begin(k); d < s.chunk_begin(k + 1); ++d) {
            const int64_t row = (b * s.dim + d) * L;
            const int64_t grp_b = d / (s.dim / s.gb), grp_c = d / (s.dim / s.gc);
            const T *Ad = A + d * N;
            const T *Bg = B + (b * s.gb + grp_b) * L * N;
            const T *Cg = C + (b * s.gc + grp_c) * L * N;
            T *dBg = dB + ((b * s.chunks + k) * s.gb + grp_b) * L * N;
            T *dCg = dC + ((b * s.chunks + k) * s.gc + grp_c) * L * N;
            T *a = decay.data(), *h = states.data(), *gp = g.data();
            // Recompute the forward: decays a_t and states h_t of this channel.
            for (int64_t t = 0; t < L; ++t) {
                const T dt = delta[row + t], dut = dt * u[row + t];
                const T *Bt = Bg + t * N, *hprev = t ? h + (t - 1) * N : zero.data();
                T *at = a + t * N, *ht = h + t * N;
                for (int64_t n = 0; n < N; ++n) {
                    at[n] = std::exp(dt * Ad[n]);
                    ht[n] = at[n] * hprev[n] + dut * Bt[n];
                }
            }
            // Reverse: g = dL/dh_t, carried back through a_t.
            const T *gl = grad_last ? grad_last + (b * s.dim + d) * N : nullptr;
            for (int64_t n = 0; n < N; ++n) gp[n] = gl ? gl[n] : T(0);
            T *dAd = dA + (b * s.dim + d) * N;
            for (int64_t t = L - 1; t >= 0; --t) {
                const T dt = delta[row + t], ut = u[row + t], gy = grad_y[row + t];
                const T dut = dt * ut;
                const T *ht = h + t * N, *hprev = t ? ht - N : zero.data();
                T g_b = 0, g_x = 0;
                reverse_step(N, gy, dt, dut, Bg + t * N, Cg + t * N, a + t * N, ht, hprev, Ad,
                             dBg + t * N, dCg + t * N, gp, dAd, &g_b, &g_x);
                du[row + t] = g_b * dt;
                ddelta[row + t] = g_b * ut + g_x;
            }
        }
    });
}

template <typename T>
struct Fwd {
    template <int NS>
    struct At {
        static void run(const T *u, const T *delta, const T *A, const T *B, const T *C, T *y,
                        T *last, Dims s, int64_t threads) {
            forward<T, NS>(u, delta, A, B, C, y, last, s, threads);
        }
    };
};

}  // namespace

extern "C" {

#define SCAN_ENTRY(T, SUFFIX)                                                                   \
    void scan_forward_##SUFFIX(const T *u, const T *delta, const T *A, const T *B, const T *C,  \
                               T *y, T *last, int64_t batch, int64_t dim, int64_t length,       \
                               int64_t state, int64_t gb, int64_t gc, int64_t chunks,           \
                               int64_t threads) {                                               \
        dispatch_state<Fwd<T>::template At>(state, u, delta, A, B, C, y, last,                  \
                                            Dims{batch, dim, length, state, gb, gc, chunks},    \
                                            threads);                                           \
    }                                                                                           \
    void scan_backward_##SUFFIX(const T *u, const T *delta, const T *A, const T *B, const T *C, \
                                const T *grad_y, const T *grad_last, T *du, T *ddelta, T *dA,   \
                                T *dB, T *dC, int64_t batch, int64_t dim, int64_t length,       \
                                int64_t state, int64_t gb, int64_t gc, int64_t chunks,          \
                                int64_t threads) {                                              \
        backward<T>(u, delta, A, B, C, grad_y, grad_last, du, ddelta, dA, dB, dC,               \
                    Dims{batch, dim, length, state, gb, gc, chunks}, threads);                  \
    }

SCAN_ENTRY(float, f32)
SCAN_ENTRY(double, f64)

int scan_abi_version() { return 1; }
}
