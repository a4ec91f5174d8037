/* fci's CPU training kernel: whole fit() runs of small masked MLPs, one model
 * at a time.
 *
 * A model of fci's studies is tiny (tens to a few thousand parameters) and its
 * training set fits in a core's L2 cache, so on a CPU the fastest way to train
 * many of them is to train each one start to finish in a tight loop: its
 * parameters, optimiser moments and gradient stay in L1, every minibatch step is
 * a few thousand fused multiply-adds with no framework call in between, and no
 * work is spent on padding (each model runs at its own layer sizes). Models are
 * independent, so callers run ranges of them on several threads; a model's
 * result depends only on its own data, parameters and the minibatch orders,
 * never on which models share its stack or thread.
 *
 * It computes exactly what fci.train's torch path computes (ReLU MLP, masked
 * gradient, binary or categorical cross-entropy, torch's Adam or plain SGD with
 * L2 weight decay added to the gradient), up to float rounding.
 *
 * Parameter layout, per model, with padded layer sizes pad[0..L]: for l in
 * 0..L-1 the weights, then b_l (pad[l+1]). The weights are stored input-major,
 * Wt_l (pad[l] x pad[l+1]), so that the forward pass and the weight gradient
 * run along contiguous outputs, VB at a time; or, where omaj[l] (a layer l >= 1
 * with few outputs, such as a single logit), output-major, W_l (pad[l+1] x
 * pad[l]), running along its inputs instead, so that no work is spent on the
 * padding of a narrow output. Masks and Adam moments use the same layout.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 16
#define VB 16 /* outputs per block: every pad[l >= 1] is a multiple of VB */

/* VB floats as one value: GCC/Clang lower it to whatever vectors the CPU has
 * (one AVX-512 register, two AVX2 registers, ...). vf_u is its unaligned form. */
typedef float vf __attribute__((vector_size(VB * 4)));
typedef float vf_u __attribute__((vector_size(VB * 4), aligned(4)));
typedef int32_t vi __attribute__((vector_size(VB * 4)));
#ifndef S
#define S 8 /* samples per group (at most VB) */
#endif
#define LD(p) (*(const vf_u *)(p))
#define ST(p, v) (*(vf_u *)(p) = (v))

typedef struct {
    int64_t n_models, L, P, N, n_in, E, B;
    const int64_t *sizes;  /* (n_models, L+1) true layer sizes */
    const int64_t *pad;    /* (L+1) padded layer sizes: the layout */
    const int32_t *omaj;   /* (L) 1 where layer l's weights are stored output-major (l >= 1 only) */
    float *param;          /* (n_models, P) */
    const float *mask;     /* (n_models, P) */
    float *m1, *m2;        /* (n_models, P) Adam moments; unused for SGD */
    const float *x;        /* (n_models, N, n_in) */
    const void *y;         /* (n_models, N, O) float for bce; (n_models, N) int64 class ids for ce */
    const int64_t *perms;  /* (E, N) minibatch orders */
    float *losses;         /* (n_models, E) out: mean train loss per epoch */
    int32_t loss_ce, sgd;
    double lr, beta1, beta2, eps, wd;
    int64_t step0;         /* optimiser steps already taken (Adam's bias correction) */
} fci_fit_args;

int fci_fit_abi(void) { return 2; }

#define SPLAT(c) ((vf){0} + (c))
static inline vf vabs(vf x) { return (vf)((vi)x & 0x7fffffff); }
static inline vf vselect(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); }
/* Sum of a vector's lanes, pairwise (a fixed order: the same result on every run). */
static inline float hsum(vf v) {
    float t[VB];
    memcpy(t, &v, sizeof t);
    for (int w = VB / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) t[j] += t[j + w];
    return t[0];
}
/* hsum of each of S = 8 vectors at once: lane s of the result is the sum of
 * v[s]'s lanes (a fixed pairwise order). Halving shuffles share the work
 * that eight separate reductions would repeat. */
