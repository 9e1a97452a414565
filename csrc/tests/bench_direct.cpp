// The same direct solve as the Python benchmark, driven from C++ alone: the reference for the
// Python-overhead ratio. Prints one line of JSON: {"analyze_s":..., "factorize_s":..., "solve_s":..., "total_s":...}
//   bench_direct <problem: poisson2d|poisson3d> <grid size> <method: cholesky|lu> <repeats> <threads>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "sla/direct.hpp"

using sla::index_t;

namespace {

// Finite-difference Laplacian (Dirichlet), CSR with sorted columns.
void poisson(int dim, index_t m, std::vector<index_t>& p, std::vector<index_t>& j, std::vector<double>& v) {
  const index_t n = dim == 2 ? m * m : m * m * m;
  p.assign(1, 0);
  for (index_t r = 0; r < n; ++r) {
    const index_t x = r % m, y = (r / m) % m, z = dim == 3 ? r / (m * m) : 0;
    auto push = [&](index_t c, double val) { j.push_back(c); v.push_back(val); };
    if (dim == 3 && z > 0) push(r - m * m, -1);
    if (y > 0) push(r - m, -1);
    if (x > 0) push(r - 1, -1);
    push(r, 2.0 * dim);
    if (x < m - 1) push(r + 1, -1);
    if (y < m - 1) push(r + m, -1);
    if (dim == 3 && z < m - 1) push(r + m * m, -1);
    p.push_back(static_cast<index_t>(j.size()));
  }
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s poisson2d|poisson3d GRID cholesky|lu REPEATS THREADS\n", argv[0]);
    return 2;
  }
  const std::string problem = argv[1], method = argv[3];
  const index_t m = std::atoll(argv[2]);
  const int repeats = std::atoi(argv[4]);
  sla::set_blas_threads(std::atoi(argv[5]));
  std::vector<index_t> p, j;
  std::vector<double> v;
  poisson(problem == "poisson3d" ? 3 : 2, m, p, j, v);
  const index_t n = static_cast<index_t>(p.size()) - 1;
  const sla::Method meth = method == "lu" ? sla::Method::LU : sla::Method::Cholesky;
  std::vector<double> b(n, 1.0), x(n);
  double best_a = 1e30, best_f = 1e30, best_s = 1e30, best_t = 1e30;
  for (int rep = 0; rep < repeats; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    auto sym = sla::analyze(sla::Backend::SuiteSparse, meth, sla::ScalarType::Float64,
                            sla::CsrView<index_t>{n, n, p.data(), j.data()});
    const double ta = seconds_since(t0);
    auto t1 = std::chrono::steady_clock::now();
    auto num = sla::factorize(sym, v.data());
    const double tf = seconds_since(t1);
    auto t2 = std::chrono::steady_clock::now();
    num->solve(b.data(), x.data(), 1, sla::Op::N);
    const double ts = seconds_since(t2);
    const double tt = seconds_since(t0);
    if (tt < best_t) { best_t = tt; best_a = ta; best_f = tf; best_s = ts; }
  }
  std::printf("{\"n\": %lld, \"analyze_s\": %.6f, \"factorize_s\": %.6f, \"solve_s\": %.6f, \"total_s\": %.6f}\n",
              static_cast<long long>(n), best_a, best_f, best_s, best_t);
  return 0;
}
