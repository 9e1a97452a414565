// Determinants (slogdet) and selected inversion (inverse_entries) of every backend and method, against a
// dense LU computed here; allow_singular and the errors of both.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "sla/direct.hpp"
#include "sla/errors.hpp"

using sla::Backend;
using sla::ErrorKind;
using sla::Method;
using sla::ScalarType;
using sla::index_t;
using C = std::complex<double>;

namespace {

// A square sparse matrix, CSR with sorted columns, its values held in complex<double>.
struct Sparse {
  index_t n = 0;
  std::vector<index_t> p{0}, j;
  std::vector<C> v;
  sla::CsrView<index_t> view() const { return {n, n, p.data(), j.data()}; }
  std::vector<C> dense() const {
    std::vector<C> a(static_cast<size_t>(n * n), 0.0);
    for (index_t r = 0; r < n; ++r)
      for (index_t k = p[r]; k < p[r + 1]; ++k) a[r * n + j[k]] += v[k];
    return a;
  }
};

// From a dense row-major matrix: every nonzero stored, plus the positions in `extra` (explicit zeros).
Sparse from_dense(index_t n, const std::vector<C>& a, const std::vector<std::pair<index_t, index_t>>& extra = {}) {
  Sparse s;
  s.n = n;
  for (index_t r = 0; r < n; ++r) {
    for (index_t c = 0; c < n; ++c) {
      bool keep = a[r * n + c] != 0.0;
      for (const auto& e : extra) keep = keep || (e.first == r && e.second == c);
      if (keep) s.j.push_back(c), s.v.push_back(a[r * n + c]);
    }
    s.p.push_back(static_cast<index_t>(s.j.size()));
  }
  return s;
}

bool complex_type(ScalarType s) { return s == ScalarType::Complex64 || s == ScalarType::Complex128; }
bool single_type(ScalarType s) { return s == ScalarType::Float32 || s == ScalarType::Complex64; }

// Values in the caller's scalar type; `exact` holds them read back in complex<double>, so that the dense
// reference sees the matrix the factorization was given (float32 rounding included).
struct Typed {
  ScalarType scalar;
  std::vector<float> f32;
  std::vector<double> f64;
  std::vector<std::complex<float>> c64;
  std::vector<C> c128, exact;
  Typed(ScalarType s, const std::vector<C>& v) : scalar(s) {
    for (const C& x : v) {
      switch (s) {
        case ScalarType::Float32: f32.push_back(static_cast<float>(x.real())), exact.emplace_back(f32.back()); break;
        case ScalarType::Float64: f64.push_back(x.real()), exact.emplace_back(x.real()); break;
        case ScalarType::Complex64: c64.emplace_back(x), exact.emplace_back(c64.back()); break;
        case ScalarType::Complex128: c128.push_back(x), exact.push_back(x); break;
      }
    }
  }
  void* data() {
    switch (scalar) {
      case ScalarType::Float32: return f32.data();
      case ScalarType::Float64: return f64.data();
      case ScalarType::Complex64: return c64.data();
      case ScalarType::Complex128: return c128.data();
    }
    return nullptr;
  }
};

// An output array of scalar type s, read back in complex<double>.
struct Out {
  ScalarType scalar;
  std::vector<double> buf;  // enough room for m complex<double>
  Out(ScalarType s, index_t m) : scalar(s), buf(static_cast<size_t>(2 * m + 2)) {}
  void* data() { return buf.data(); }
  C operator[](index_t k) const {
    const void* b = buf.data();
    switch (scalar) {
      case ScalarType::Float32: return static_cast<const float*>(b)[k];
      case ScalarType::Float64: return static_cast<const double*>(b)[k];
      case ScalarType::Complex64: return C(static_cast<const std::complex<float>*>(b)[k]);
      case ScalarType::Complex128: return static_cast<const C*>(b)[k];
    }
    return 0.0;
  }
};

// Dense LU with partial pivoting: the reference determinant (sign, log|det|) and inverse.
struct DenseRef {
  C sign = 1.0;
  double logabs = 0.0;
  std::vector<C> inv;  // row-major
};

DenseRef dense_reference(index_t n, std::vector<C> a) {
  DenseRef r;
  std::vector<C> inv(static_cast<size_t>(n * n), 0.0);
  for (index_t i = 0; i < n; ++i) inv[i * n + i] = 1.0;
  for (index_t k = 0; k < n; ++k) {
    index_t piv = k;
    for (index_t i = k + 1; i < n; ++i)
      if (std::abs(a[i * n + k]) > std::abs(a[piv * n + k])) piv = i;
    if (piv != k) {
      for (index_t c = 0; c < n; ++c) std::swap(a[k * n + c], a[piv * n + c]), std::swap(inv[k * n + c], inv[piv * n + c]);
      r.sign = -r.sign;
    }
    const C d = a[k * n + k];
    if (std::abs(d) == 0.0) {
      r.sign = 0.0;
      r.logabs = -std::numeric_limits<double>::infinity();
      return r;
    }
    r.sign *= d / std::abs(d);
    r.logabs += std::log(std::abs(d));
    for (index_t c = 0; c < n; ++c) a[k * n + c] /= d, inv[k * n + c] /= d;
    for (index_t i = 0; i < n; ++i) {
      if (i == k) continue;
      const C f = a[i * n + k];
      if (f == 0.0) continue;
      for (index_t c = 0; c < n; ++c) a[i * n + c] -= f * a[k * n + c], inv[i * n + c] -= f * inv[k * n + c];
    }
  }
  r.inv = std::move(inv);
  return r;
}

enum class Kind { Spd, SymIndefinite, Unsymmetric };

// A random sparse matrix of the kind, diagonally dominant (so every pivot order of the symmetric methods
// and of LU keeps away from zero), complex (Hermitian for the symmetric kinds) when `complex`.
Sparse random_matrix(index_t n, Kind kind, bool complex, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::bernoulli_distribution coin(std::min(1.0, 3.0 / static_cast<double>(n)));
  std::vector<C> a(static_cast<size_t>(n * n), 0.0);
  auto value = [&] { return complex ? C(u(rng), u(rng)) : C(u(rng), 0.0); };
  for (index_t r = 0; r < n; ++r)
    for (index_t c = 0; c < r; ++c) {
      if (!coin(rng)) continue;
      a[r * n + c] = value();
      a[c * n + r] = kind == Kind::Unsymmetric ? value() : std::conj(a[r * n + c]);
    }
  for (index_t r = 0; r < n; ++r) {
    double sum = 1.0;
    for (index_t c = 0; c < n; ++c) sum += std::abs(a[r * n + c]) + std::abs(a[c * n + r]);
    const double sign = kind == Kind::Spd ? 1.0 : (u(rng) < 0 ? -1.0 : 1.0);
    C d = sign * (sum + std::abs(u(rng)));
    if (kind == Kind::Unsymmetric && complex) d *= std::polar(1.0, 3.0 * u(rng));
    a[r * n + r] = d;
  }
  return from_dense(n, a);
}

Kind kind_for(Method m) {
  switch (m) {
    case Method::Cholesky: return Kind::Spd;
    case Method::LDL: return Kind::SymIndefinite;
    case Method::LU: return Kind::Unsymmetric;
  }
  return Kind::Unsymmetric;
}

struct Combo {
  Backend backend;
  Method method;
  ScalarType scalar;
};

std::vector<Combo> all_combos() {
  std::vector<Combo> out;
  for (Backend b : {Backend::SuiteSparse, Backend::Eigen})
    for (Method m : {Method::Cholesky, Method::LDL, Method::LU})
      for (ScalarType s : {ScalarType::Float32, ScalarType::Float64, ScalarType::Complex64, ScalarType::Complex128})
        out.push_back({b, m, s});
  return out;
}

std::string combo_name(const ::testing::TestParamInfo<Combo>& info) {
  return std::string(sla::backend_name(info.param.backend)) + "_" + sla::method_name(info.param.method) + "_" +
         sla::scalar_name(info.param.scalar);
}

template <class F>
void expect_error(ErrorKind kind, const std::string& fragment, F&& fn) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing '" << fragment << "'";
  } catch (const sla::Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

class Spectral : public ::testing::TestWithParam<Combo> {
 protected:
  void SetUp() override {
    if (!sla::backend_available(GetParam().backend)) GTEST_SKIP() << "backend not compiled in";
  }
  // Whether this combination has selected inversion (Eigen's SparseLU has not).
  bool has_selinv() const { return !(GetParam().backend == Backend::Eigen && GetParam().method == Method::LU); }
  // Relative accuracy: SuiteSparse computes in double (a single-precision result is rounded once), Eigen
  // in the caller's precision.
  double tol() const {
    const Combo c = GetParam();
    if (!single_type(c.scalar)) return 1e-10;
    return c.backend == Backend::Eigen ? 2e-4 : 1e-6;
  }
  std::unique_ptr<sla::Numeric> factor(const Sparse& a, Typed& vals, sla::FactorizeOptions o = {}) const {
    const Combo c = GetParam();
    return sla::factorize(sla::analyze(c.backend, c.method, c.scalar, a.view()), vals.data(), o);
  }
};

TEST_P(Spectral, SlogdetMatchesDenseLU) {
  const Combo c = GetParam();
  std::mt19937 rng(11);
  for (index_t n : {1, 5, 17, 40}) {
    for (int trial = 0; trial < 3; ++trial) {
      const Sparse a = random_matrix(n, kind_for(c.method), complex_type(c.scalar), rng);
      Typed vals(c.scalar, a.v);
      Sparse exact = a;
      exact.v = vals.exact;
      const DenseRef ref = dense_reference(n, exact.dense());
      const sla::SignLogDet got = factor(a, vals)->slogdet();
      SCOPED_TRACE("n = " + std::to_string(n) + ", trial " + std::to_string(trial));
      EXPECT_NEAR(std::abs(got.sign - ref.sign), 0.0, 1e3 * tol()) << got.sign << " vs " << ref.sign;
      EXPECT_NEAR(got.logabs, ref.logabs, tol() * (1.0 + std::abs(ref.logabs)) * n);
      if (!complex_type(c.scalar)) EXPECT_EQ(got.sign.imag(), 0.0);
      EXPECT_EQ(std::abs(got.sign), std::abs(got.sign) == 0.0 ? 0.0 : std::abs(got.sign));  // no NaN
    }
  }
}

TEST_P(Spectral, NegativeDeterminantSign) {
  const Combo c = GetParam();
  if (c.method == Method::Cholesky || complex_type(c.scalar)) GTEST_SKIP() << "det > 0 or complex";
  // [[0, 2], [3, 1]] (LU: det -6) / [[-2, 1], [1, 3]] (LDL^T: det -7); the row swap of LU counts.
  const bool lu = c.method == Method::LU;
  const Sparse a = from_dense(2, lu ? std::vector<C>{0, 2, 3, 1} : std::vector<C>{-2, 1, 1, 3});
  Typed vals(c.scalar, a.v);
  const sla::SignLogDet got = factor(a, vals)->slogdet();
  EXPECT_EQ(got.sign, C(-1.0, 0.0));
  EXPECT_NEAR(got.logabs, std::log(lu ? 6.0 : 7.0), 1e-6);
}

TEST_P(Spectral, LargeDeterminantDoesNotOverflow) {
  // diag(10, ..., 10), n = 100000: det = 10^100000 overflows double, log|det| = n ln 10.
  const Combo c = GetParam();
  const index_t n = 100000;
  Sparse a;
  a.n = n;
  for (index_t r = 0; r < n; ++r) a.j.push_back(r), a.v.emplace_back(10.0), a.p.push_back(r + 1);
  Typed vals(c.scalar, a.v);
  const sla::SignLogDet got = factor(a, vals)->slogdet();
  EXPECT_EQ(got.sign, C(1.0, 0.0));
  // Eigen's single-precision LL^T holds sqrt(10) rounded to float: log|det| is off by n times its rounding.
  EXPECT_NEAR(got.logabs, n * std::log(10.0), (c.backend == Backend::Eigen && single_type(c.scalar) ? 1e-6 : 1e-9) * n);
}

TEST_P(Spectral, InverseEntriesMatchDenseInverseOnThePatternAndItsTranspose) {
  const Combo c = GetParam();
  std::mt19937 rng(5);
  for (index_t n : {1, 6, 23, 50}) {
    const Sparse a = random_matrix(n, kind_for(c.method), complex_type(c.scalar), rng);
    Typed vals(c.scalar, a.v);
    Sparse exact = a;
    exact.v = vals.exact;
    const DenseRef ref = dense_reference(n, exact.dense());
    std::vector<index_t> rows, cols;
    for (index_t r = 0; r < n; ++r)
      for (index_t k = a.p[r]; k < a.p[r + 1]; ++k) {
        rows.push_back(r), cols.push_back(a.j[k]);  // (r, c) and (c, r): the gradient reads A^{-T}
        rows.push_back(a.j[k]), cols.push_back(r);
      }
    const index_t m = static_cast<index_t>(rows.size());
    auto num = factor(a, vals);
    Out out(c.scalar, m);
    if (!has_selinv()) {
      expect_error(ErrorKind::Unavailable, "selected inversion",
                   [&] { num->inverse_entries(rows.data(), cols.data(), m, out.data()); });
      return;
    }
    num->inverse_entries(rows.data(), cols.data(), m, out.data());
    double scale = 0.0;
    for (const C& z : ref.inv) scale = std::max(scale, std::abs(z));
    for (index_t k = 0; k < m; ++k)
      EXPECT_NEAR(std::abs(out[k] - ref.inv[rows[k] * n + cols[k]]), 0.0, tol() * scale * n)
          << "n = " << n << ", entry (" << rows[k] << ", " << cols[k] << ")";
  }
}

TEST_P(Spectral, EveryPositionIsEitherExactOrRejected) {
  // One request per position of a small matrix: a position inside the filled pattern matches the dense
  // inverse, one outside is an InvalidArgument naming it; the diagonal is always supported.
  const Combo c = GetParam();
  if (!has_selinv()) GTEST_SKIP() << "no selected inversion";
  std::mt19937 rng(3);
  const index_t n = 12;
  const Sparse a = random_matrix(n, kind_for(c.method), complex_type(c.scalar), rng);
  Typed vals(c.scalar, a.v);
  Sparse exact = a;
  exact.v = vals.exact;
  const DenseRef ref = dense_reference(n, exact.dense());
  auto num = factor(a, vals);
  int supported = 0;
  for (index_t r = 0; r < n; ++r)
    for (index_t col = 0; col < n; ++col) {
      Out out(c.scalar, 1);
      try {
        num->inverse_entries(&r, &col, 1, out.data());
        ++supported;
        EXPECT_NEAR(std::abs(out[0] - ref.inv[r * n + col]), 0.0, tol() * 10) << "(" << r << ", " << col << ")";
      } catch (const sla::Error& e) {
        EXPECT_NE(r, col);
        EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument) << e.what();
        const std::string where = "(" + std::to_string(r) + ", " + std::to_string(col) + ")";
        EXPECT_NE(std::string(e.what()).find(where), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("supported positions"), std::string::npos) << e.what();
      }
    }
  EXPECT_GE(supported, static_cast<int>(a.j.size()));
}

