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

/* Vector block VB (outputs per block: every pad[l >= 1] is a multiple of VB)
 * and sample group S (samples that share each weight row loaded), chosen at
 * build time from the CPU's features so that the S accumulators of a block
 * and the row they share stay in registers:
 *   AVX-512 (32 zmm): one 16-lane register per accumulator, 8 samples; but on
 *     AMD Zen 4 (GCC's znver3/znver4 targets with AVX-512), which runs a 512-bit
 *     operation as two 256-bit halves, 8-lane blocks: the same arithmetic rate,
 *     and no work on the padding of hidden widths <= 8 (measured faster there on
 *     stacks with narrow models; fci's Python side also builds the 16-lane
 *     variant there and uses it for stacks without them);
 *   AVX2 (16 ymm): 8-lane blocks, 8 samples (8 accumulators, a row, a broadcast);
 *   NEON (32 q) and anything else: 8-lane blocks (two q registers), 8 / 4 samples.
 * FCI_VB / FCI_S override both (tests, benchmarks and that variant); ISA then
 * names the override, e.g. "avx512-zen4-vb16". */
#if defined(__AVX512F__) && (defined(__znver3__) || defined(__znver4__))
#define VB_ISA 8
#define ISA_NAME "avx512-zen4"
#elif defined(__AVX512F__)
#define VB_ISA 16
#define ISA_NAME "avx512"
#elif defined(__AVX2__)
#define VB_ISA 8
#define ISA_NAME "avx2"
#elif defined(__ARM_NEON) || defined(__aarch64__)
#define VB_ISA 8
#define ISA_NAME "neon"
#else
#define VB_ISA 8
#define ISA_NAME "generic"
#endif
#define STR2_(x) #x
#define STR_(x) STR2_(x)
#if defined(FCI_VB) && FCI_VB != VB_ISA
#define VB FCI_VB
#define ISA ISA_NAME "-vb" STR_(FCI_VB)
#else
#define VB VB_ISA
#define ISA ISA_NAME
#endif
#if defined(FCI_S)
#define S FCI_S
#elif defined(__AVX512F__) || defined(__AVX2__) || defined(__ARM_NEON) || defined(__aarch64__)
#define S 8
#else
#define S 4
#endif
#if VB != 4 && VB != 8 && VB != 16
#error "VB must be 4, 8 or 16"
#endif
#if S < 1 || S > VB || S > 8
#error "S must lie in [1, min(VB, 8)]"
#endif

/* VB floats as one value: GCC/Clang lower it to the CPU's vectors. vf_u is its unaligned form. */
typedef float vf __attribute__((vector_size(VB * 4)));
typedef float vf_u __attribute__((vector_size(VB * 4), aligned(4)));
typedef int32_t vi __attribute__((vector_size(VB * 4)));
/* 32 bytes at a time, for the per-input sample masks of 0/1 data */
typedef uint8_t vb32 __attribute__((vector_size(32)));
typedef uint8_t vb32_u __attribute__((vector_size(32), aligned(1)));
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
    const float *x;        /* (n_models, N, n_in); may be NULL when binary */
    const void *y;         /* (n_models, N, O) float for bce; (n_models, N) int64 class ids for ce */
    const int64_t *perms;  /* (E, N) minibatch orders */
    float *losses;         /* (n_models, E) out: mean train loss per epoch */
    int32_t loss_ce, sgd;
    double lr, beta1, beta2, eps, wd;
    int64_t step0;         /* optimiser steps already taken (Adam's bias correction) */
    int32_t binary;        /* 1: every x is 0 or 1 (layer 0 then adds table entries instead of multiplying) */
    int32_t pad_;
    /* element counts of the buffers above, as allocated by the caller: fci_fit refuses a call they cannot hold */
    int64_t len_sizes, len_pad, len_omaj, len_param, len_mask, len_m1, len_m2, len_x, len_y, len_perms, len_losses;
    /* 0/1 data, laid out by the caller (binary only):
     * codes (n_models, N, NG(n_in)): bit j of byte g is x[4g + j];
     * xbytes (n_models, N, XBS(n_in)): 0xff where x is 1, else 0 (zero past n_in) */
    const uint8_t *codes, *xbytes;
    int64_t len_codes, len_xbytes;
} fci_fit_args;

