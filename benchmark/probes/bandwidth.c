/*
 * Memory-bandwidth probe: the bytes per second of reading a float32 array once (a sum over every
 * element), with 1..T OpenMP threads. Reads the array from a .npy file (the benchmark's gallery)
 * so that the probe reads exactly what a search reads. Prints one JSON line.
 *
 *   cc -O3 -march=native -ffast-math -fopenmp bandwidth.c -o bandwidth
 *   ./bandwidth gallery.npy [reps] [max_threads]
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s file.npy [reps] [max_threads]\n", argv[0]);
    return 2;
  }
  int reps = argc > 2 ? atoi(argv[2]) : 9;
  int maxThreads = argc > 3 ? atoi(argv[3]) : omp_get_max_threads();
  FILE *f = fopen(argv[1], "rb");
  if (!f) { perror(argv[1]); return 1; }
  unsigned char pre[10];
  if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0 || pre[6] != 1) {
    fprintf(stderr, "%s: not a version-1 .npy file\n", argv[1]);
    return 1;
  }
  long hlen = pre[8] | (pre[9] << 8);
  fseek(f, 0, SEEK_END);
  long total = ftell(f);
  size_t bytes = (size_t)(total - 10 - hlen);
  size_t n = bytes / sizeof(float);
  fseek(f, 10 + hlen, SEEK_SET);
  float *a = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
  if (!a || fread(a, sizeof(float), n, f) != n) { fprintf(stderr, "read failed\n"); return 1; }
  fclose(f);

  printf("{\"probe\":\"bandwidth-c\",\"bytes\":%zu,\"threads\":{", n * sizeof(float));
  volatile float sink = 0;
  for (int t = 1; t <= maxThreads; t++) {
    double *times = malloc(sizeof(double) * reps);
    for (int r = -1; r < reps; r++) {  /* r = -1: warm-up */
      double t0 = now();
      float s = 0;
#pragma omp parallel for num_threads(t) reduction(+ : s) schedule(static)
      for (size_t i = 0; i < n; i++) s += a[i];
      double dt = now() - t0;
      sink += s;
      if (r >= 0) times[r] = dt;
    }
    qsort(times, reps, sizeof(double), cmp);
    double med = reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2]);
    printf("%s\"%d\":{\"median_seconds\":%.9f,\"min_seconds\":%.9f,\"bytes_per_second\":%.6e}", t > 1 ? "," : "", t, med,
           times[0], n * sizeof(float) / med);
    free(times);
  }
  printf("},\"reps\":%d}\n", reps);
  (void)sink;
  free(a);
  return 0;
}