TEST_P(Spectral, InverseEntriesErrors) {
  const Combo c = GetParam();
  if (!has_selinv()) GTEST_SKIP() << "no selected inversion";
  // Two decoupled 2 x 2 blocks: no factor ever couples them.
  const Sparse a = from_dense(4, {4, 1, 0, 0, 1, 3, 0, 0, 0, 0, 5, 2, 0, 0, 2, 6});
  Typed vals(c.scalar, a.v);
  auto num = factor(a, vals);
  Out out(c.scalar, 3);
  std::vector<index_t> rows{0, 1, 0}, cols{1, 1, 3};
  expect_error(ErrorKind::InvalidArgument, "position (0, 3) (entry 2)",
               [&] { num->inverse_entries(rows.data(), cols.data(), 3, out.data()); });
  cols[2] = 4;
  expect_error(ErrorKind::InvalidArgument, "cols[2] = 4 is out of range",
               [&] { num->inverse_entries(rows.data(), cols.data(), 3, out.data()); });
  rows[1] = -1;
  expect_error(ErrorKind::InvalidArgument, "rows[1] = -1 is out of range",
               [&] { num->inverse_entries(rows.data(), cols.data(), 3, out.data()); });
  num->inverse_entries(rows.data(), cols.data(), 0, out.data());  // nothing asked, nothing done
}

