// Block-diagonal batches of distinct patterns (sla/blocks.hpp): dense and sparse blocks against single
// factorizations, failed blocks reported and NaN, Cholesky falling back to LU per block, bad offsets.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <cstdint>
#include <vector>

#include "sla/blocks.hpp"
#include "sla/direct.hpp"
#include "test_util.hpp"

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
    auto f = factorize_blocks(Backend::Eigen, method, ScalarType::Float64, b.pattern(), b.offsets.data(), 4, b.v.data(), o);
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
  b.add({{1.0, 1.0}, {1.0, 1.0}});          // singular
  b.add({{1.0, 2.0}, {2.0, 1.0}});          // symmetric, positive diagonal, indefinite
  b.add(tridiag(120, 1.0, 1.0));            // sparse, indefinite
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
  EXPECT_THROW(factorize_blocks(Backend::Eigen, Method::LU, ScalarType::Float64, pat, bad_end.data(), 2, b.v.data(), {}),
               Error);
  std::vector<std::int64_t> split{0, 2, 6};  // row 2 couples to column 1 of... block boundaries cut a block
  try {
    factorize_blocks(Backend::Eigen, Method::LU, ScalarType::Float64, pat, split.data(), 2, b.v.data(), {});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("block diagonal"), std::string::npos);
  }
}

}  // namespace
}  // namespace sla