#if S == 8 && VB == 16 && (defined(__clang__) || __GNUC__ >= 12)
#define SHUF __builtin_shufflevector
static inline vf hsum8(const vf *v) {
    vf b[4], c[2];
    for (int j = 0; j < 4; j++)
        b[j] = SHUF(v[2 * j], v[2 * j + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
               SHUF(v[2 * j], v[2 * j + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    for (int j = 0; j < 2; j++)
        c[j] = SHUF(b[2 * j], b[2 * j + 1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
               SHUF(b[2 * j], b[2 * j + 1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    const vf d = SHUF(c[0], c[1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
                 SHUF(c[0], c[1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
    return SHUF(d, d, 0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14) +
           SHUF(d, d, 1, 3, 5, 7, 9, 11, 13, 15, 1, 3, 5, 7, 9, 11, 13, 15);
}
#else
static inline vf hsum8(const vf *v) {
    vf r = SPLAT(0.0f);
    for (int s = 0; s < S; s++) r[s] = hsum(v[s]);
    return r;
}
#endif

static const vi LANES = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* exp(x) for x <= 0, lane-wise (Cephes' expf: range reduction by ln 2 in two
 * parts, degree-5 polynomial; within 2 ulp of expf). Below -87.3 it returns
 * exp(-87.3) ~ 1e-38, which callers add to 1 or to a sum of at least 1. */
static inline vf vexp_nonpos(vf x) {
    x = vselect(x > -87.3f, x, SPLAT(-87.3f));
    /* n = floor(x log2 e + 0.5): truncation toward zero, then one down where it rounded up */
    const vf t = x * 1.44269504088896341f + 0.5f;
    vf n = __builtin_convertvector(__builtin_convertvector(t, vi), vf);
    n = vselect(n > t, n - 1.0f, n);
    vf r = x - n * 0.693359375f + n * 2.12194440e-4f;
    const vf r2 = r * r;
    vf y = SPLAT(1.9875691500e-4f);
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r2 + r + 1.0f;
    const vi pw = (__builtin_convertvector(n, vi) + 127) << 23;
    return y * (vf)pw;
}

/* log(1 + e) for 0 <= e <= 1, lane-wise: 2 atanh(t), t = e / (2 + e) <= 1/3,
 * by its series to t^17 (relative error < 1e-8 before rounding). */
static inline vf vlog1p_unit(vf e) {
    const vf t = e / (2.0f + e), t2 = t * t;
    vf q = SPLAT(1.0f / 17.0f);
    q = q * t2 + 1.0f / 15.0f;
    q = q * t2 + 1.0f / 13.0f;
    q = q * t2 + 1.0f / 11.0f;
    q = q * t2 + 1.0f / 9.0f;
    q = q * t2 + 1.0f / 7.0f;
    q = q * t2 + 1.0f / 5.0f;
    q = q * t2 + 1.0f / 3.0f;
    q = q * t2 + 1.0f;
    return 2.0f * t * q;
}

/* Workspace floats train_one needs for a model of padded sizes pad[0..L]. */
static int64_t workspace(const fci_fit_args *a) {
    int64_t w = a->P + a->n_in;  /* gradient; a zero input row */
    for (int64_t l = 1; l < a->L; l++) w += a->pad[l + 1] * a->pad[l];  /* W_l out-major, l >= 1 */
    for (int64_t l = 1; l <= a->L; l++) w += 2 * S * a->pad[l];  /* activations and their gradients */
    return w;
}

static void train_one(const fci_fit_args *a, int64_t m, float *work) {
    const int64_t L = a->L, P = a->P, N = a->N, n_in = a->n_in, B = a->B;
    const int64_t *sz = a->sizes + m * (L + 1), *pad = a->pad;
    const int32_t *omaj = a->omaj;
    float *restrict p = a->param + m * P;
    const float *restrict mk = a->mask + m * P;
    float *restrict m1 = a->sgd ? NULL : a->m1 + m * P;
    float *restrict m2 = a->sgd ? NULL : a->m2 + m * P;
    const float *xm = a->x + m * N * n_in;
    const int64_t O = sz[L];
    int64_t offW[MAX_LAYERS], offb[MAX_LAYERS];
    float *wn[MAX_LAYERS], *act[MAX_LAYERS + 1], *dlt[MAX_LAYERS + 1];
    int64_t off = 0;
    for (int64_t l = 0; l < L; l++) {
        offW[l] = off;
        off += pad[l] * pad[l + 1];
        offb[l] = off;
        off += pad[l + 1];
    }
    float *grad = work, *w = work + P;
    float *zero_row = w;
    memset(zero_row, 0, (size_t)n_in * sizeof(float));
    w += n_in;
    for (int64_t l = 1; l < L; l++) {
        wn[l] = w;
        w += pad[l + 1] * pad[l];
    }
    for (int64_t l = 1; l <= L; l++) {
        act[l] = w;
        w += S * pad[l];
        dlt[l] = w;
        w += S * pad[l];
    }
    /* wn[l] = W_l output-major, for the input deltas of an input-major layer
     * l >= 1 (an output-major layer is its own); padded entries are zero, as in p */
#define REFRESH_WN()                                                          \
    for (int64_t l = 1; l < L; l++)                                           \
        if (!omaj[l]) for (int64_t o = 0; o < pad[l + 1]; o++)                \
            for (int64_t i = 0; i < pad[l]; i++)                              \
                wn[l][o * pad[l] + i] = p[offW[l] + i * pad[l + 1] + o];
    REFRESH_WN();

    int64_t step = a->step0;
    const int64_t n_batches = (N + B - 1) / B;
    const float *in0[S];
    for (int64_t e = 0; e < a->E; e++) {
        const int64_t *perm = a->perms + e * N;
        double epoch_loss = 0.0;
        for (int64_t s0 = 0; s0 < N; s0 += B) {
            const int64_t Bb = (N - s0 < B) ? N - s0 : B;
            memset(grad, 0, (size_t)P * sizeof(float));
            double batch_loss = 0.0;
            vf bce_loss = SPLAT(0.0f);  /* lane-wise running sum of the batch's BCE terms */
            for (int64_t k = 0; k < Bb; k += S) {
                /* S samples at a time: each weight row loaded once feeds S
                 * independent accumulators. Past the batch's end, a zero row
                 * with a zero loss gradient stands in (it adds exact zeros). */
                const int ns = (Bb - k < S) ? (int)(Bb - k) : S;
                for (int s = 0; s < S; s++) in0[s] = s < ns ? xm + perm[s0 + k + s] * n_in : zero_row;
                /* the next group's rows are scattered over the model's data: fetch them now */
                for (int64_t t = k + S; t < k + 2 * S && t < Bb; t++) {
                    const float *nx = xm + perm[s0 + t] * n_in;
                    __builtin_prefetch(nx);
                    __builtin_prefetch(nx + n_in - 1);
                    if (!a->loss_ce) __builtin_prefetch((const float *)a->y + (m * N + perm[s0 + t]) * O);
                }
                /* forward */
                for (int64_t l = 0; l < L; l++) {
                    const int64_t in = sz[l], pi = pad[l], po = pad[l + 1], nb = (sz[l + 1] + VB - 1) / VB;
                    if (omaj[l]) {  /* one dot product per output and sample, along the inputs */
                        const int64_t out = sz[l + 1], ni = (in + VB - 1) / VB;
                        const float *restrict W = p + offW[l];
                        memset(act[l + 1], 0, (size_t)(S * po) * sizeof(float));
                        for (int64_t o = 0; o < out; o++) {
                            vf acc[S];
                            for (int s = 0; s < S; s++) acc[s] = SPLAT(0.0f);
                            for (int64_t ib = 0; ib < ni; ib++) {
                                const vf row = LD(W + o * pi + ib * VB);
                                for (int s = 0; s < S; s++) acc[s] += row * LD(act[l] + s * pi + ib * VB);
                            }
                            vf v = p[offb[l] + o] + hsum8(acc);
                            if (l < L - 1) v = (vf)((vi)v & (v > 0.0f));
                            for (int s = 0; s < S; s++) act[l + 1][s * po + o] = v[s];
                        }
                        continue;
                    }
                    for (int64_t bk = 0; bk < nb; bk++) {
                        const float *restrict Wt = p + offW[l] + bk * VB;
                        const vf bias = LD(p + offb[l] + bk * VB);
                        vf acc[S];
                        for (int s = 0; s < S; s++) acc[s] = bias;
                        if (l == 0) {
                            for (int64_t i = 0; i < in; i++) {
                                const vf row = LD(Wt + i * po);
                                for (int s = 0; s < S; s++) acc[s] += in0[s][i] * row;
                            }
                        } else {
                            const float *restrict h = act[l];
                            for (int64_t i = 0; i < in; i++) {
                                const vf row = LD(Wt + i * po);
                                for (int s = 0; s < S; s++) acc[s] += h[s * pi + i] * row;
                            }
                        }
                        for (int s = 0; s < S; s++) {
                            if (l < L - 1) acc[s] = (vf)((vi)acc[s] & (acc[s] > 0.0f));  /* ReLU */
                            ST(act[l + 1] + s * po + bk * VB, acc[s]);
                        }
                    }
                }
                /* loss and d(loss)/d(logits) */
                memset(dlt[L], 0, (size_t)(S * pad[L]) * sizeof(float));
                if (!a->loss_ce) {
                    /* binary cross-entropy, one output across the group's samples at a time:
                     * softplus(z) - y z and sigmoid(z) - y, from one exp(-|z|) */
                    const float *yb = (const float *)a->y + m * N * O;
                    const float scale = 1.0f / (float)(Bb * O);
                    const vi valid = LANES < ns;
                    for (int64_t o = 0; o < O; o++) {
                        vf zo = SPLAT(0.0f), yo = SPLAT(0.0f);
                        for (int s = 0; s < ns; s++) {
                            zo[s] = act[L][s * pad[L] + o];
                            yo[s] = yb[perm[s0 + k + s] * O + o];
                        }
                        const vf ez = vexp_nonpos(-vabs(zo));
                        const vf l = vselect(zo > 0.0f, zo, SPLAT(0.0f)) - yo * zo + vlog1p_unit(ez);
                        bce_loss += (vf)((vi)l & valid);
                        const vf q = 1.0f / (1.0f + ez), g = (vselect(zo >= 0.0f, q, ez * q) - yo) * scale;
                        for (int s = 0; s < ns; s++) dlt[L][s * pad[L] + o] = g[s];
                    }
                } else {
                    /* categorical cross-entropy, one sample at a time, VB logits at a time */
                    for (int s = 0; s < ns; s++) {
                        const float *z = act[L] + s * pad[L];
                        float *dz = dlt[L] + s * pad[L];
                        const int64_t c = ((const int64_t *)a->y)[m * N + perm[s0 + k + s]];
                        float mx = z[0];
                        for (int64_t o = 1; o < O; o++) mx = z[o] > mx ? z[o] : mx;
                        float se = 0.0f;
                        for (int64_t bk = 0; bk * VB < O; bk++) {
                            const vi valid = LANES < (int32_t)(O - bk * VB);
                            const vf ez = (vf)((vi)vexp_nonpos(LD(z + bk * VB) - mx) & valid);
                            ST(dz + bk * VB, ez);
                            se += hsum(ez);
                        }
                        batch_loss += (double)(mx + logf(se) - z[c]);
                        const float scale = 1.0f / (float)Bb, inv = 1.0f / se;
                        for (int64_t bk = 0; bk * VB < O; bk++) ST(dz + bk * VB, LD(dz + bk * VB) * inv * scale);
                        dz[c] -= scale;
                    }
                }
                /* backward */
                for (int64_t l = L - 1; l >= 0; l--) {
                    const int64_t in = sz[l], out = sz[l + 1], pi = pad[l], po = pad[l + 1];
                    const int64_t nb = (out + VB - 1) / VB;
                    if (omaj[l]) {  /* gradient rows along the inputs, one per output */
                        const int64_t ni = (in + VB - 1) / VB;
                        const float *restrict W = p + offW[l];
                        float *gW = grad + offW[l], *gb = grad + offb[l];
                        for (int64_t o = 0; o < out; o++) {
                            float db = 0.0f;
                            for (int s = 0; s < S; s++) db += dlt[l + 1][s * po + o];
                            gb[o] += db;
                            for (int64_t ib = 0; ib < ni; ib++) {
                                vf gr = LD(gW + o * pi + ib * VB);
                                for (int s = 0; s < S; s++) gr += dlt[l + 1][s * po + o] * LD(act[l] + s * pi + ib * VB);
                                ST(gW + o * pi + ib * VB, gr);
                            }
                        }
                        for (int64_t ib = 0; ib < ni; ib++) {  /* input deltas, through the ReLU */
                            vf acc[S];
                            for (int s = 0; s < S; s++) acc[s] = SPLAT(0.0f);
                            for (int64_t o = 0; o < out; o++) {
                                const vf row = LD(W + o * pi + ib * VB);
                                for (int s = 0; s < S; s++) acc[s] += dlt[l + 1][s * po + o] * row;
                            }
                            for (int s = 0; s < S; s++) {
                                const vf h = LD(act[l] + s * pi + ib * VB);
                                ST(dlt[l] + s * pi + ib * VB, (vf)((vi)acc[s] & (h > 0.0f)));
                            }
                        }
                        continue;
                    }
                    for (int64_t bk = 0; bk < nb; bk++) {
                        vf d[S];
                        for (int s = 0; s < S; s++) d[s] = LD(dlt[l + 1] + s * po + bk * VB);
                        float *gb = grad + offb[l] + bk * VB;
                        vf g = LD(gb);
                        for (int s = 0; s < S; s++) g += d[s];
                        ST(gb, g);
                        float *gW = grad + offW[l] + bk * VB;
                        if (l == 0) {
                            for (int64_t i = 0; i < in; i++) {
                                vf gr = LD(gW + i * po);
                                for (int s = 0; s < S; s++) gr += in0[s][i] * d[s];
                                ST(gW + i * po, gr);
                            }
                        } else {
                            const float *restrict h = act[l];
                            for (int64_t i = 0; i < in; i++) {
                                vf gr = LD(gW + i * po);
                                for (int s = 0; s < S; s++) gr += h[s * pi + i] * d[s];
                                ST(gW + i * po, gr);
                            }
                        }
                    }
                    if (l > 0) {  /* deltas of layer l's inputs: W_l^T d, through the ReLU */
                        const int64_t ni = (in + VB - 1) / VB;
                        for (int64_t ib = 0; ib < ni; ib++) {
                            vf acc[S];
                            for (int s = 0; s < S; s++) acc[s] = (vf){0};
                            for (int64_t o = 0; o < out; o++) {
                                const vf col = LD(wn[l] + o * pi + ib * VB);
                                for (int s = 0; s < S; s++) acc[s] += dlt[l + 1][s * po + o] * col;
                            }
                            for (int s = 0; s < S; s++) {
                                const vf h = LD(act[l] + s * pi + ib * VB);
                                ST(dlt[l] + s * pi + ib * VB, (vf)((vi)acc[s] & (h > 0.0f)));
                            }
                        }
                    }
                }
            }
            epoch_loss += (batch_loss + (double)hsum(bce_loss) / (double)O) / (double)Bb;
            /* optimiser step, on each layer's true block */
            step++;
            double bc1 = 1.0, bc2s = 1.0;
            if (!a->sgd) {
                bc1 = 1.0 - pow(a->beta1, (double)step);
                bc2s = sqrt(1.0 - pow(a->beta2, (double)step));
            }
            const float lr = (float)a->lr, wd = (float)a->wd, b1 = (float)a->beta1, b2 = (float)a->beta2;
            const float step_size = (float)(a->lr / bc1), inv_bc2s = (float)(1.0 / bc2s), eps = (float)a->eps;
            for (int64_t l = 0; l < L; l++) {
                /* the true rows, VB lanes at a time: input-major, `in` rows along the
                 * outputs; output-major, `out` rows along the inputs; then the bias.
                 * A padded lane has mask 0 and parameter 0, so its gradient, moments
                 * and update are exact zeros: it never moves. */
                const int64_t rows = omaj[l] ? sz[l + 1] : sz[l];
                const int64_t len = omaj[l] ? pad[l] : pad[l + 1], lenb = pad[l + 1];
                for (int64_t i = 0; i <= rows; i++) {
                    const int64_t base = (i < rows) ? offW[l] + i * len : offb[l];
                    const int64_t nb = ((i < rows) ? len : lenb) / VB;
                    for (int64_t bk = 0; bk < nb; bk++) {
                        const int64_t q = base + bk * VB;
                        const vf pv = LD(p + q), g = LD(grad + q) * LD(mk + q) + wd * pv;
                        if (a->sgd) {
                            ST(p + q, pv - lr * g);
                        } else {
                            const vf mo = LD(m1 + q) + (g - LD(m1 + q)) * (1.0f - b1);
                            const vf vo = b2 * LD(m2 + q) + (1.0f - b2) * g * g;
                            ST(m1 + q, mo);
                            ST(m2 + q, vo);
                            vf sq = SPLAT(0.0f);
                            for (int j = 0; j < VB; j++) sq[j] = sqrtf(vo[j]);
                            ST(p + q, pv - step_size * mo / (sq * inv_bc2s + eps));
                        }
                    }
                }
            }
            REFRESH_WN();
        }
        a->losses[m * a->E + e] = (float)(epoch_loss / (double)n_batches);
    }
#undef REFRESH_WN
}

/* Train models [m0, m1) of the call's arrays; returns 0, or -1 when out of
 * memory or the network is deeper than MAX_LAYERS. Safe to call from several
 * threads on disjoint model ranges. */
int fci_fit(const fci_fit_args *a, int64_t m0, int64_t m1) {
    if (a->L < 1 || a->L > MAX_LAYERS || a->omaj[0]) return -1;
    float *work = (float *)malloc((size_t)(workspace(a) + 16) * sizeof(float));
    if (!work) return -1;
    for (int64_t m = m0; m < m1; m++) train_one(a, m, work);
    free(work);
    return 0;
}
