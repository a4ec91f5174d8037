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
 * run along contiguous outputs, VB at a time; or, where omaj[L-1] (a last
 * layer of at most OMAJ_MAX outputs after a hidden layer, such as a single
 * logit), output-major, W_{L-1} (pad[L] x pad[L-1]), one row along the inputs
 * per output, so that no work is spent on the padding of a narrow output: its
 * dot products are then taken block by block with the hidden layer's
 * activations while they are still in registers, and its logits and their
 * gradients are held transposed, a vector of the sample group per output, so
 * that the loss runs lane-wise over samples. Masks and Adam moments use the
 * same layout.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 16
#define OMAJ_MAX 4  /* most outputs of an output-major last layer */
#define GROUPS 4    /* sample groups that go through each pass together (see train_one) */

/* Vector block VB (outputs per block: every pad[l >= 1] is a multiple of VB)
 * and sample group S (samples that share each weight row loaded), chosen at
 * build time from the CPU's features so that the S accumulators of a block
 * and the row they share stay in registers:
 *   AVX-512 (32 zmm): one 16-lane register per accumulator, 8 samples; but on
 *     AMD Zen 4 (GCC's znver3/znver4 targets with AVX-512), which runs a 512-bit
 *     operation as two 256-bit halves, 8-lane blocks: the same arithmetic rate,
 *     and no work on the padding of hidden widths <= 8 (measured faster there on
 *     stacks with narrow models; fci's Python side can build the 16-lane
 *     variant there for stacks without them, on request);
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
#define LD(p) (*(const vf_u *)(p))
#define ST(p, v) (*(vf_u *)(p) = (v))

typedef struct {
    int64_t n_models, L, P, N, n_in, E, B;
    const int64_t *sizes;  /* (n_models, L+1) true layer sizes */
    const int64_t *pad;    /* (L+1) padded layer sizes: the layout */
    const int32_t *omaj;   /* (L) 1 where layer l is stored output-major: only l = L-1 >= 1, at most OMAJ_MAX outputs */
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
    int32_t binary;        /* 1: every x is 0 or 1 (layer 0 then adds table entries and bins instead of multiplying) */
    int32_t pad_;
    /* element counts of the buffers above, as allocated by the caller: fci_fit refuses a call they cannot hold */
    int64_t len_sizes, len_pad, len_omaj, len_param, len_mask, len_m1, len_m2, len_x, len_y, len_perms, len_losses;
    /* 0/1 data, laid out by the caller (binary only):
     * codes (n_models, N, NG(n_in)): bit j of byte g is x[4g + j] */
    const uint8_t *codes;
    int64_t len_codes;
} fci_fit_args;

int fci_fit_abi(void) { return 5; }

/* The build's constants, for the caller to read instead of repeating them:
 * key 0 ABI, 1 VB, 2 S, 3 MAX_LAYERS, 4 sizeof(fci_fit_args); -1 for an unknown key. */
int64_t fci_fit_const(int64_t key) {
    switch (key) {
    case 0: return 5;
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
    OFF(len_x), OFF(len_y), OFF(len_perms), OFF(len_losses), OFF(codes), OFF(len_codes)};
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
/* pairs within each 4-lane half first (in-lane shuffles, no index constants), the halves last */
static inline vf hsum8(const vf *v) {
    vf b[4], c[2];
    for (int j = 0; j < 4; j++)
        b[j] = SHUF(v[2 * j], v[2 * j + 1], 0, 2, 8, 10, 4, 6, 12, 14) + SHUF(v[2 * j], v[2 * j + 1], 1, 3, 9, 11, 5, 7, 13, 15);
    for (int j = 0; j < 2; j++)
        c[j] = SHUF(b[2 * j], b[2 * j + 1], 0, 2, 8, 10, 4, 6, 12, 14) + SHUF(b[2 * j], b[2 * j + 1], 1, 3, 9, 11, 5, 7, 13, 15);
    return SHUF(c[0], c[1], 0, 1, 2, 3, 8, 9, 10, 11) + SHUF(c[0], c[1], 4, 5, 6, 7, 12, 13, 14, 15);
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

/* log(x) for x >= 1, lane-wise: x = 2^k m with m in [1, 2), k ln 2 in two
 * parts (the first exact) plus log1p(m - 1). Used for the log-sum-exp of a
 * softmax over a few logits, where x = sum of exp(z - max z) >= 1. */
static inline vf vlog_ge1(vf x) {
    const vi xi = (vi)x;
    const vf k = __builtin_convertvector((xi >> 23) - 127, vf);
    const vf mant = (vf)((xi & 0x007fffff) | 0x3f800000);
    return k * 0.693359375f - k * 2.12194440e-4f + vlog1p_unit(mant - 1.0f);
}

/* 0/1 data (binary): layer 0 never multiplies.
 * - Forward: per group of four inputs (a nibble of the sample's code), one of
 *   16 precomputed sums of those four weight rows (the table T, rebuilt after
 *   every step: 11 additions per nibble and block) replaces four multiply-adds.
 * - Weight gradient: each sample adds its delta to one of 16 bins per nibble,
 *   the bin its code names (V, per minibatch); once per minibatch, input 4g + j's
 *   gradient row is the sum of nibble g's bins whose code has bit j set, and
 *   the bias's is the sum of all of one nibble's bins. A sample costs one add
 *   per nibble and block instead of a read-modify-write of every input's row.
 * Both are exact sums of the same terms as the multiply-adds, in a fixed order.
 *
 * Nibble g of code c names entry 16 g + c of a block's table (and of its bins),
 * VB floats each. Per sample group the kernel lists those entries nibble by
 * nibble, offs[g S + s] = (16 g + c) VB / 2, so that an entry is one
 * scaled-index address (T + 8 bytes x offs) and one register walks the list. */
#define NG(n_in) (((n_in) + 3) / 4)       /* input nibbles per sample */
#define NGP(n_in) ((NG(n_in) + 7) / 8 * 8)  /* the same, rounded up to a multiple of 8 */
#define ENTRY(T, e) ((T) + (size_t)(e) * 2)
/* Hides how p was computed from the compiler, which would otherwise split a
 * table's base into two registers and spend an instruction per entry adding them. */
#define OPAQUE(p) __asm__("" : "+r"(p))

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

/* The inverse of subset_sums4, for the gradient: from one nibble's 16 bins V[c],
 * r[j] = sum of V[c] over the codes c with bit j set, and *all = the sum of
 * every bin (26 additions, a fixed tree). */
static inline void fold_bins4(const float *V, vf r[4], vf *all) {
    vf h[8], q[4];
    for (int c = 0; c < 8; c++) h[c] = LD(V + c * VB) + LD(V + (c + 8) * VB);
    r[3] = ((LD(V + 8 * VB) + LD(V + 9 * VB)) + (LD(V + 10 * VB) + LD(V + 11 * VB))) +
           ((LD(V + 12 * VB) + LD(V + 13 * VB)) + (LD(V + 14 * VB) + LD(V + 15 * VB)));
    for (int c = 0; c < 4; c++) q[c] = h[c] + h[c + 4];
    r[2] = (h[4] + h[5]) + (h[6] + h[7]);
    r[1] = q[2] + q[3];
    const vf e0 = q[0] + q[2], e1 = q[1] + q[3];
    r[0] = e1;
    *all = e0 + e1;
}

typedef uint32_t u32x8 __attribute__((vector_size(32)));
typedef uint32_t u32x8_u __attribute__((vector_size(32), aligned(4)));
/* 8 bytes from p, zero-extended to 32 bits each (one instruction on x86 with
 * AVX2, which GCC does not find from the generic form) */
#if defined(__AVX2__)
#include <immintrin.h>
static inline u32x8 widen8(const uint8_t *p) { return (u32x8)_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)); }
#else
static inline u32x8 widen8(const uint8_t *p) {
    u32x8 r;
    for (int j = 0; j < 8; j++) r[j] = p[j];
    return r;
}
#endif