TEST_P(Spectral, AllowSingularAcceptsTinyPivotsAndKeepsSolving) {
  // diag(1, 1e-20): rcond below eps, so singular to working precision, but no pivot is zero.
  const Combo c = GetParam();
  const Sparse a = from_dense(2, {1, 0, 0, 1e-20});
  Typed vals(c.scalar, a.v);
  // UMFPACK scales the rows first, which makes this matrix the identity: nothing to reject.
  if (!(c.backend == Backend::SuiteSparse && c.method == Method::LU))
    expect_error(ErrorKind::SingularMatrix, "singular", [&] { factor(a, vals); });
  auto num = factor(a, vals, sla::FactorizeOptions{true});
  const sla::SignLogDet got = num->slogdet();
  EXPECT_EQ(got.sign, C(1.0, 0.0));
  EXPECT_NEAR(got.logabs, std::log(1e-20), 1e-4);
  Typed b(c.scalar, {1.0, 1e-20});
  Out x(c.scalar, 2);
  num->solve(b.data(), x.data(), 1, sla::Op::N);
  EXPECT_NEAR(std::abs(x[0] - 1.0), 0.0, 1e-5);
  EXPECT_NEAR(std::abs(x[1] - 1.0), 0.0, 1e-5);
}

TEST_P(Spectral, ExactlySingularMatrix) {
  // [[1, 1], [1, 1]]: a zero pivot whatever the ordering, with nothing after it to divide.
  const Combo c = GetParam();
  const Sparse a = from_dense(2, {1, 1, 1, 1});
  Typed vals(c.scalar, a.v);
  const sla::FactorizeOptions allow{true};
  if (c.method == Method::Cholesky) {
    expect_error(ErrorKind::NotPositiveDefinite, "not positive definite", [&] { factor(a, vals, allow); });
    return;
  }
  expect_error(ErrorKind::SingularMatrix, "singular", [&] { factor(a, vals); });
  if (c.backend == Backend::Eigen) {  // Eigen stops at the zero pivot: no complete factor to accept
    expect_error(ErrorKind::SingularMatrix, "singular", [&] { factor(a, vals, allow); });
    return;
  }
  auto num = factor(a, vals, allow);
  const sla::SignLogDet got = num->slogdet();
  EXPECT_EQ(got.sign, C(0.0, 0.0));
  EXPECT_EQ(got.logabs, -std::numeric_limits<double>::infinity());
  Typed b(c.scalar, {1.0, 1.0});
  Out x(c.scalar, 2);
  expect_error(ErrorKind::SingularMatrix, "zero pivot", [&] { num->solve(b.data(), x.data(), 1, sla::Op::N); });
  index_t r = 0;
  expect_error(ErrorKind::SingularMatrix, "zero pivot", [&] { num->inverse_entries(&r, &r, 1, x.data()); });
}