int fci_fit_abi(void) { return 4; }

/* The build's constants, for the caller to read instead of repeating them:
 * key 0 ABI, 1 VB, 2 S, 3 MAX_LAYERS, 4 sizeof(fci_fit_args); -1 for an unknown key. */
int64_t fci_fit_const(int64_t key) {
    switch (key) {
    case 0: return 4;
    case 1: return VB;
    case 2: return S;
    case 3: return MAX_LAYERS;
    case 4: return (int64_t)sizeof(fci_fit_args);
    default: return -1;
    }
}
const char *fci_fit_isa(void) { return ISA; }

/* Byte offsets of fci_fit_args' fields, in declaration order (the caller checks its mirror). */
#include <stddef.h>
#define OFF(f) (int64_t) offsetof(fci_fit_args, f)
static const int64_t FIELD_OFFSETS[] = {
    OFF(n_models), OFF(L), OFF(P), OFF(N), OFF(n_in), OFF(E), OFF(B), OFF(sizes), OFF(pad), OFF(omaj),
    OFF(param), OFF(mask), OFF(m1), OFF(m2), OFF(x), OFF(y), OFF(perms), OFF(losses), OFF(loss_ce), OFF(sgd),
    OFF(lr), OFF(beta1), OFF(beta2), OFF(eps), OFF(wd), OFF(step0), OFF(binary), OFF(pad_),
    OFF(len_sizes), OFF(len_pad), OFF(len_omaj), OFF(len_param), OFF(len_mask), OFF(len_m1), OFF(len_m2),
    OFF(len_x), OFF(len_y), OFF(len_perms), OFF(len_losses), OFF(codes), OFF(xbytes), OFF(len_codes),
    OFF(len_xbytes)};
#undef OFF
int64_t fci_fit_layout(int64_t *out, int64_t n) {
    const int64_t k = (int64_t)(sizeof FIELD_OFFSETS / sizeof FIELD_OFFSETS[0]);
    for (int64_t i = 0; i < k && i < n; i++) out[i] = FIELD_OFFSETS[i];
    return k;
}

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
/* hsum of each of S vectors at once: lane s of the result is the sum of
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
#elif S == 8 && VB == 8 && (defined(__clang__) || __GNUC__ >= 12)
#define SHUF __builtin_shufflevector
static inline vf hsum8(const vf *v) {
    vf b[4], c[2];
    for (int j = 0; j < 4; j++)
        b[j] = SHUF(v[2 * j], v[2 * j + 1], 0, 1, 2, 3, 8, 9, 10, 11) + SHUF(v[2 * j], v[2 * j + 1], 4, 5, 6, 7, 12, 13, 14, 15);
    for (int j = 0; j < 2; j++)
        c[j] = SHUF(b[2 * j], b[2 * j + 1], 0, 1, 4, 5, 8, 9, 12, 13) + SHUF(b[2 * j], b[2 * j + 1], 2, 3, 6, 7, 10, 11, 14, 15);
    return SHUF(c[0], c[1], 0, 2, 4, 6, 8, 10, 12, 14) + SHUF(c[0], c[1], 1, 3, 5, 7, 9, 11, 13, 15);
}
#else
static inline vf hsum8(const vf *v) {
    vf r = SPLAT(0.0f);
    for (int s = 0; s < S; s++) r[s] = hsum(v[s]);
    return r;
}
#endif

#if VB == 16
static const vi LANES = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
#elif VB == 8
static const vi LANES = {0, 1, 2, 3, 4, 5, 6, 7};
#else
static const vi LANES = {0, 1, 2, 3};
#endif

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

/* 0/1 data (binary): layer 0's forward pass adds, per group of four inputs, one
 * of 16 precomputed sums of weight rows (the table T, rebuilt after every
 * step: 11 additions per group and block), instead of four multiply-adds per
 * sample; its weight gradient adds, per input, one of 16 precomputed sums of
 * four samples' deltas (the table U, per sample group) instead of S
 * multiply-adds. Both are exact sums of the same terms, in a fixed order. */