/* offs[g S + s] = c[s][g] + 8 VB g (the codes are held times VB / 2), for g < ng:
 * eight samples' rows of eight nibbles widened, transposed in registers and
 * stored eight nibbles at a time (offs holds NGP nibbles; each row of codes
 * may be read up to NGP bytes past its start). */
static inline void entry_offsets(uint32_t *restrict offs, const uint8_t *const c[S], int64_t ng) {
#if S == 8 && (defined(__clang__) || __GNUC__ >= 12)
#define SHUF8 __builtin_shufflevector
    for (int64_t g0 = 0; g0 < ng; g0 += 8) {
        u32x8 r[8], t[8], u[8];
        for (int s = 0; s < 8; s++) r[s] = widen8(c[s] + g0);
        for (int j = 0; j < 4; j++) {
            t[2 * j] = SHUF8(r[2 * j], r[2 * j + 1], 0, 8, 1, 9, 4, 12, 5, 13);
            t[2 * j + 1] = SHUF8(r[2 * j], r[2 * j + 1], 2, 10, 3, 11, 6, 14, 7, 15);
        }
        for (int j = 0; j < 2; j++)
            for (int h = 0; h < 2; h++) {
                u[4 * j + 2 * h] = SHUF8(t[4 * j + h], t[4 * j + h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
                u[4 * j + 2 * h + 1] = SHUF8(t[4 * j + h], t[4 * j + h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
            }
        for (int q = 0; q < 4; q++) {
            const u32x8 lo = SHUF8(u[q], u[q + 4], 0, 1, 2, 3, 8, 9, 10, 11);
            const u32x8 hi = SHUF8(u[q], u[q + 4], 4, 5, 6, 7, 12, 13, 14, 15);
            *(u32x8_u *)(offs + (g0 + q) * 8) = lo + (uint32_t)((g0 + q) * 8 * VB);
            *(u32x8_u *)(offs + (g0 + q + 4) * 8) = hi + (uint32_t)((g0 + q + 4) * 8 * VB);
        }
    }
#undef SHUF8
#else
    for (int s = 0; s < S; s++)
        for (int64_t g = 0; g < ng; g++) offs[g * S + s] = (uint32_t)(c[s][g] + g * 8 * VB);
#endif
}

/* acc[s] += the entry of T that nibble g of sample s names, over every nibble */
static inline void table_sums(vf acc[S], const float *T, const uint32_t *offs, int64_t ng) {
    OPAQUE(T);
    for (int64_t g = 0; g < ng; g++, offs += S)
        for (int s = 0; s < S; s++) acc[s] += LD(ENTRY(T, offs[s]));
}

/* d[s] into the bin of V that nibble g of sample s names, over every nibble */
static inline void bin_adds(float *V, const uint32_t *offs, int64_t ng, const vf d[S]) {
    OPAQUE(V);
    for (int64_t g = 0; g < ng; g++, offs += S)
        for (int s = 0; s < S; s++) {
            float *v = ENTRY(V, offs[s]);
            ST(v, LD(v) + d[s]);
        }
}

/* The phases of a step are kept out of line: inlined into one function, they
 * exhaust the registers and spill in every loop. */
#define PHASE static __attribute__((noinline))

/* One model under training: its sizes, its parts of the call's buffers, its workspace. */
typedef struct {
    int64_t L, N, n_in, O, ng;
    const int64_t *sz, *pad;
    const int32_t *omaj;
    int tail;  /* omaj[L-1]: logits held transposed, the last layer fused with the one before */
    int bin, ce;
    int64_t offW[MAX_LAYERS], offb[MAX_LAYERS];
    float *p, *m1, *m2, *grad;
    const float *mk;
    const float *x;    /* (N, n_in) inputs; NULL on the 0/1 path */
    const float *yf;   /* (N, O) BCE targets */
    const int64_t *yc; /* (N) CE class ids */
    const float *zero_row;
    float *wn[MAX_LAYERS];
    float *tab, *bins;                   /* 0/1 data: T and V, (pad[1] / VB) blocks of ng x 16 entries */
    const uint8_t *codes, *zero_codes;   /* 0/1 data: the codes, each times VB / 2; a zero row */
    float *yt;                           /* BCE with transposed logits: targets in the epoch's order, */
    int64_t nyt;                         /* yt[o nyt + n], zero past N */
} model_t;

/* One group of S samples: where they are in the model's data (-1 past the
 * batch), and its own buffers (GROUPS groups are in flight at a time). */
typedef struct {
    float *act[MAX_LAYERS + 1], *dlt[MAX_LAYERS + 1];  /* activations and their gradients, block-major */
    uint32_t *offs;       /* 0/1 data: the group's entries, offs[g S + s] */
    int64_t idx[S];
    const float *in0[S];  /* their input rows (a zero row past the batch); real-valued inputs */
    int ns;               /* samples in the group */
    int64_t at;           /* position of the group's first sample in the epoch's order */
    int64_t Bb;           /* size of the group's minibatch */
} group_t;

/* Workspace floats train_one needs for a model of padded sizes pad[0..L]. */
#define A16(n) (((n) + 15) / 16 * 16)  /* every workspace section starts on a 64-byte line */
static int64_t workspace(const fci_fit_args *a) {
    int64_t w = A16(a->P) + A16(a->n_in);  /* gradient; a zero input row */
    for (int64_t l = 1; l < a->L; l++) w += A16(a->pad[l + 1] * a->pad[l]);  /* W_l out-major, l >= 1 */
    for (int64_t l = 1; l <= a->L; l++) w += 2 * GROUPS * A16(VB * a->pad[l]);  /* each group's activations and gradients */
    if (a->binary) {
        const int64_t ng = NG(a->n_in);
        w += 2 * A16((a->pad[1] / VB) * ng * 16 * VB);  /* table T and bins V */
        w += A16((a->N * ng + NGP(a->n_in) + 8 + 3) / 4);  /* the codes times VB / 2; a zero row and slack */
        w += GROUPS * A16(S * NGP(a->n_in));  /* each group's entries */
    }
    if (a->omaj[a->L - 1] && !a->loss_ce) w += A16(a->pad[a->L] * (a->N + VB));  /* targets in the epoch's order */
    return w;
}

static void model_init(model_t *M, group_t G[GROUPS], const fci_fit_args *a, int64_t m, float *work) {
    const int64_t L = a->L, N = a->N, n_in = a->n_in, P = a->P;
    memset(M, 0, sizeof *M);
    memset(G, 0, GROUPS * sizeof *G);
    M->L = L, M->N = N, M->n_in = n_in;
    M->sz = a->sizes + m * (L + 1), M->pad = a->pad, M->omaj = a->omaj;
    M->O = M->sz[L];
    M->tail = a->omaj[L - 1], M->bin = a->binary, M->ce = a->loss_ce;
    M->p = a->param + m * P, M->mk = a->mask + m * P;
    M->m1 = a->sgd ? NULL : a->m1 + m * P;
    M->m2 = a->sgd ? NULL : a->m2 + m * P;
    M->x = a->x ? a->x + m * N * n_in : NULL;
    if (a->loss_ce) M->yc = (const int64_t *)a->y + m * N;
    else M->yf = (const float *)a->y + m * N * M->O;
    const int64_t *pad = a->pad;
    int64_t off = 0;
    for (int64_t l = 0; l < L; l++) {
        M->offW[l] = off;
        off += pad[l] * pad[l + 1];
        M->offb[l] = off;
        off += pad[l + 1];
    }
    float *w = work;
    M->grad = w;
    w += A16(P);
    float *zero_row = w;
    memset(zero_row, 0, (size_t)n_in * sizeof(float));
    M->zero_row = zero_row;
    w += A16(n_in);
    for (int64_t l = 1; l < L; l++) {
        M->wn[l] = w;
        w += A16(pad[l + 1] * pad[l]);
    }
    for (int j = 0; j < GROUPS; j++)
        for (int64_t l = 1; l <= L; l++) {
            G[j].act[l] = w;
            w += A16(VB * pad[l]);
            G[j].dlt[l] = w;
            w += A16(VB * pad[l]);
        }
    if (M->bin) {
        const int64_t ng = NG(n_in), nt = (pad[1] / VB) * ng * 16 * VB;
        M->ng = ng;
        M->tab = w;
        w += A16(nt);
        M->bins = w;
        w += A16(nt);
        memset(M->bins, 0, (size_t)nt * sizeof(float));
        uint8_t *cw = (uint8_t *)w;
        w += A16((N * ng + NGP(n_in) + 8 + 3) / 4);
        const uint8_t *src = a->codes + m * N * ng;
        for (int64_t i = 0; i < N * ng; i++) cw[i] = (uint8_t)(src[i] * (VB / 2));
        memset(cw + N * ng, 0, (size_t)(NGP(n_in) + 8));  /* a zero row; what entry_offsets may read past a row */
        M->codes = cw, M->zero_codes = cw + N * ng;
        for (int j = 0; j < GROUPS; j++) {
            G[j].offs = (uint32_t *)w;
            w += A16(S * NGP(n_in));
        }
    }
    if (M->tail && !M->ce) {
        M->nyt = N + VB;
        M->yt = w;
        w += A16(M->O * M->nyt);
        memset(M->yt, 0, (size_t)(M->O * M->nyt) * sizeof(float));
    }
}

/* What the passes read besides the parameters, rebuilt after every step:
 * wn[l] = W_l output-major (l >= 1 input-major), for the input deltas;
 * T[bk][g][c] = sum of the rows 4g + j of layer 0's block bk over the bits j of c. */
PHASE void refresh(const model_t *M) {
    const int64_t *sz = M->sz, *pad = M->pad;
    for (int64_t l = 1; l < M->L; l++)
        if (!M->omaj[l])
            for (int64_t o = 0; o < sz[l + 1]; o++)
                for (int64_t i = 0; i < pad[l]; i++) M->wn[l][o * pad[l] + i] = M->p[M->offW[l] + i * pad[l + 1] + o];
    if (!M->bin) return;
    const int64_t nb = (sz[1] + VB - 1) / VB, ng = M->ng, n_in = M->n_in;
    const float *W = M->p + M->offW[0];
#define ROW0(i, bk) ((i) < n_in ? LD(W + (i) * pad[1] + (bk) * VB) : SPLAT(0.0f))
    for (int64_t bk = 0; bk < nb; bk++)
        for (int64_t g = 0; g < ng; g++)
            subset_sums4(ROW0(4 * g, bk), ROW0(4 * g + 1, bk), ROW0(4 * g + 2, bk), ROW0(4 * g + 3, bk),
                         M->tab + (bk * ng + g) * 16 * VB);
#undef ROW0
}

/* The group of samples at positions [at, at + ns) of the epoch's order. */
static inline void group_start(const model_t *M, group_t *G, const int64_t *perm, int64_t at, int ns, int64_t Bb) {
    G->ns = ns, G->at = at, G->Bb = Bb;
    for (int s = 0; s < S; s++) G->idx[s] = s < ns ? perm[at + s] : -1;
    if (M->bin) {
        const uint8_t *c[S];
        for (int s = 0; s < S; s++) c[s] = G->idx[s] >= 0 ? M->codes + G->idx[s] * M->ng : M->zero_codes;
        entry_offsets(G->offs, c, M->ng);
    } else {
        const int64_t n_in = M->n_in;
        for (int s = 0; s < S; s++) G->in0[s] = G->idx[s] >= 0 ? M->x + G->idx[s] * n_in : M->zero_row;
        /* the next group's rows are scattered over the model's data: fetch them now
         * (0/1 codes are a few bytes a sample, and stay in L2) */
        for (int64_t t = at + S; t < at + 2 * S && t < M->N; t++) {
            const float *nx = M->x + perm[t] * n_in;
            __builtin_prefetch(nx);
            __builtin_prefetch(nx + n_in - 1);
        }
    }
}

/* Activations and their gradients are held block-major: block bk of sample s
 * at BLK(A, bk, s), so that one block's S samples sit at fixed offsets from one
 * pointer; element i of sample s is BLK(A, i / VB, s)[i % VB]. */
#define BLK(A, bk, s) ((A) + ((bk) * S + (s)) * VB)

/* z[o] += the dot products of one block of activations with the output-major
 * last layer's rows W + o ld (O <= OMAJ_MAX outputs, a constant where inlined) */
static inline __attribute__((always_inline)) void tail_dots(const vf acc[S], const float *W, int64_t ld, const int O,
                                                            vf z[OMAJ_MAX]) {
    for (int o = 0; o < O; o++) {
        const vf row = LD(W + o * ld);
        vf t[S];
        for (int s = 0; s < S; s++) t[s] = acc[s] * row;
        z[o] += hsum8(t);
    }
}

/* Forward pass of groups G0[0..ngr): each group's act[l] (block-major) for the
 * hidden layers; its logits in act[L], block-major or, when M->tail,
 * transposed (O vectors of the group). Each weight block is taken once for
 * all the groups, whose independent sums overlap in the CPU. */
PHASE void forward(const model_t *M, const group_t *G0, int ngr) {
    const int64_t L = M->L, *sz = M->sz, *pad = M->pad;
    vf zz[GROUPS][OMAJ_MAX];
    for (int j = 0; j < GROUPS; j++)
        for (int o = 0; o < OMAJ_MAX; o++) zz[j][o] = SPLAT(0.0f);
    for (int64_t l = 0; l < L; l++) {
        const int64_t in = sz[l], po = pad[l + 1], nb = (sz[l + 1] + VB - 1) / VB;
        if (M->omaj[l]) {  /* the last layer: its dot products were taken with layer l - 1's blocks */
            for (int j = 0; j < ngr; j++)
                for (int64_t o = 0; o < M->O; o++) ST(G0[j].act[L] + o * VB, M->p[M->offb[l] + o] + zz[j][o]);
            return;
        }
        const int fuse = l + 1 < L && M->omaj[l + 1];
        const float *Wn = fuse ? M->p + M->offW[l + 1] : NULL;
        for (int64_t bk = 0; bk < nb; bk++)
            for (int j = 0; j < ngr; j++) {
                const group_t *G = G0 + j;
                vf *z = zz[j];
                const float *restrict Wt = M->p + M->offW[l] + bk * VB;
                const vf bias = LD(M->p + M->offb[l] + bk * VB);
                vf acc[S];
                for (int s = 0; s < S; s++) acc[s] = bias;
                if (l == 0 && M->bin) {
                    table_sums(acc, M->tab + bk * M->ng * 16 * VB, G->offs, M->ng);
                } else if (l == 0) {
                    for (int64_t i = 0; i < in; i++) {
                        const vf row = LD(Wt + i * po);
                        for (int s = 0; s < S; s++) acc[s] += G->in0[s][i] * row;
                    }
                } else {
                    for (int64_t i = 0; i < in; i++) {
                        const float *restrict h = BLK(G->act[l], i / VB, 0) + i % VB;
                        const vf row = LD(Wt + i * po);
                        for (int s = 0; s < S; s++) acc[s] += h[s * VB] * row;
                    }
                }
                float *restrict out = BLK(G->act[l + 1], bk, 0);
                for (int s = 0; s < S; s++) {
                    if (l < L - 1) acc[s] = (vf)((vi)acc[s] & (acc[s] > 0.0f));  /* ReLU */
                    ST(out + s * VB, acc[s]);
                }
                if (fuse) {
                    switch (M->O) {  /* the next (last, output-major) layer's products, while acc is in registers */
                    case 1: tail_dots(acc, Wn + bk * VB, po, 1, z); break;
                    case 2: tail_dots(acc, Wn + bk * VB, po, 2, z); break;
                    case 3: tail_dots(acc, Wn + bk * VB, po, 3, z); break;
                    default: tail_dots(acc, Wn + bk * VB, po, 4, z); break;
                    }
                }
            }
    }
}

/* Binary cross-entropy of transposed logits, lane-wise over the group:
 * softplus(z) - y z and sigmoid(z) - y, from one exp(-|z|); O outputs. */
static inline __attribute__((always_inline)) void bce_lanes(const model_t *M, const group_t *G, vf *lane, const int O) {
    const vi valid = LANES < (int32_t)G->ns;
    const float *zt = G->act[M->L];
    float *dz = G->dlt[M->L];
    const float scale = 1.0f / (float)(G->Bb * O);
    for (int o = 0; o < O; o++) {
        const vf z = LD(zt + o * VB), y = LD(M->yt + o * M->nyt + G->at);
        const vf ez = vexp_nonpos(-vabs(z));
        const vf l = vselect(z > 0.0f, z, SPLAT(0.0f)) - y * z + vlog1p_unit(ez);
        *lane += (vf)((vi)l & valid);
        const vf q = 1.0f / (1.0f + ez), g = (vselect(z >= 0.0f, q, ez * q) - y) * scale;
        ST(dz + o * VB, (vf)((vi)g & valid));
    }
}

/* The group's loss terms (added to *lane, lane-wise, or returned, in double)
 * and d(loss)/d(logits) in dlt[L], in act[L]'s layout; samples past the batch
 * contribute exact zeros to both. */
static inline double loss(const model_t *M, const group_t *G, vf *lane) {
    const int64_t L = M->L, O = M->O, ns = G->ns;
    const vi valid = LANES < (int32_t)ns;
    const float *zt = G->act[L];
    float *dz = G->dlt[L];
    if (M->tail && !M->ce) {
        switch (O) {  /* a constant output count: the loop unrolls, and its constants stay in registers */
        case 1: bce_lanes(M, G, lane, 1); break;
        case 2: bce_lanes(M, G, lane, 2); break;
        case 3: bce_lanes(M, G, lane, 3); break;
        default: bce_lanes(M, G, lane, 4); break;
        }
        return 0.0;
    }
    if (M->tail) {
        /* categorical cross-entropy over a few logits, lane-wise over the group: log-sum-exp and softmax */
        vi cls = (vi){0} - 1;
        for (int s = 0; s < S; s++) cls[s] = G->idx[s] >= 0 ? (int32_t)M->yc[G->idx[s]] : -1;
        vf mx = LD(zt);
        for (int64_t o = 1; o < O; o++) mx = vselect(LD(zt + o * VB) > mx, LD(zt + o * VB), mx);
        vf se = SPLAT(0.0f), zc = SPLAT(0.0f);
        for (int64_t o = 0; o < O; o++) {
            const vf z = LD(zt + o * VB), ez = vexp_nonpos(z - mx);
            ST(dz + o * VB, ez);
            se += ez;
            zc += (vf)((vi)z & (cls == (int32_t)o));
        }
        const vf l = mx + vlog_ge1(se) - zc;
        *lane += (vf)((vi)l & valid);
        const float scale = 1.0f / (float)G->Bb;
        const vf inv = scale / se;
        for (int64_t o = 0; o < O; o++) {
            const vf g = LD(dz + o * VB) * inv - (vf)((vi)SPLAT(scale) & (cls == (int32_t)o));
            ST(dz + o * VB, (vf)((vi)g & valid));
        }
        return 0.0;
    }
    memset(dz, 0, (size_t)(S * M->pad[L]) * sizeof(float));
    if (!M->ce) {
        /* binary cross-entropy, one output across the group's samples at a time */
        const float scale = 1.0f / (float)(G->Bb * O);
        for (int64_t o = 0; o < O; o++) {
            vf z = SPLAT(0.0f), y = SPLAT(0.0f);
            for (int s = 0; s < ns; s++) {
                z[s] = BLK(zt, o / VB, s)[o % VB];
                y[s] = M->yf[G->idx[s] * O + o];
            }
            const vf ez = vexp_nonpos(-vabs(z));
            const vf l = vselect(z > 0.0f, z, SPLAT(0.0f)) - y * z + vlog1p_unit(ez);
            *lane += (vf)((vi)l & valid);
            const vf q = 1.0f / (1.0f + ez), g = (vselect(z >= 0.0f, q, ez * q) - y) * scale;
            for (int s = 0; s < ns; s++) BLK(dz, o / VB, s)[o % VB] = g[s];
        }
        return 0.0;
    }
    /* categorical cross-entropy over many logits, one sample at a time, VB logits at a time */
    double sum = 0.0;
    for (int s = 0; s < ns; s++) {
#define Z(o) BLK(zt, (o) / VB, s)[(o) % VB]
        const int64_t c = M->yc[G->idx[s]];
        float mx = Z(0);
        for (int64_t o = 1; o < O; o++) mx = Z(o) > mx ? Z(o) : mx;
        float se = 0.0f;
        for (int64_t bk = 0; bk * VB < O; bk++) {
            const vi ok = LANES < (int32_t)(O - bk * VB);
            const vf ez = (vf)((vi)vexp_nonpos(LD(BLK(zt, bk, s)) - mx) & ok);
            ST(BLK(dz, bk, s), ez);
            se += hsum(ez);
        }
        sum += (double)(mx + logf(se) - Z(c));
#undef Z
        const float scale = 1.0f / (float)G->Bb, inv = 1.0f / se;
        for (int64_t bk = 0; bk * VB < O; bk++) ST(BLK(dz, bk, s), LD(BLK(dz, bk, s)) * inv * scale);
        BLK(dz, c / VB, s)[c % VB] -= scale;
    }
    return sum;
}

/* The output-major last layer's weight gradient along one block of the
 * hidden layer before it, and that block's deltas d[s] (through the ReLU);
 * O <= OMAJ_MAX outputs, a constant where inlined. */
static inline __attribute__((always_inline)) void tail_back(const model_t *M, const group_t *G, int64_t l, int64_t bk,
                                                            const int O, vf d[S]) {
    const int64_t po = M->pad[l + 1];
    const float *W = M->p + M->offW[l + 1] + bk * VB, *h = BLK(G->act[l + 1], bk, 0), *dz = G->dlt[M->L];
    float *gW = M->grad + M->offW[l + 1] + bk * VB;
    vf gr[OMAJ_MAX], row[OMAJ_MAX];
    for (int o = 0; o < O; o++) {
        gr[o] = LD(gW + o * po);
        row[o] = LD(W + o * po);
    }
    for (int s = 0; s < S; s++) {
        const vf hs = LD(h + s * VB);
        vf dd = SPLAT(0.0f);
        for (int o = 0; o < O; o++) {
            const float g = dz[o * VB + s];
            gr[o] += g * hs;
            dd += g * row[o];
        }
        d[s] = (vf)((vi)dd & (hs > 0.0f));
    }
    for (int o = 0; o < O; o++) ST(gW + o * po, gr[o]);
}

/* Backward pass of groups G0[0..ngr): the gradient, added into M->grad
 * (layer 0's, on 0/1 data, into the bins), group after group into each sum,
 * in the order of the groups. */
PHASE void backward(const model_t *M, const group_t *G0, int ngr) {
    const int64_t L = M->L, *sz = M->sz, *pad = M->pad;
    for (int64_t l = L - 1; l >= 0; l--) {
        const int64_t in = sz[l], out = sz[l + 1], pi = pad[l], po = pad[l + 1];
        const int64_t nb = (out + VB - 1) / VB;
        if (M->omaj[l]) {  /* the last layer: its bias here, its weights with layer l - 1's blocks */
            for (int j = 0; j < ngr; j++)
                for (int64_t o = 0; o < M->O; o++) {
                    float db = 0.0f;
                    for (int s = 0; s < S; s++) db += G0[j].dlt[L][o * VB + s];
                    M->grad[M->offb[l] + o] += db;
                }
            continue;
        }
        const int fuse = l + 1 < L && M->omaj[l + 1];
        for (int64_t bk = 0; bk < nb; bk++)
            for (int j = 0; j < ngr; j++) {
                const group_t *G = G0 + j;
                vf d[S];
                if (fuse) {
                    switch (M->O) {
                    case 1: tail_back(M, G, l, bk, 1, d); break;
                    case 2: tail_back(M, G, l, bk, 2, d); break;
                    case 3: tail_back(M, G, l, bk, 3, d); break;
                    default: tail_back(M, G, l, bk, 4, d); break;
                    }
                    if (l > 0)
                        for (int s = 0; s < S; s++) ST(BLK(G->dlt[l + 1], bk, s), d[s]);
                } else {
                    for (int s = 0; s < S; s++) d[s] = LD(BLK(G->dlt[l + 1], bk, s));
                }
                if (l == 0 && M->bin) {  /* the bias comes with the bins */
                    bin_adds(M->bins + bk * M->ng * 16 * VB, G->offs, M->ng, d);
                    continue;
                }
                float *gb = M->grad + M->offb[l] + bk * VB;
                vf g = LD(gb);
                for (int s = 0; s < S; s++) g += d[s];
                ST(gb, g);
                float *gW = M->grad + M->offW[l] + bk * VB;
                if (l == 0) {
                    for (int64_t i = 0; i < in; i++) {
                        vf gr = LD(gW + i * po);
                        for (int s = 0; s < S; s++) gr += G->in0[s][i] * d[s];
                        ST(gW + i * po, gr);
                    }
                } else {
                    for (int64_t i = 0; i < in; i++) {
                        const float *restrict h = BLK(G->act[l], i / VB, 0) + i % VB;
                        vf gr = LD(gW + i * po);
                        for (int s = 0; s < S; s++) gr += h[s * VB] * d[s];
                        ST(gW + i * po, gr);
                    }
                }
            }
        if (l > 0) for (int j = 0; j < ngr; j++) {  /* deltas of layer l's inputs: W_l^T d, through the ReLU */
            const group_t *G = G0 + j;
            const int64_t ni = (in + VB - 1) / VB;
            for (int64_t ib = 0; ib < ni; ib++) {
                vf acc[S];
                for (int s = 0; s < S; s++) acc[s] = SPLAT(0.0f);
                for (int64_t o = 0; o < out; o++) {
                    const vf col = LD(M->wn[l] + o * pi + ib * VB);
                    const float *restrict dn = BLK(G->dlt[l + 1], o / VB, 0) + o % VB;
                    for (int s = 0; s < S; s++) acc[s] += dn[s * VB] * col;
                }
                for (int s = 0; s < S; s++) {
                    const vf h = LD(BLK(G->act[l], ib, s));
                    ST(BLK(G->dlt[l], ib, s), (vf)((vi)acc[s] & (h > 0.0f)));
                }
            }
        }
    }
}

/* 0/1 data, at the end of a minibatch: layer 0's gradient rows and bias from
 * its bins, which then start over. */
PHASE void fold_bins(const model_t *M) {
    const int64_t nb = (M->sz[1] + VB - 1) / VB, ng = M->ng, ld = M->pad[1];
    for (int64_t bk = 0; bk < nb; bk++)
        for (int64_t g = 0; g < ng; g++) {
            vf r[4], all;
            fold_bins4(M->bins + (bk * ng + g) * 16 * VB, r, &all);
            for (int j = 0; j < 4 && 4 * g + j < M->n_in; j++) ST(M->grad + M->offW[0] + (4 * g + j) * ld + bk * VB, r[j]);
            if (g == 0) ST(M->grad + M->offb[0] + bk * VB, all);
        }
    memset(M->bins, 0, (size_t)(nb * ng * 16 * VB) * sizeof(float));
}

/* The optimiser's step `step` (1-based), on each layer's true rows and blocks:
 * input-major, `in` rows along the outputs; output-major, `out` rows along the
 * inputs; then the bias. Blocks past a row's true length are never read by the
 * passes; a padded lane inside a true block has mask 0 and parameter 0, so its
 * gradient, moments and update are exact zeros: it never moves. */
PHASE void optimizer_step(const model_t *M, const fci_fit_args *a, int64_t step) {
    const int64_t *sz = M->sz, *pad = M->pad;
    float *restrict p = M->p, *restrict m1 = M->m1, *restrict m2 = M->m2;
    const float *restrict grad = M->grad, *restrict mk = M->mk;
    double bc1 = 1.0, bc2s = 1.0;
    if (!a->sgd) {
        bc1 = 1.0 - pow(a->beta1, (double)step);
        bc2s = sqrt(1.0 - pow(a->beta2, (double)step));
    }
    const float lr = (float)a->lr, wd = (float)a->wd, b1 = (float)a->beta1, b2 = (float)a->beta2;
    const float step_size = (float)(a->lr / bc1), inv_bc2s = (float)(1.0 / bc2s), eps = (float)a->eps;
    for (int64_t l = 0; l < M->L; l++) {
        const int64_t rows = M->omaj[l] ? sz[l + 1] : sz[l];
        const int64_t len = M->omaj[l] ? pad[l] : pad[l + 1];
        const int64_t nbr = ((M->omaj[l] ? sz[l] : sz[l + 1]) + VB - 1) / VB, nbb = (sz[l + 1] + VB - 1) / VB;
        for (int64_t i = 0; i <= rows; i++) {
            const int64_t base = (i < rows) ? M->offW[l] + i * len : M->offb[l];
            const int64_t nb = (i < rows) ? nbr : nbb;
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
}

/* The BCE targets in the epoch's order perm, output-major: yt[o nyt + n] = y[perm[n]][o]. */
PHASE void order_targets(const model_t *M, const int64_t *restrict perm) {
    float *restrict yt = M->yt;
    const float *restrict yf = M->yf;
    const int64_t N = M->N, O = M->O, nyt = M->nyt;
    if (O == 1)
        for (int64_t n = 0; n < N; n++) yt[n] = yf[perm[n]];
    else
        for (int64_t n = 0; n < N; n++)
            for (int64_t o = 0; o < O; o++) yt[o * nyt + n] = yf[perm[n] * O + o];
}

static void train_one(const fci_fit_args *a, int64_t m, float *work) {
    model_t M;
    group_t G[GROUPS];
    model_init(&M, G, a, m, work);
    refresh(&M);
    const int64_t N = a->N, B = a->B, O = M.O;
    const int64_t n_batches = (N + B - 1) / B;
    int64_t step = a->step0;
    for (int64_t e = 0; e < a->E; e++) {
        const int64_t *perm = a->perms + e * N;
        if (M.yt) order_targets(&M, perm);
        double epoch_loss = 0.0;
        for (int64_t s0 = 0; s0 < N; s0 += B) {
            const int64_t Bb = (N - s0 < B) ? N - s0 : B;
            memset(M.grad, 0, (size_t)a->P * sizeof(float));
            double batch_loss = 0.0;
            vf lane_loss = SPLAT(0.0f);  /* lane-wise running sum of the batch's lane-wise loss terms */
            /* S samples to a group: each weight row loaded once feeds S independent
             * accumulators; past the batch's end, a zero row with a zero loss
             * gradient stands in (it adds exact zeros). GROUPS groups go through
             * each pass together: their independent chains (table sums, the
             * loss's polynomials) overlap in the CPU, 25% faster than one at a
             * time on the benchmark's workload (AVX2, benchmarks/kernel_profile.c), with every sum still
             * taken group after group, in order: the same bits. */
            for (int64_t k = 0; k < Bb; k += GROUPS * S) {
                const int64_t left = (Bb - k + S - 1) / S;
                const int ngr = left < GROUPS ? (int)left : GROUPS;
                for (int j = 0; j < ngr; j++) {
                    const int64_t at = k + j * S;
                    group_start(&M, &G[j], perm, s0 + at, (Bb - at < S) ? (int)(Bb - at) : S, Bb);
                }
                forward(&M, G, ngr);
                for (int j = 0; j < ngr; j++) batch_loss += loss(&M, &G[j], &lane_loss);
                backward(&M, G, ngr);
            }
            if (M.bin) fold_bins(&M);
            epoch_loss += (batch_loss + (double)hsum(lane_loss) / (double)(M.ce ? 1 : O)) / (double)Bb;
            optimizer_step(&M, a, ++step);
            refresh(&M);
        }
        a->losses[m * a->E + e] = (float)(epoch_loss / (double)n_batches);
    }
}

/* Why a call cannot run: the caller's buffers or layout do not match what
 * train_one reads and writes. Checked before any model trains. */
static const char *const ERRORS[] = {
    "ok",
    "layer count L outside [1, MAX_LAYERS]",
    "only the last layer, of at most 4 outputs and after a hidden layer, can be stored output-major",
    "a padded size is not the layout's (pad[0] != n_in, or pad[l >= 1] not a positive multiple of VB)",
    "P is not the sum of the padded layers' sizes",
    "a model's true layer size is out of range (sizes[0] != n_in, or sizes[l] not in [1, pad[l]])",
    "N, E or B is not positive (or E negative), or n_models is negative",
    "the model range [m0, m1) lies outside [0, n_models)",
    "a buffer is shorter than the call needs (sizes, pad, omaj, param, mask, x, y, perms, losses or codes)",
    "the Adam moments are shorter than the call needs (were they allocated for SGD?)",
    "a minibatch order holds an index outside [0, N)",
    "a class id lies outside [0, n_out)",
    "out of memory for the workspace",
    "a required pointer is NULL",
    "a 0/1 code byte exceeds 15 (each holds four inputs)",
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
    if (a->binary ? !a->codes : !a->x) return -13;
    if (a->len_pad < L + 1 || a->len_omaj < L) return -8;
    for (int64_t l = 0; l < L; l++)
        if (a->omaj[l] && (l != L - 1 || l == 0)) return -2;
    if (a->pad[0] != a->n_in || a->n_in < 1) return -3;
    int64_t P = 0;
    for (int64_t l = 1; l <= L; l++)
        if (a->pad[l] < VB || a->pad[l] % VB) return -3;
    for (int64_t l = 0; l < L; l++) P += a->pad[l] * a->pad[l + 1] + a->pad[l + 1];
    if (P != a->P) return -4;
    if (a->n_models < 0 || a->N < 1 || a->E < 0 || a->B < 1) return -6;
    if (m0 < 0 || m1 > a->n_models || m0 > m1) return -7;
    const int64_t M = a->n_models;
    if (a->len_sizes < M * (L + 1) || a->len_param < M * P || a->len_mask < M * P ||
        (!a->binary && a->len_x < M * a->N * a->n_in) || a->len_perms < a->E * a->N || a->len_losses < M * a->E)
        return -8;
    if (a->binary && a->len_codes < M * a->N * NG(a->n_in)) return -8;
    if (a->len_y < (a->loss_ce ? M * a->N : 0)) return -8;
    for (int64_t m = m0; m < m1; m++) {
        const int64_t *sz = a->sizes + m * (L + 1);
        if (sz[0] != a->n_in) return -5;
        for (int64_t l = 1; l <= L; l++)
            if (sz[l] < 1 || sz[l] > a->pad[l]) return -5;
        if (a->omaj[L - 1] && sz[L] > OMAJ_MAX) return -2;
        if (!a->loss_ce && a->len_y < M * a->N * sz[L]) return -8;
    }
    if (!a->sgd && (!a->m1 || !a->m2 || a->len_m1 < M * P || a->len_m2 < M * P)) return -9;
    for (int64_t k = 0; k < a->E * a->N; k++)
        if (a->perms[k] < 0 || a->perms[k] >= a->N) return -10;
    if (a->binary) {  /* a byte past 15 has a bit past the fourth: OR them all, 8 bytes at a time */
        const int64_t ng = NG(a->n_in), n = (m1 - m0) * a->N * ng;
        const uint8_t *c = a->codes + m0 * a->N * ng;
        uint64_t any = 0;
        int64_t k = 0;
        for (; k + 8 <= n; k += 8) {
            uint64_t w;
            memcpy(&w, c + k, 8);
            any |= w;
        }
        for (; k < n; k++) any |= c[k];
        if (any & 0xf0f0f0f0f0f0f0f0ull) return -14;
    }
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
