// CsrPattern: validated once, owns its indices (int32 when they fit), and gives the same results as the
// entry points that take raw arrays.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "sla/direct.hpp"
#include "sla/errors.hpp"
#include "sla/krylov.hpp"
#include "sla/pattern.hpp"
#include "test_util.hpp"

using sla::index_t;

namespace {

using Poisson = sla::test::Poisson2d;

TEST(CsrPattern, CopiesAndNarrowsTheIndices) {
  Poisson a(4);
  const sla::CsrPattern p = a.pattern();
  EXPECT_EQ(p.n_rows(), 16);
  EXPECT_EQ(p.n_cols(), 16);
  EXPECT_EQ(p.nnz(), static_cast<index_t>(a.j.size()));
  EXPECT_TRUE(p.index32());
  EXPECT_EQ(p.index_bits(), 32);
  EXPECT_EQ(p.device(), sla::Device::cpu());
  EXPECT_GE(p.memory_bytes(), (a.p.size() + a.j.size()) * sizeof(std::int32_t));
  const auto v = p.view<std::int32_t>();
  for (size_t r = 0; r < a.p.size(); ++r) EXPECT_EQ(v.indptr[r], a.p[r]);
  for (size_t k = 0; k < a.j.size(); ++k) EXPECT_EQ(v.indices[k], a.j[k]);
  EXPECT_NE(static_cast<const void*>(v.indices), static_cast<const void*>(a.j.data()));
  EXPECT_THROW(p.view<std::int64_t>(), sla::Error);
}

TEST(CsrPattern, KeepsInt64WhenAnIndexDoesNotFit) {
  // One row, 2^31 + 5 columns, one entry past 2^31: the column index needs 64 bits.
  const index_t n_cols = (index_t{1} << 31) + 5;
  std::vector<std::int64_t> p{0, 1}, j{(std::int64_t{1} << 31) + 1};
  const auto pat = sla::CsrPattern::copy_of(sla::CsrView<std::int64_t>{1, n_cols, p.data(), j.data()}, 2, 1, "A");
  EXPECT_FALSE(pat.index32());
  EXPECT_EQ(pat.index_bits(), 64);
  EXPECT_EQ(pat.view<std::int64_t>().indices[0], j[0]);
  EXPECT_THROW(pat.view<std::int32_t>(), sla::Error);
}

TEST(CsrPattern, ValidatesTheCallersArraysOnce) {
  std::vector<std::int64_t> p{0, 2, 3}, j{1, 0, 1};  // row 0 unsorted
  try {
    sla::CsrPattern::copy_of(sla::CsrView<std::int64_t>{2, 2, p.data(), j.data()}, 3, 3, "A");
    ADD_FAILURE() << "no error";
  } catch (const sla::Error& e) {
    EXPECT_EQ(e.kind(), sla::ErrorKind::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("A: column indices of row 0 are not sorted"), std::string::npos) << e.what();
  }
  // An index out of range for int32 that a narrowing copy would wrap into range is still caught.
  std::vector<std::int64_t> p2{0, 1}, j2{(std::int64_t{1} << 32) + 1};
  EXPECT_THROW(sla::CsrPattern::copy_of(sla::CsrView<std::int64_t>{1, 4, p2.data(), j2.data()}, 2, 1, "A"), sla::Error);
}

TEST(CsrPattern, OwnsItsCopyAndGivesTheSameDirectSolve) {
  Poisson a(6);
  const sla::CsrPattern pat = a.pattern();
  std::vector<double> b(a.n, 1.0), x_raw(a.n), x_pat(a.n);
  for (sla::Backend backend : {sla::Backend::SuiteSparse, sla::Backend::Eigen}) {
    if (!sla::backend_available(backend)) continue;
    auto raw =
        sla::factorize(sla::analyze(backend, sla::Method::Cholesky, sla::ScalarType::Float64, a.view()), a.v.data());
    raw->solve(b.data(), x_raw.data(), 1, sla::Op::N);
    // The caller's index arrays may change once the pattern is made.
    Poisson scratch = a;
    const sla::CsrPattern own = scratch.pattern();
    std::fill(scratch.p.begin(), scratch.p.end(), -7);
    std::fill(scratch.j.begin(), scratch.j.end(), -7);
    auto sym = sla::analyze(backend, sla::Method::Cholesky, sla::ScalarType::Float64, own);
    EXPECT_EQ(sym->csr_nnz(), pat.nnz());
    sla::factorize(sym, a.v.data())->solve(b.data(), x_pat.data(), 1, sla::Op::N);
    EXPECT_EQ(x_pat, x_raw) << sla::backend_name(backend);
  }
}

TEST(CsrPattern, GivesTheSameSpmvPreconditionerAndKrylovSolve) {
  Poisson a(8);
  const sla::CsrPattern pat = a.pattern();
  sla::CsrArrays raw;
  raw.n_rows = raw.n_cols = a.n;
  raw.indptr = a.p.data();
  raw.indices = a.j.data();
  raw.values = a.v.data();
  raw.index32 = false;
  const sla::CsrArrays from_pattern = pat.with_values(a.v.data(), sla::ScalarType::Float64);
  EXPECT_TRUE(from_pattern.index32);
  EXPECT_EQ(from_pattern.nnz(), raw.nnz());
  const index_t k = 2;
  std::vector<double> x(a.n * k), y1(a.n * k), y2(a.n * k);
  for (index_t i = 0; i < a.n * k; ++i) x[i] = 0.01 * i - 1.0;
  sla::spmv(raw, x.data(), y1.data(), k, 1);
  sla::spmv(from_pattern, x.data(), y2.data(), k, 1);
  EXPECT_EQ(y1, y2);
  sla::KrylovOptions o;
  o.rtol = 1e-10;
  for (auto kind : {sla::PrecondKind::Jacobi, sla::PrecondKind::IC0}) {
    auto m1 = sla::make_preconditioner(kind, raw, 1.0, 1);
    auto m2 = sla::make_preconditioner(kind, from_pattern, 1.0, 1);
    std::vector<double> x1(a.n * k, 0.0), x2(a.n * k, 0.0);
    auto r1 = sla::krylov_solve(sla::KrylovMethod::CG, raw, y1.data(), x1.data(), k, m1.get(), sla::Op::N, o, nullptr);
    auto r2 = sla::krylov_solve(sla::KrylovMethod::CG, from_pattern, y1.data(), x2.data(), k, m2.get(), sla::Op::N, o,
                                nullptr);
    EXPECT_TRUE(r1.converged && r2.converged);
    EXPECT_EQ(r1.iterations, r2.iterations);
    EXPECT_EQ(x1, x2);  // int32 and int64 indices address the same entries in the same order
  }
}

TEST(CsrPattern, FromCooInCsrOrderInOnePass) {
  using sla::CsrPattern;
  const std::vector<std::int64_t> row{0, 0, 1, 2, 2}, col{0, 2, 1, 0, 2};
  std::vector<std::int64_t> crow(4);
  auto p = CsrPattern::from_ordered_coo(row.data(), col.data(), 5, 3, 3, crow.data(), "row", "col");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(crow, (std::vector<std::int64_t>{0, 2, 3, 5}));
  EXPECT_TRUE(p->index32());
  const auto v = p->view<std::int32_t>();
  for (int k = 0; k < 5; ++k) EXPECT_EQ(v.indices[k], col[k]);
  for (int r = 0; r < 4; ++r) EXPECT_EQ(v.indptr[r], crow[r]);
  // Out of order or a duplicate: nothing (the caller sorts).
  const std::vector<std::int64_t> swapped{0, 0, 2, 1, 2}, dup_col{0, 0, 1, 0, 2};
  EXPECT_FALSE(CsrPattern::from_ordered_coo(swapped.data(), col.data(), 5, 3, 3, crow.data(), "row", "col"));
  EXPECT_FALSE(CsrPattern::from_ordered_coo(row.data(), dup_col.data(), 5, 3, 3, crow.data(), "row", "col"));
  // An index out of range names its array.
  const std::vector<std::int32_t> r32{0, 1, 3}, c32{0, 1, 1};
  std::vector<std::int64_t> crow3(4);
  try {
    CsrPattern::from_ordered_coo(r32.data(), c32.data(), 3, 3, 3, crow3.data(), "row_indices", "col_indices");
    FAIL() << "expected an error";
  } catch (const sla::Error& e) {
    EXPECT_EQ(e.kind(), sla::ErrorKind::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("row_indices: index 3 is out of range"), std::string::npos);
  }
}

TEST(CsrPattern, FromCooInCsrOrderOnSeveralThreads) {
  // Long enough for the threaded pass: rows with 0 to 3 entries, some rows empty.
  std::vector<std::int64_t> row, col;
  const std::int64_t n = 100000;
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t k = 0; k < r % 4; ++k) row.push_back(r), col.push_back((r * 7 + k * 13) % n / 4 * 4 + k);
  for (std::size_t e = 1; e < col.size(); ++e)
    if (row[e] == row[e - 1] && col[e] <= col[e - 1]) col[e] = col[e - 1] + 1;  // keep columns increasing
  for (auto& c : col) c = std::min<std::int64_t>(c, n - 1);
  const auto nnz = static_cast<sla::index_t>(row.size());
  std::vector<std::int64_t> crow1(n + 1), crow2(n + 1);
  auto serial = sla::CsrPattern::from_ordered_coo(row.data(), col.data(), nnz, n, n, crow1.data(), "r", "c", 1);
  auto threaded = sla::CsrPattern::from_ordered_coo(row.data(), col.data(), nnz, n, n, crow2.data(), "r", "c", 2);
  ASSERT_EQ(serial.has_value(), threaded.has_value());
  if (!serial) GTEST_SKIP() << "the generated entries were not in order";
  EXPECT_EQ(crow1, crow2);
  EXPECT_EQ(crow1[0], 0);
  EXPECT_EQ(crow1[n], nnz);
  for (std::int64_t r = 0; r < n; ++r) EXPECT_EQ(crow1[r + 1] - crow1[r], r % 4) << r;
  // An out-of-range index after the middle, and a disorder before it: nothing (the sorting path decides).
  auto bad = col;
  bad[static_cast<std::size_t>(nnz) - 1] = n;
  EXPECT_THROW(sla::CsrPattern::from_ordered_coo(row.data(), bad.data(), nnz, n, n, crow2.data(), "r", "c", 2),
               sla::Error);
  auto swapped = row;
  std::swap(swapped[10], swapped[nnz / 2]);
  EXPECT_FALSE(sla::CsrPattern::from_ordered_coo(swapped.data(), bad.data(), nnz, n, n, crow2.data(), "r", "c", 2));
}

}  // namespace
