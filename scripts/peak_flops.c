// The machine's single-precision FMA peak, measured: each thread runs 12
// independent chains of fused multiply-adds (enough to cover the FMA latency on
// two pipes) for a fixed time, with 256-bit (AVX2) and 512-bit (AVX-512F) vectors.
// Prints one JSON object: GFLOP/s for 1..N threads and each width, and the clock
// it implies (AVX2 GFLOP/s per core / 32 FLOP per cycle).
//
//   gcc -O3 -mavx2 -mfma -mavx512f -pthread scripts/peak_flops.c -o target/peak_flops
//   target/peak_flops 2
//
// scripts/benchmarks.py builds and runs it; the model's FLOP/s are set against it.
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ITERS 20000000L

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static volatile float sink;

static void *run256(void *arg) {
    (void)arg;
    __m256 a[12];
    const __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    // -O3 unrolls the inner loop and keeps the 12 accumulators in registers
    // (at -O2 they stay in memory and the loop measures store forwarding instead).
    for (long n = 0; n < ITERS; n++)
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], m, c);
    float s = 0;
    for (int i = 0; i < 12; i++) s += _mm256_cvtss_f32(a[i]);
    sink = s;
    return NULL;
}

static void *run512(void *arg) {
    (void)arg;
    __m512 a[12];
    const __m512 m = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    for (long n = 0; n < ITERS; n++)
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], m, c);
    float s = 0;
    for (int i = 0; i < 12; i++) s += _mm512_cvtss_f32(a[i]);
    sink = s;
    return NULL;
}

// GFLOP/s of `threads` threads each running `f` once (best of 3).
static double measure(void *(*f)(void *), int threads, int lanes) {
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        pthread_t t[64];
        double t0 = now();
        for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, f, NULL);
        for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
        double dt = now() - t0;
        double flops = (double)threads * ITERS * 12 * lanes * 2;
        if (flops / dt / 1e9 > best) best = flops / dt / 1e9;
    }
    return best;
}

int main(int argc, char **argv) {
    int max_threads = argc > 1 ? atoi(argv[1]) : 2;
    if (max_threads < 1 || max_threads > 64) max_threads = 2;
    printf("{\"results\": [");
    for (int t = 1; t <= max_threads; t++) {
        double g256 = measure(run256, t, 8);
        double g512 = __builtin_cpu_supports("avx512f") ? measure(run512, t, 16) : 0;
        printf("%s{\"threads\": %d, \"avx2_gflops\": %.1f, \"avx512_gflops\": %.1f, "
               "\"implied_ghz\": %.3f}",
               t > 1 ? ", " : "", t, g256, g512, g256 / t / 32.0);
    }
    printf("]}\n");
    return 0;
}
