// Selected inversion against the numeric factorization it starts from: CHOLMOD LL^T (or another backend
// and method) on a finite-difference Laplacian, inverse_entries on every stored position of A (what the
// gradient of log det reads). Prints one line of JSON with the best of `repeats` times of each: wall time,
// and the CPU time of the process (all threads), which a machine shared with other work disturbs less.
//   bench_selinv <poisson2d|poisson3d> <grid size> <cholesky|ldl|lu> <repeats> <threads> [suitesparse|eigen]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
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
  if (argc != 6 && argc != 7) {
    std::fprintf(stderr, "usage: %s poisson2d|poisson3d GRID cholesky|ldl|lu REPEATS THREADS [suitesparse|eigen]\n",
                 argv[0]);
    return 2;
  }
  const std::string problem = argv[1], method = argv[3];
  const index_t m = std::atoll(argv[2]);
  const int repeats = std::atoi(argv[4]);
  sla::set_blas_threads(std::atoi(argv[5]));
  const sla::Backend backend =
      argc == 7 && std::string(argv[6]) == "eigen" ? sla::Backend::Eigen : sla::Backend::SuiteSparse;
  std::vector<index_t> p, j;
  std::vector<double> v;
  poisson(problem == "poisson3d" ? 3 : 2, m, p, j, v);
  const index_t n = static_cast<index_t>(p.size()) - 1, nnz = p[n];
  const sla::Method meth = method == "lu" ? sla::Method::LU : method == "ldl" ? sla::Method::LDL : sla::Method::Cholesky;
  std::vector<index_t> rows(static_cast<size_t>(nnz));
  for (index_t r = 0; r < n; ++r)
    for (index_t k = p[r]; k < p[r + 1]; ++k) rows[k] = r;
  std::vector<double> out(static_cast<size_t>(nnz));
  auto sym = sla::analyze(backend, meth, sla::ScalarType::Float64, sla::CsrView<index_t>{n, n, p.data(), j.data()});
  double best_f = 1e30, best_s = 1e30, cpu_f = 1e30, cpu_s = 1e30;
  auto cpu = [] { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; };
  index_t fill = 0;
  for (int rep = 0; rep < repeats; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    double c0 = cpu();
    auto num = sla::factorize(sym, v.data());
    best_f = std::min(best_f, seconds_since(t0));
    cpu_f = std::min(cpu_f, cpu() - c0);
    fill = num->factor_nnz();
    auto t1 = std::chrono::steady_clock::now();
    c0 = cpu();
    num->inverse_entries(j.data(), rows.data(), nnz, out.data());  // A^{-T} on A's pattern
    best_s = std::min(best_s, seconds_since(t1));
    cpu_s = std::min(cpu_s, cpu() - c0);
  }
  std::printf("{\"n\": %lld, \"factor_nnz\": %lld, \"factorize_s\": %.6f, \"selinv_s\": %.6f, \"ratio\": %.3f, "
              "\"factorize_cpu_s\": %.6f, \"selinv_cpu_s\": %.6f, \"cpu_ratio\": %.3f}\n",
              static_cast<long long>(n), static_cast<long long>(fill), best_f, best_s, best_s / best_f, cpu_f, cpu_s,
              cpu_s / cpu_f);
  return 0;
}
