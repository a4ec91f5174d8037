/* The CPU kernel alone on the trainer benchmark's workload, without Python:
 * for instruction counts (valgrind --tool=callgrind) and A/B timings of two
 * kernel sources on one thread, per CPU-second (steadier than wall time on a
 * shared machine).
 *
 *   cc -O3 -g -fno-math-errno -march=native -I fci/train/backends/kernel \
 *      benchmarks/kernel_profile.c -o /tmp/kernel_profile -lm
 *   /tmp/kernel_profile [models=13] [epochs=4] [repeats=2]
 *   valgrind --tool=callgrind /tmp/kernel_profile 13 4 1
 *
 * -DKERNEL='"path/to/other/fitkernel.c"' builds another source of the same ABI. Models have
 * hidden widths 4..16 in turn (the benchmark's mix), 24 random 0/1 inputs, one
 * random 0/1 target, 4096 samples, minibatch 256, Adam. It prints the rate, and
 * a checksum of the trained parameters and the last loss, which two sources
 * that compute the same step agree on to float rounding. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifndef KERNEL
#define KERNEL "fitkernel.c"
#endif
#include KERNEL

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(int argc, char **argv) {
    const int64_t M = argc > 1 ? atoi(argv[1]) : 13, E = argc > 2 ? atoi(argv[2]) : 4, R = argc > 3 ? atoi(argv[3]) : 2;
    const int64_t n_in = 24, N = 4096, B = 256, L = 2, H = 16;
    int64_t pad[3] = {n_in, H, VB};
    int32_t omaj[2] = {0, VB / 4 >= 1};  /* one logit: output-major, as the Python side lays it out */
    if (H % VB) pad[1] = (H / VB + 1) * VB;
    const int64_t P = pad[0] * pad[1] + pad[1] + pad[1] * pad[2] + pad[2], ng = NG(n_in);
    int64_t *sizes = malloc(sizeof(int64_t) * M * 3), *perms = malloc(sizeof(int64_t) * E * N);
    float *param = calloc(M * P, 4), *mask = calloc(M * P, 4), *m1 = calloc(M * P, 4), *m2 = calloc(M * P, 4);
    float *y = malloc(4 * M * N), *losses = calloc(M * E, 4);
    uint8_t *codes = calloc(M * N * ng, 1);
    for (int64_t m = 0; m < M; m++) {
        const int64_t h = 4 + m % 13, o1 = pad[0] * pad[1] + pad[1];
        float *p = param + m * P, *k = mask + m * P;
        sizes[m * 3] = n_in, sizes[m * 3 + 1] = h, sizes[m * 3 + 2] = 1;
        for (int64_t i = 0; i < n_in; i++)
            for (int64_t o = 0; o < h; o++) p[i * pad[1] + o] = ((int)(next() % 2001) - 1000) * 1e-4f, k[i * pad[1] + o] = 1;
        for (int64_t o = 0; o < h; o++) {
            p[n_in * pad[1] + o] = 0.01f, k[n_in * pad[1] + o] = 1;       /* b0 */
            p[o1 + o] = ((int)(next() % 2001) - 1000) * 1e-3f, k[o1 + o] = 1; /* W1, its one row */
        }
        k[o1 + pad[1] * pad[2]] = 1; /* b1 */
        for (int64_t n = 0; n < N; n++) {
            for (int64_t i = 0; i < n_in; i++) codes[(m * N + n) * ng + i / 4] |= (uint8_t)((next() & 1) << (i % 4));
            y[m * N + n] = (float)(next() & 1);
        }
    }
    for (int64_t e = 0; e < E; e++) {
        for (int64_t n = 0; n < N; n++) perms[e * N + n] = n;
        for (int64_t n = N - 1; n > 0; n--) {
            const int64_t j = (int64_t)(next() % (uint64_t)(n + 1)), t = perms[e * N + n];
            perms[e * N + n] = perms[e * N + j], perms[e * N + j] = t;
        }
    }
    fci_fit_args a = {0};
    a.n_models = M, a.L = L, a.P = P, a.N = N, a.n_in = n_in, a.E = E, a.B = B, a.sizes = sizes, a.pad = pad, a.omaj = omaj;
    a.param = param, a.mask = mask, a.m1 = m1, a.m2 = m2, a.y = y, a.perms = perms, a.losses = losses;
    a.lr = 0.01, a.beta1 = 0.9, a.beta2 = 0.999, a.eps = 1e-8, a.binary = 1, a.codes = codes;
    a.len_sizes = M * 3, a.len_pad = 3, a.len_omaj = 2, a.len_param = a.len_mask = a.len_m1 = a.len_m2 = M * P;
    a.len_y = M * N, a.len_perms = E * N, a.len_losses = M * E, a.len_codes = M * N * ng;
    struct timespec t0, t1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    for (int64_t r = 0; r < R; r++) {
        const int rc = fci_fit(&a, 0, M);
        if (rc) {
            printf("refused: %s\n", fci_fit_error(rc));
            return 1;
        }
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    const double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    double sum = 0;
    for (int64_t i = 0; i < M * P; i++) sum += param[i];
    printf("%s: %.0f model-epochs per CPU-second; checksum %.9g, last loss %.6f\n", ISA, (double)(M * E * R) / dt, sum,
           losses[M * E - 1]);
    return 0;
}
