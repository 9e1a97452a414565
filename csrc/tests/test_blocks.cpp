// Block-diagonal batches of distinct patterns (sla/blocks.hpp): dense and sparse blocks against single
// factorizations, failed blocks reported and NaN, Cholesky falling back to LU per block, bad offsets.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <cstdint>
#include <vector>

#include "cpu/batch.hpp"
#include "sla/blocks.hpp"
#include "sla/direct.hpp"
#include "test_util.hpp"

#ifdef SLA_HAVE_OPENMP
#include <omp.h>
#endif

namespace sla {
namespace {

// A block-diagonal matrix assembled from dense blocks (entries with |a| > 0 stored), CSR int64.
struct Blocks {
  std::vector<std::int64_t> p{0}, j, offsets{0};
  std::vector<double> v;
  index_t n = 0;
  void add(const std::vector<std::vector<double>>& a) {
    const auto m = static_cast<index_t>(a.size());
    for (index_t r = 0; r < m; ++r) {
      for (index_t c = 0; c < m; ++c)
        if (a[r][c] != 0.0) j.push_back(n + c), v.push_back(a[r][c]);
      p.push_back(static_cast<std::int64_t>(j.size()));
    }
    n += m;
    offsets.push_back(n);
  }
  CsrPattern pattern() const {
    return CsrPattern::copy_of(CsrView<std::int64_t>{n, n, p.data(), j.data()}, static_cast<index_t>(p.size()),
                               static_cast<index_t>(j.size()), "A");
  }
};

std::vector<std::vector<double>> tridiag(index_t m, double d, double off) {
  std::vector<std::vector<double>> a(static_cast<std::size_t>(m), std::vector<double>(static_cast<std::size_t>(m)));
  for (index_t i = 0; i < m; ++i) {
    a[i][i] = d;
    if (i + 1 < m) a[i][i + 1] = off, a[i + 1][i] = off;
  }
  return a;
}

// y = A x for the block-diagonal matrix.
std::vector<double> times(const Blocks& b, const std::vector<double>& x) {
  std::vector<double> y(static_cast<std::size_t>(b.n), 0.0);
  for (index_t r = 0; r < b.n; ++r)
    for (auto e = b.p[r]; e < b.p[r + 1]; ++e) y[r] += b.v[e] * x[b.j[e]];
  return y;
}

TEST(Blocks, DenseAndSparseBlocksSolveTheWholeSystem) {
  Blocks b;
  b.add(tridiag(1, 2.0, 0.0));
  b.add(tridiag(5, 4.0, -1.0));
  b.add(tridiag(150, 4.0, -1.0));  // above dense_max: a sparse block
  b.add(tridiag(40, 3.0, 1.0));
  for (Method method : {Method::Cholesky, Method::LDL, Method::LU}) {
    BlockOptions o;
    o.threads = 2;
    auto f =
        factorize_blocks(Backend::Eigen, method, ScalarType::Float64, b.pattern(), b.offsets.data(), 4, b.v.data(), o);
    EXPECT_TRUE(f->errors().empty());
    EXPECT_EQ(f->dense_blocks(), 3);
    EXPECT_EQ(f->sparse_blocks(), 1);
    std::vector<double> rhs(static_cast<std::size_t>(2 * b.n));
    for (index_t i = 0; i < 2 * b.n; ++i) rhs[i] = std::sin(0.3 * static_cast<double>(i)) + 1.0;
    std::vector<double> x(rhs.size());
    for (Op op : {Op::N, Op::H}) {
      f->solve(rhs.data(), x.data(), 2, op, 2);
      for (index_t k = 0; k < 2; ++k) {
        std::vector<double> xk(x.begin() + k * b.n, x.begin() + (k + 1) * b.n);
        const auto y = times(b, xk);  // symmetric blocks: A^H = A
        for (index_t i = 0; i < b.n; ++i) EXPECT_NEAR(y[i], rhs[k * b.n + i], 1e-12);
      }
    }
  }
}

TEST(Blocks, UnsymmetricDenseBlockTransposedSolve) {
  Blocks b;
  b.add({{2.0, 1.0, 0.0}, {0.0, 3.0, 1.0}, {4.0, 0.0, 5.0}});
  auto f = factorize_blocks(Backend::Eigen, Method::LU, ScalarType::Float64, b.pattern(), b.offsets.data(), 1,
                            b.v.data(), {});
  const std::vector<double> rhs{1.0, 2.0, 3.0};
  std::vector<double> x(3);
  f->solve(rhs.data(), x.data(), 1, Op::H, 1);
  // A^T x = rhs
  const double a[3][3] = {{2, 1, 0}, {0, 3, 1}, {4, 0, 5}};
  for (int c = 0; c < 3; ++c) {
    double s = 0;
    for (int r = 0; r < 3; ++r) s += a[r][c] * x[r];
    EXPECT_NEAR(s, rhs[c], 1e-12);
  }
}

TEST(Blocks, FailedBlocksAreReportedAndNaNWhileTheOthersSolve) {
  Blocks b;
  b.add(tridiag(4, 4.0, -1.0));
  b.add({{1.0, 1.0}, {1.0, 1.0}});  // singular
  b.add({{1.0, 2.0}, {2.0, 1.0}});  // symmetric, positive diagonal, indefinite
  b.add(tridiag(120, 1.0, 1.0));    // sparse, indefinite
  BlockOptions o;
  o.threads = 2;
  auto f = factorize_blocks(Backend::Eigen, Method::Cholesky, ScalarType::Float64, b.pattern(), b.offsets.data(), 4,
                            b.v.data(), o);
  ASSERT_EQ(f->errors().size(), 3u);
  EXPECT_EQ(f->errors()[0].block, 1);
  EXPECT_EQ(f->errors()[1].kind, ErrorKind::NotPositiveDefinite);
  o.fallback_lu = true;
  f = factorize_blocks(Backend::Eigen, Method::Cholesky, ScalarType::Float64, b.pattern(), b.offsets.data(), 4,
                       b.v.data(), o);
  ASSERT_EQ(f->errors().size(), 1u);  // the singular one stays singular under LU
  EXPECT_EQ(f->errors()[0].block, 1);
  EXPECT_EQ(f->errors()[0].kind, ErrorKind::SingularMatrix);
  EXPECT_EQ(f->lu_fallbacks(), 3);
  std::vector<double> rhs(static_cast<std::size_t>(b.n), 1.0), x(rhs.size());
  f->solve(rhs.data(), x.data(), 1, Op::N, 2);
  EXPECT_TRUE(std::isnan(x[4]) && std::isnan(x[5]));
  const auto y = times(b, x);
  for (index_t i : {0, 1, 2, 3, 6, 7, 10, 100}) EXPECT_NEAR(y[i], 1.0, 1e-10);
}

TEST(Blocks, ComplexBlocks) {
  // One complex Hermitian block [[2, i], [-i, 2]] stored as complex128.
  std::vector<std::int64_t> p{0, 2, 4}, j{0, 1, 0, 1}, offsets{0, 2};
  std::vector<std::complex<double>> v{{2, 0}, {0, 1}, {0, -1}, {2, 0}};
  auto pat = CsrPattern::copy_of(CsrView<std::int64_t>{2, 2, p.data(), j.data()}, 3, 4, "A");
  for (Method method : {Method::Cholesky, Method::LU}) {
    auto f = factorize_blocks(Backend::Eigen, method, ScalarType::Complex128, pat, offsets.data(), 1, v.data(), {});
    std::vector<std::complex<double>> rhs{{1, 0}, {0, 1}}, x(2);
    f->solve(rhs.data(), x.data(), 1, Op::N, 1);
    EXPECT_NEAR(std::abs(v[0] * x[0] + v[1] * x[1] - rhs[0]), 0.0, 1e-12);
    EXPECT_NEAR(std::abs(v[2] * x[0] + v[3] * x[1] - rhs[1]), 0.0, 1e-12);
  }
}

TEST(Blocks, BadOffsetsAndCouplingEntriesAreRejected) {
  Blocks b;
  b.add(tridiag(3, 4.0, -1.0));
  b.add(tridiag(3, 4.0, -1.0));
  auto pat = b.pattern();
  std::vector<std::int64_t> bad_end{0, 3, 5};
  EXPECT_THROW(
      factorize_blocks(Backend::Eigen, Method::LU, ScalarType::Float64, pat, bad_end.data(), 2, b.v.data(), {}), Error);
  std::vector<std::int64_t> split{0, 2, 6};  // row 2 couples to column 1 of... block boundaries cut a block
  try {
    factorize_blocks(Backend::Eigen, Method::LU, ScalarType::Float64, pat, split.data(), 2, b.v.data(), {});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("block diagonal"), std::string::npos);
  }
}

// An arrow matrix: a dense last row and column, diagonal otherwise. In natural order its Cholesky factor
// has no fill; in reverse order (the dense row first) it would fill completely. Eliminated by minimum degree
// it must keep the leaves first, and solve exactly.
std::vector<std::vector<double>> reverse_arrow(index_t m) {
  std::vector<std::vector<double>> a(static_cast<std::size_t>(m), std::vector<double>(static_cast<std::size_t>(m)));
  for (index_t i = 0; i < m; ++i) {
    a[i][i] = 4.0 + static_cast<double>(i % 3);
    if (i > 0) a[0][i] = a[i][0] = 1.0 / static_cast<double>(m);
  }
  a[0][0] = static_cast<double>(m);
  return a;
}

TEST(Blocks, SmallBlocksWithAFillReducingOrderingSolveExactly) {
  Blocks b;
  b.add(reverse_arrow(60));
  b.add(reverse_arrow(7));
  b.add({{5.0, 0.0, 2.0}, {0.0, 6.0, 1.0}, {2.0, 1.0, 7.0}});
  for (Method method : {Method::Cholesky, Method::LU}) {
    auto f =
        factorize_blocks(Backend::Eigen, method, ScalarType::Float64, b.pattern(), b.offsets.data(), 3, b.v.data(), {});
    ASSERT_TRUE(f->errors().empty());
    EXPECT_EQ(f->dense_blocks(), 3);
    std::vector<double> rhs(static_cast<std::size_t>(b.n)), x(rhs.size());
    for (index_t i = 0; i < b.n; ++i) rhs[i] = std::cos(0.7 * static_cast<double>(i));
    f->solve(rhs.data(), x.data(), 1, Op::N, 1);
    const auto y = times(b, x);
    for (index_t i = 0; i < b.n; ++i) EXPECT_NEAR(y[i], rhs[i], 1e-12);
  }
}

TEST(Blocks, CholeskyOfASmallBlockReadsTheLowerTriangleOnly) {
  // The upper triangle holds garbage; Cholesky must factor tril(A) + tril(A, -1)^T whatever the ordering.
  Blocks b;
  b.add({{4.0, 9.0, 9.0}, {1.0, 5.0, 9.0}, {0.5, 2.0, 6.0}});
  auto f = factorize_blocks(Backend::Eigen, Method::Cholesky, ScalarType::Float64, b.pattern(), b.offsets.data(), 1,
                            b.v.data(), {});
  const double s[3][3] = {{4.0, 1.0, 0.5}, {1.0, 5.0, 2.0}, {0.5, 2.0, 6.0}};
  const std::vector<double> rhs{1.0, -2.0, 3.0};
  std::vector<double> x(3);
  f->solve(rhs.data(), x.data(), 1, Op::N, 1);
  for (int r = 0; r < 3; ++r) EXPECT_NEAR(s[r][0] * x[0] + s[r][1] * x[1] + s[r][2] * x[2], rhs[r], 1e-13);
}

TEST(Blocks, SparseAnalysesAreMadeOncePerPatternAndCached) {
  Blocks b;
  b.add(tridiag(130, 4.0, -1.0));
  b.add(tridiag(140, 4.0, -1.0));
  b.add(tridiag(130, 5.0, -2.0));  // the pattern of block 0, other values
  b.add(tridiag(5, 4.0, -1.0));    // dense: no analysis
  BlockAnalysisCache cache(std::size_t{1} << 30);
  BlockOptions o;
  o.threads = 2;
  o.cache = &cache;
  auto f = factorize_blocks(Backend::Eigen, Method::Cholesky, ScalarType::Float64, b.pattern(), b.offsets.data(), 4,
                            b.v.data(), o);
  EXPECT_EQ(f->analyses(), 2);
  EXPECT_EQ(f->analyses_reused(), 1);
  EXPECT_EQ(cache.stats().entries, 2u);
  f = factorize_blocks(Backend::Eigen, Method::Cholesky, ScalarType::Float64, b.pattern(), b.offsets.data(), 4,
                       b.v.data(), o);
  EXPECT_EQ(f->analyses(), 0);
  EXPECT_EQ(f->analyses_reused(), 3);
  std::vector<double> rhs(static_cast<std::size_t>(b.n), 1.0), x(rhs.size());
  f->solve(rhs.data(), x.data(), 1, Op::N, 2);
  const auto y = times(b, x);
  for (index_t i = 0; i < b.n; ++i) EXPECT_NEAR(y[i], 1.0, 1e-12);
  // Another method or scalar type is another key; without a cache the blocks of one call still share.
  f = factorize_blocks(Backend::Eigen, Method::LU, ScalarType::Float64, b.pattern(), b.offsets.data(), 4, b.v.data(),
                       o);
  EXPECT_EQ(f->analyses(), 2);
  EXPECT_EQ(cache.stats().entries, 4u);
  o.cache = nullptr;
  f = factorize_blocks(Backend::Eigen, Method::Cholesky, ScalarType::Float64, b.pattern(), b.offsets.data(), 4,
                       b.v.data(), o);
  EXPECT_EQ(f->analyses(), 2);
  EXPECT_EQ(f->analyses_reused(), 1);
}

TEST(Blocks, AnalysisCacheKeysAreExactAndBoundedByBytes) {
  std::vector<std::int64_t> p{0, 2, 4}, j{0, 1, 0, 1}, j2{0, 1, 0, 1};
  CsrView<std::int64_t> a{2, 2, p.data(), j.data()};
  std::vector<std::int64_t> pd{0, 1, 2}, jd{0, 1};
  CsrView<std::int64_t> diag{2, 2, pd.data(), jd.data()};
  BlockAnalysisCache cache(std::size_t{1} << 20);
  EXPECT_EQ(cache.find(Backend::Eigen, Method::LU, ScalarType::Float64, a), nullptr);
  auto sym = analyze(Backend::Eigen, Method::LU, ScalarType::Float64, a);
  EXPECT_EQ(cache.put(Backend::Eigen, Method::LU, ScalarType::Float64, a, sym), sym);
  CsrView<std::int64_t> same{2, 2, p.data(), j2.data()};  // equal arrays elsewhere in memory
  EXPECT_EQ(cache.find(Backend::Eigen, Method::LU, ScalarType::Float64, same), sym);
  EXPECT_EQ(cache.find(Backend::Eigen, Method::LU, ScalarType::Float64, diag), nullptr);
  EXPECT_EQ(cache.find(Backend::Eigen, Method::LU, ScalarType::Float32, a), nullptr);
  auto other = analyze(Backend::Eigen, Method::LU, ScalarType::Float64, a);
  EXPECT_EQ(cache.put(Backend::Eigen, Method::LU, ScalarType::Float64, a, other), sym);  // the first one stays
  auto s = cache.stats();
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 3u);
  cache.put(Backend::Eigen, Method::LU, ScalarType::Float64, diag,
            analyze(Backend::Eigen, Method::LU, ScalarType::Float64, diag));
  EXPECT_EQ(cache.stats().entries, 2u);
  cache.set_limit(cache.stats().bytes - 1);  // the least recently used goes: `a`
  EXPECT_EQ(cache.stats().entries, 1u);
  EXPECT_EQ(cache.find(Backend::Eigen, Method::LU, ScalarType::Float64, a), nullptr);
  cache.set_limit(0);
  EXPECT_EQ(cache.stats().entries, 0u);
  cache.put(Backend::Eigen, Method::LU, ScalarType::Float64, a, sym);  // limit 0: nothing kept
  EXPECT_EQ(cache.stats().entries, 0u);
}