#define NG(n_in) (((n_in) + 3) / 4)          /* input nibbles per sample */
#define XBS(n_in) (((n_in) + 31) / 32 * 32)  /* bytes per sample of the 0/1 inputs */
#define NU ((S + 3) / 4)                     /* sample nibbles per group */

/* T[c] = sum of v[j] over the bits j of c, for the 16 values of c: 11 additions
 * of values held in registers (a table built by reloading its own entries would
 * wait on store-to-load forwarding at every step). The order of each sum is
 * fixed, so results are reproducible. */
static inline void subset_sums4(vf v0, vf v1, vf v2, vf v3, float *T) {
    const vf z = SPLAT(0.0f), s01 = v0 + v1, s02 = v0 + v2, s12 = v1 + v2, s23 = v2 + v3, s012 = s01 + v2;
    ST(T + 0 * VB, z);           ST(T + 1 * VB, v0);          ST(T + 2 * VB, v1);          ST(T + 3 * VB, s01);
    ST(T + 4 * VB, v2);          ST(T + 5 * VB, s02);         ST(T + 6 * VB, s12);         ST(T + 7 * VB, s012);
    ST(T + 8 * VB, v3);          ST(T + 9 * VB, v0 + v3);     ST(T + 10 * VB, v1 + v3);    ST(T + 11 * VB, s01 + v3);
    ST(T + 12 * VB, s23);        ST(T + 13 * VB, s02 + v3);   ST(T + 14 * VB, s12 + v3);   ST(T + 15 * VB, s012 + v3);
}