TEST_P(Spectral, ZeroPivotBeforeTheLastIsNotAccepted) {
  // [[0, 1], [1, 0]] is regular (det -1), but LDL^T without pivoting meets D_1 = 0 and cannot go on: no
  // complete factor and no determinant to give, allow_singular or not.
  const Combo c = GetParam();
  if (c.method != Method::LDL) GTEST_SKIP() << "LDL^T only";
  const Sparse a = from_dense(2, {0, 1, 1, 0}, {{0, 0}, {1, 1}});
  Typed vals(c.scalar, a.v);
  expect_error(ErrorKind::SingularMatrix, "singular", [&] { factor(a, vals, sla::FactorizeOptions{true}); });
}

INSTANTIATE_TEST_SUITE_P(Spectral, Spectral, ::testing::ValuesIn(all_combos()), combo_name);

// The sign of det(A) over random unsymmetric matrices that are not diagonally dominant (so LU pivots rows),
// for both LU backends, against the dense reference: every one must match.
TEST(SpectralLU, SignOfRandomUnsymmetricMatrices) {
  std::mt19937 rng(2024);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (Backend be : {Backend::SuiteSparse, Backend::Eigen}) {
    if (!sla::backend_available(be)) continue;
    int matched = 0;
    for (int t = 0; t < 100; ++t) {
      const index_t n = 3 + t % 20;
      std::vector<C> d(static_cast<size_t>(n * n), 0.0);
      std::bernoulli_distribution coin(0.35);
      for (index_t i = 0; i < n * n; ++i)
        if (coin(rng)) d[i] = u(rng);
      for (index_t i = 0; i < n; ++i) d[((i * 7) % n) * n + i] += 2.0 * u(rng);  // a permuted diagonal
      const DenseRef ref = dense_reference(n, d);
      if (ref.logabs < -20.0) continue;  // numerically singular draw: no sign to compare
      const Sparse a = from_dense(n, d);
      Typed vals(ScalarType::Float64, a.v);
      auto num = sla::factorize(sla::analyze(be, Method::LU, ScalarType::Float64, a.view()), vals.data(),
                                sla::FactorizeOptions{true});
      const sla::SignLogDet got = num->slogdet();
      EXPECT_EQ(got.sign.real(), ref.sign.real()) << sla::backend_name(be) << " matrix " << t;
      EXPECT_NEAR(got.logabs, ref.logabs, 1e-9 * (1 + std::abs(ref.logabs)));
      matched += got.sign.real() == ref.sign.real();
    }
    EXPECT_GE(matched, 90);  // nearly every draw is regular
  }
}

