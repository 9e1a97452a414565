// STREAM-style triad a = b + s c with OpenMP: the memory bandwidth the Krylov benchmark compares against.
// Prints one line of JSON: {"threads": t, "bytes": ..., "seconds": ..., "gbps": ...} (best of the repeats).
//   bench_stream <doubles per array> <repeats> <threads>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#ifdef SLA_HAVE_OPENMP
#include <omp.h>
#endif

int main(int argc, char** argv) {
  const long n = argc > 1 ? std::atol(argv[1]) : 20000000;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 10;
  const int threads = argc > 3 ? std::atoi(argv[3]) : 2;
  std::vector<double> a(n), b(n), c(n);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (long i = 0; i < n; ++i) a[i] = 0.0, b[i] = 1.0, c[i] = 2.0;  // first touch by the same threads
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel for schedule(static) num_threads(threads)
    for (long i = 0; i < n; ++i) a[i] = b[i] + 3.0 * c[i];
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s < best) best = s;
  }
  const double bytes = 3.0 * 8.0 * static_cast<double>(n);  // read b, c; write a (no write-allocate counted)
  std::printf("{\"threads\": %d, \"bytes\": %.0f, \"seconds\": %.6f, \"gbps\": %.3f, \"check\": %.1f}\n", threads,
              bytes, best, bytes / best / 1e9, a[n / 2]);
  return 0;
}