/* Workspace floats train_one needs for a model of padded sizes pad[0..L]. */
#define A16(n) (((n) + 15) / 16 * 16)  /* every workspace section starts on a 64-byte line */
static int64_t workspace(const fci_fit_args *a) {
    int64_t w = A16(a->P) + A16(a->n_in);  /* gradient; a zero input row */
    for (int64_t l = 1; l < a->L; l++) w += A16(a->pad[l + 1] * a->pad[l]);  /* W_l out-major, l >= 1 */
    for (int64_t l = 1; l <= a->L; l++) w += 2 * A16(S * a->pad[l]);  /* activations and their gradients */
    if (a->binary) {
        const int64_t n_in = a->n_in;
        w += A16((a->pad[1] / VB) * NG(n_in) * 16 * VB) + A16(NU * 16 * VB);  /* tables T and U */
        const int64_t bytes = NG(n_in) + 2 * XBS(n_in) + 64;
        w += (bytes + 3) / 4;  /* a zero row of codes and of bytes, the group's masks */
    }
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
    const float *xm = a->x ? a->x + m * N * n_in : NULL;  /* NULL on the 0/1 path: codes and xbytes stand in */
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
    float *grad = work, *w = work + A16(P);
    float *zero_row = w;
    memset(zero_row, 0, (size_t)n_in * sizeof(float));
    w += A16(n_in);
    for (int64_t l = 1; l < L; l++) {
        wn[l] = w;
        w += A16(pad[l + 1] * pad[l]);
    }
    for (int64_t l = 1; l <= L; l++) {
        act[l] = w;
        w += A16(S * pad[l]);
        dlt[l] = w;
        w += A16(S * pad[l]);
    }
    /* 0/1 data: the caller's nibble codes and bytes of this model's samples */
    const int bin = a->binary;
    const int64_t ng = NG(n_in), xbs = XBS(n_in), nb0 = pad[1] / VB;
    float *tab = NULL, *utab = NULL;
    const uint8_t *codes = NULL, *xbytes = NULL;
    uint8_t *zero_codes = NULL, *zero_bytes = NULL, *gmask = NULL;
    if (bin) {
        tab = w;
        w += A16(nb0 * ng * 16 * VB);
        utab = w;
        w += A16(NU * 16 * VB);
        uint8_t *bw = (uint8_t *)w;
        zero_codes = bw;
        bw += ng;
        zero_bytes = bw;
        bw += xbs;
        gmask = bw;
        memset(zero_codes, 0, (size_t)ng);
        memset(zero_bytes, 0, (size_t)xbs);
        codes = a->codes + m * N * ng;
        xbytes = a->xbytes + m * N * xbs;
    }
    /* T[bk][g][c] = sum of the rows 4g + j of layer 0's block bk over the bits j of c */
#define ROW0(i, bk) ((i) < n_in ? LD(p + offW[0] + (i) * pad[1] + (bk) * VB) : SPLAT(0.0f))
#define REFRESH_TAB()                                                                  \
    if (bin) for (int64_t bk = 0; bk < nb0; bk++)                                      \
        for (int64_t g = 0; g < ng; g++)                                               \
            subset_sums4(ROW0(4 * g, bk), ROW0(4 * g + 1, bk), ROW0(4 * g + 2, bk),      \
                         ROW0(4 * g + 3, bk), tab + (bk * ng + g) * 16 * VB);
    /* wn[l] = W_l output-major, for the input deltas of an input-major layer
     * l >= 1 (an output-major layer is its own); padded entries are zero, as in p */
#define REFRESH_WN()                                                          \
    for (int64_t l = 1; l < L; l++)                                           \
        if (!omaj[l]) for (int64_t o = 0; o < pad[l + 1]; o++)                \
            for (int64_t i = 0; i < pad[l]; i++)                              \
                wn[l][o * pad[l] + i] = p[offW[l] + i * pad[l + 1] + o];
    REFRESH_WN();
    REFRESH_TAB();

    int64_t step = a->step0;
    const int64_t n_batches = (N + B - 1) / B;
    const float *in0[S] = {0};
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
                const uint8_t *cs[S] = {0};
                if (bin) {
                    for (int s = 0; s < S; s++) cs[s] = s < ns ? codes + perm[s0 + k + s] * ng : zero_codes;
                } else {
                    for (int s = 0; s < S; s++) in0[s] = s < ns ? xm + perm[s0 + k + s] * n_in : zero_row;
                }
                /* the next group's rows are scattered over the model's data: fetch them now
                 * (float rows only: 0/1 data is a few dozen bytes a sample, and stays in L2) */
                if (!bin)
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
                        if (l == 0 && bin) {
                            const float *Tb = tab + bk * ng * 16 * VB;
                            for (int64_t g = 0; g < ng; g++) {
                                const float *Tg = Tb + g * 16 * VB;
                                for (int s = 0; s < S; s++) acc[s] += LD(Tg + cs[s][g] * VB);
                            }
                        } else if (l == 0) {
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
                /* 0/1 data: bit s of gmask[i] is input i of the group's sample s */
                if (bin) {
                    for (int64_t c = 0; c < xbs; c += 32) {
                        vb32 mb = {0};
                        for (int s = 0; s < S; s++) {
                            const uint8_t *br = s < ns ? xbytes + perm[s0 + k + s] * xbs : zero_bytes;
                            mb |= *(const vb32_u *)(br + c) & (uint8_t)(1u << s);
                        }
                        *(vb32_u *)(gmask + c) = mb;
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
                        if (l == 0 && bin) {
                            /* U[t][c] = sum of the deltas of samples 4t + j over the bits j of c */
                            for (int t = 0; t < NU; t++) {
#define DS(j) (4 * t + (j) < S ? d[4 * t + (j)] : SPLAT(0.0f))
                                subset_sums4(DS(0), DS(1), DS(2), DS(3), utab + t * 16 * VB);
#undef DS
                            }
                            for (int64_t i = 0; i < in; i++) {
                                const int mi = gmask[i];
                                vf gr = LD(gW + i * po) + LD(utab + (mi & 15) * VB);
#if NU > 1
                                gr += LD(utab + 16 * VB + (mi >> 4) * VB);
#endif
                                ST(gW + i * po, gr);
                            }
                        } else if (l == 0) {
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
            REFRESH_TAB();
        }
        a->losses[m * a->E + e] = (float)(epoch_loss / (double)n_batches);
    }
#undef REFRESH_WN
#undef REFRESH_TAB
#undef ROW0
}

/* Why a call cannot run: the caller's buffers or layout do not match what
 * train_one reads and writes. Checked before any model trains. */
static const char *const ERRORS[] = {
    "ok",
    "layer count L outside [1, MAX_LAYERS]",
    "the first layer cannot be stored output-major",
    "a padded size is not the layout's (pad[0] != n_in, or pad[l >= 1] not a positive multiple of VB)",
    "P is not the sum of the padded layers' sizes",
    "a model's true layer size is out of range (sizes[0] != n_in, or sizes[l] not in [1, pad[l]])",
    "N, E or B is not positive (or E negative), or n_models is negative",
    "the model range [m0, m1) lies outside [0, n_models)",
    "a buffer is shorter than the call needs (sizes, pad, omaj, param, mask, x, y, perms, losses, codes or xbytes)",
    "the Adam moments are shorter than the call needs (were they allocated for SGD?)",
    "a minibatch order holds an index outside [0, N)",
    "a class id lies outside [0, n_out)",
    "out of memory for the workspace",
    "a required pointer is NULL",
};
const char *fci_fit_error(int code) {
    const int n = (int)(sizeof ERRORS / sizeof ERRORS[0]);
    return (code < 0 && -code < n) ? ERRORS[-code] : "unknown error";
}

static int check(const fci_fit_args *a, int64_t m0, int64_t m1) {
    const int64_t L = a->L;
    if (L < 1 || L > MAX_LAYERS) return -1;
    if (!a->pad || !a->omaj || !a->sizes || !a->param || !a->mask || !a->y || !a->perms || !a->losses)
        return -13;
    if (a->binary ? (!a->codes || !a->xbytes) : !a->x) return -13;
    if (a->len_pad < L + 1 || a->len_omaj < L) return -8;
    if (a->omaj[0]) return -2;
    if (a->pad[0] != a->n_in || a->n_in < 1) return -3;
    int64_t P = 0;
    for (int64_t l = 1; l <= L; l++)
        if (a->pad[l] < VB || a->pad[l] % VB) return -3;
    for (int64_t l = 0; l < L; l++) P += a->pad[l] * a->pad[l + 1] + a->pad[l + 1];
    if (P != a->P) return -4;
    if (a->n_models < 0 || a->N < 1 || a->E < 0 || a->B < 1) return -6;
    if (m0 < 0 || m1 > a->n_models || m0 > m1) return -7;
    const int64_t M = a->n_models, O = a->pad[L];
    if (a->len_sizes < M * (L + 1) || a->len_param < M * P || a->len_mask < M * P ||
        (!a->binary && a->len_x < M * a->N * a->n_in) || a->len_perms < a->E * a->N || a->len_losses < M * a->E)
        return -8;
    if (a->binary && (a->len_codes < M * a->N * NG(a->n_in) || a->len_xbytes < M * a->N * XBS(a->n_in))) return -8;
    if (a->len_y < (a->loss_ce ? M * a->N : 0)) return -8;
    for (int64_t m = m0; m < m1; m++) {
        const int64_t *sz = a->sizes + m * (L + 1);
        if (sz[0] != a->n_in) return -5;
        for (int64_t l = 1; l <= L; l++)
            if (sz[l] < 1 || sz[l] > a->pad[l]) return -5;
        if (!a->loss_ce && a->len_y < M * a->N * sz[L]) return -8;
    }
    (void)O;
    if (!a->sgd && (!a->m1 || !a->m2 || a->len_m1 < M * P || a->len_m2 < M * P)) return -9;
    for (int64_t k = 0; k < a->E * a->N; k++)
        if (a->perms[k] < 0 || a->perms[k] >= a->N) return -10;
    if (a->loss_ce)
        for (int64_t m = m0; m < m1; m++) {
            const int64_t O_m = a->sizes[m * (L + 1) + L];
            const int64_t *y = (const int64_t *)a->y + m * a->N;
            for (int64_t n = 0; n < a->N; n++)
                if (y[n] < 0 || y[n] >= O_m) return -11;
        }
    return 0;
}

/* Train models [m0, m1) of the call's arrays; returns 0, or a negative code
 * (fci_fit_error names it) before anything is written. Safe to call from
 * several threads on disjoint model ranges. */
int fci_fit(const fci_fit_args *a, int64_t m0, int64_t m1) {
    if (!a) return -13;
    const int rc = check(a, m0, m1);
    if (rc) return rc;
    float *work = (float *)aligned_alloc(64, (size_t)A16(workspace(a) + 16) * sizeof(float));
    if (!work) return -12;
    for (int64_t m = m0; m < m1; m++) train_one(a, m, work);
    free(work);
    return 0;
}