// UMFPACK drops the entries of L and U that come out exactly zero, and stores nothing for an explicit
// zero of A: selected inversion must still be exact on the pattern of A^T. Small integer matrices cancel
// exactly and often; each also stores a few explicit zeros.
TEST(SpectralLU, ExactCancellationAndExplicitZeros) {
  if (!sla::backend_available(Backend::SuiteSparse)) GTEST_SKIP() << "SuiteSparse not compiled in";
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> pick(-2, 2);
  int checked = 0;
  for (int t = 0; t < 200; ++t) {
    const index_t n = 4 + t % 9;
    std::vector<C> d(static_cast<size_t>(n * n), 0.0);
    for (auto& x : d) x = pick(rng) * (pick(rng) != 0 ? 1.0 : 0.0);
    std::vector<std::pair<index_t, index_t>> zeros;
    for (index_t k = 0; k < n; ++k) {
      const index_t r = (k * 5 + t) % n, c = (k * 3 + 1) % n;
      if (d[r * n + c] == 0.0) zeros.emplace_back(r, c);
    }
    const DenseRef ref = dense_reference(n, d);
    if (ref.logabs < -20.0 || std::abs(ref.sign) == 0.0) continue;  // singular draw
    const Sparse a = from_dense(n, d, zeros);
    bool empty_line = false;  // structurally singular draws are rejected before any factorization
    for (index_t r = 0; r < n; ++r) empty_line = empty_line || a.p[r] == a.p[r + 1];
    std::vector<int> colcount(static_cast<size_t>(n), 0);
    for (index_t c : a.j) ++colcount[c];
    for (int k : colcount) empty_line = empty_line || k == 0;
    if (empty_line) continue;
    for (ScalarType s : {ScalarType::Float64, ScalarType::Complex128}) {
      Typed vals(s, a.v);
      auto num = sla::factorize(sla::analyze(Backend::SuiteSparse, Method::LU, s, a.view()), vals.data(),
                                sla::FactorizeOptions{true});
      std::vector<index_t> rows, cols;
      for (index_t r = 0; r < n; ++r)
        for (index_t k = a.p[r]; k < a.p[r + 1]; ++k) rows.push_back(a.j[k]), cols.push_back(r);
      const index_t m = static_cast<index_t>(rows.size());
      Out out(s, m);
      num->inverse_entries(rows.data(), cols.data(), m, out.data());
      for (index_t k = 0; k < m; ++k)
        EXPECT_NEAR(std::abs(out[k] - ref.inv[rows[k] * n + cols[k]]), 0.0, 1e-9 * (1 + std::abs(ref.inv[rows[k] * n + cols[k]])))
            << "matrix " << t << ", entry (" << rows[k] << ", " << cols[k] << ")";
    }
    ++checked;
  }
  EXPECT_GE(checked, 50);
}

