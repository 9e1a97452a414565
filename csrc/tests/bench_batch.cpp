// Batched entry points against a loop of the one-at-a-time ones, on B copies of the 2D Poisson matrix
// (5-point Laplacian on a grid x grid mesh), float64. Built with the tests, not run by ctest:
//   bench_batch [grid=60] [batch=64] [threads=2] [repeats=5]
// Prints one JSON line per comparison with the best time of each side over the repeats:
//   factorize: CHOLMOD (cholesky) and UMFPACK (lu), factorize_batch vs a loop of factorize (the loop with
//              the BLAS on `threads` threads, as one factorization at a time would run);
//   solve:     NumericBatch::solve vs a loop of Numeric::solve, one right-hand side each;
//   krylov:    CG with a Jacobi preconditioner per member, krylov_solve_batch vs a loop of krylov_solve
//              with `threads` threads each.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "sla/direct.hpp"
#include "sla/krylov.hpp"
#include "sla/pattern.hpp"
#include "test_util.hpp"

using sla::index_t;

namespace {


template <class F>
double best_of(int repeats, F&& f) {
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

void report(const char* what, const char* method, index_t n, index_t batch, int threads, double t_batch,
            double t_loop) {
  std::printf(
      "{\"what\": \"%s\", \"method\": \"%s\", \"n\": %lld, \"batch\": %lld, \"threads\": %d, \"batch_s\": %.6f, "
      "\"loop_s\": %.6f, \"speedup\": %.2f}\n",
      what, method, static_cast<long long>(n), static_cast<long long>(batch), threads, t_batch, t_loop,
      t_loop / t_batch);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const index_t grid = argc > 1 ? std::atoll(argv[1]) : 60;
  const index_t batch = argc > 2 ? std::atoll(argv[2]) : 64;
  const int threads = argc > 3 ? std::atoi(argv[3]) : 2;
  const int repeats = argc > 4 ? std::atoi(argv[4]) : 5;
  const sla::test::Poisson2d A(grid);
  const std::vector<std::int64_t>& p = A.p;
  const std::vector<std::int64_t>& j = A.j;
  const std::vector<double>& v = A.v;
  const index_t n = A.n, nnz = A.nnz();
  const sla::CsrPattern pattern = A.pattern();
  std::vector<double> values;  // batch copies of A
  for (index_t i = 0; i < batch; ++i) values.insert(values.end(), v.begin(), v.end());
  std::vector<double> b(static_cast<std::size_t>(batch * n), 1.0), x(b.size());

  sla::set_blas_threads(threads);
  for (sla::Method method : {sla::Method::Cholesky, sla::Method::LU}) {
    const sla::Backend backend = sla::Backend::SuiteSparse;
    if (!sla::backend_available(backend)) break;
    auto sym = sla::analyze(backend, method, sla::ScalarType::Float64, pattern);
    const char* name = method == sla::Method::Cholesky ? "cholmod_cholesky" : "umfpack_lu";
    const double t_batch = best_of(repeats, [&] { sla::factorize_batch(sym, values.data(), batch, threads); });
    const double t_loop = best_of(repeats, [&] {
      std::vector<std::unique_ptr<sla::Numeric>> out;
      for (index_t i = 0; i < batch; ++i) out.push_back(sla::factorize(sym, values.data() + i * nnz));
    });
    report("factorize", name, n, batch, threads, t_batch, t_loop);
    const sla::NumericBatch nb = sla::factorize_batch(sym, values.data(), batch, threads);
    const double s_batch = best_of(repeats, [&] { nb.solve(b.data(), x.data(), 1, sla::Op::N, threads); });
    const double s_loop = best_of(repeats, [&] {
      for (index_t i = 0; i < batch; ++i) nb[i]->solve(b.data() + i * n, x.data() + i * n, 1, sla::Op::N);
    });
    report("solve", name, n, batch, threads, s_batch, s_loop);
  }

  std::vector<std::unique_ptr<sla::Preconditioner>> owned;
  std::vector<const sla::Preconditioner*> M;
  for (index_t i = 0; i < batch; ++i) {
    owned.push_back(sla::make_preconditioner(sla::PrecondKind::Jacobi,
                                             pattern.with_values(values.data() + i * nnz, sla::ScalarType::Float64),
                                             1.0, threads));
    M.push_back(owned.back().get());
  }
  sla::KrylovOptions o;
  o.rtol = 1e-8;
  o.threads = threads;
  const double k_batch = best_of(repeats, [&] {
    std::fill(x.begin(), x.end(), 0.0);
    sla::krylov_solve_batch(sla::KrylovMethod::CG, pattern, values.data(), sla::ScalarType::Float64, batch, b.data(),
                            x.data(), 1, M, sla::Op::N, o);
  });
  const double k_loop = best_of(repeats, [&] {
    std::fill(x.begin(), x.end(), 0.0);
    for (index_t i = 0; i < batch; ++i)
      sla::krylov_solve(sla::KrylovMethod::CG, pattern.with_values(values.data() + i * nnz, sla::ScalarType::Float64),
                        b.data() + i * n, x.data() + i * n, 1, M[i], sla::Op::N, o, nullptr);
  });
  report("krylov", "cg_jacobi", n, batch, threads, k_batch, k_loop);
  return 0;
}