#ifdef SLA_HAVE_OPENMP
TEST(Blocks, NestedRegionsRunSeriallyWhileABatchRunsAndTheSettingComesBack) {
  const int before = omp_get_max_active_levels();
  omp_set_max_active_levels(8);
  {
    detail::SerialNestedRegions outer;
    EXPECT_EQ(omp_get_max_active_levels(), 1);
    {
      detail::SerialNestedRegions inner;  // scopes nest: the last one out restores
      EXPECT_EQ(omp_get_max_active_levels(), 1);
    }
    EXPECT_EQ(omp_get_max_active_levels(), 1);
    int inner_threads = 0;
#pragma omp parallel num_threads(2)
    {
#pragma omp parallel num_threads(2)
      {
#pragma omp single
        if (omp_get_thread_num() == 0) {
#pragma omp atomic write
          inner_threads = omp_get_num_threads();
        }
      }
    }
    EXPECT_EQ(inner_threads, 1);
  }
  EXPECT_EQ(omp_get_max_active_levels(), 8);
  // A batch call leaves the setting as it found it.
  Blocks b;
  b.add(tridiag(130, 4.0, -1.0));
  b.add(tridiag(140, 4.0, -1.0));
  BlockOptions o;
  o.threads = 2;
  auto f = factorize_blocks(Backend::Eigen, Method::Cholesky, ScalarType::Float64, b.pattern(), b.offsets.data(), 2,
                            b.v.data(), o);
  EXPECT_TRUE(f->errors().empty());
  EXPECT_EQ(omp_get_max_active_levels(), 8);
  omp_set_max_active_levels(before);
}
#endif

}  // namespace
}  // namespace sla