// The batch passes allow_singular to every member.
TEST(SpectralBatch, AllowSingularReachesEveryMember) {
  if (!sla::backend_available(Backend::SuiteSparse)) GTEST_SKIP() << "SuiteSparse not compiled in";
  const Sparse a = from_dense(2, {1, 1, 1, 1});
  std::vector<double> vals{1, 1, 1, 1, 2, 1, 1, 2};  // singular, then det 3
  auto sym = sla::analyze(Backend::SuiteSparse, Method::LU, ScalarType::Float64, a.view());
  expect_error(ErrorKind::SingularMatrix, "batch member 0", [&] { sla::factorize_batch(sym, vals.data(), 2, 1); });
  const sla::NumericBatch batch = sla::factorize_batch(sym, vals.data(), 2, 1, sla::FactorizeOptions{true});
  EXPECT_EQ(batch[0]->slogdet().logabs, -std::numeric_limits<double>::infinity());
  EXPECT_NEAR(batch[1]->slogdet().logabs, std::log(3.0), 1e-12);
}

}  // namespace

namespace {

// The 3D Laplacian on an m^3 grid, its off-diagonal couplings turned into unit complex numbers (Hermitian)
// when `complex`: large enough for CHOLMOD to choose its supernodal factorization.
Sparse laplacian3d(index_t m, bool complex) {
  Sparse a;
  a.n = m * m * m;
  for (index_t r = 0; r < a.n; ++r) {
    const index_t x = r % m, y = (r / m) % m, z = r / (m * m);
    auto coupling = [&](index_t lo, index_t hi) {  // the value at (hi, lo); (lo, hi) holds its conjugate
      return complex ? std::polar(-1.0, 0.1 * static_cast<double>((lo * 7 + hi * 3) % 11)) : C(-1.0, 0.0);
    };
    auto push = [&](index_t c) {
      a.j.push_back(c);
      a.v.push_back(c == r ? C(6.5, 0.0) : c < r ? coupling(c, r) : std::conj(coupling(r, c)));
    };
    if (z > 0) push(r - m * m);
    if (y > 0) push(r - m);
    if (x > 0) push(r - 1);
    push(r);
    if (x < m - 1) push(r + 1);
    if (y < m - 1) push(r + m);
    if (z < m - 1) push(r + m * m);
    a.p.push_back(static_cast<index_t>(a.j.size()));
  }
  return a;
}

}  // namespace

// Selected inversion of larger factors (CHOLMOD: supernodal), checked column by column against solves
// with unit vectors: column c of A^{-1} at every row of A's column c.
TEST(SpectralLarge, InverseEntriesMatchSolvesOnA3dLaplacian) {
  for (Backend be : {Backend::SuiteSparse, Backend::Eigen}) {
    if (!sla::backend_available(be)) continue;
    for (Method method : {Method::Cholesky, Method::LDL, Method::LU}) {
      if (be == Backend::Eigen && method == Method::LU) continue;
      for (ScalarType s : {ScalarType::Float64, ScalarType::Complex128}) {
        const Sparse a = laplacian3d(10, s == ScalarType::Complex128);
        const index_t n = a.n;
        Typed vals(s, a.v);
        auto num = sla::factorize(sla::analyze(be, method, s, a.view()), vals.data());
        std::vector<index_t> rows, cols;
        for (index_t r = 0; r < n; ++r)
          for (index_t k = a.p[r]; k < a.p[r + 1]; ++k) rows.push_back(r), cols.push_back(a.j[k]);
        const index_t m = static_cast<index_t>(rows.size());
        Out out(s, m);
        num->inverse_entries(rows.data(), cols.data(), m, out.data());
        for (index_t c : {index_t(0), n / 3, n / 2 + 5, n - 1}) {
          std::vector<C> e(static_cast<size_t>(n), 0.0);
          e[c] = 1.0;
          Typed b(s, e);
          Out x(s, n);
          num->solve(b.data(), x.data(), 1, sla::Op::N);
          for (index_t k = 0; k < m; ++k)
            if (cols[k] == c)
              EXPECT_NEAR(std::abs(out[k] - x[rows[k]]), 0.0, 1e-12)
                  << sla::backend_name(be) << " " << sla::method_name(method) << " " << sla::scalar_name(s) << " ("
                  << rows[k] << ", " << c << ")";
        }
        const sla::SignLogDet det = num->slogdet();
        EXPECT_NEAR(std::abs(det.sign - 1.0), 0.0, 1e-12);  // Hermitian positive definite
      }
    }
  }
}
