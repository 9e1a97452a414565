// Internal: what the CPU backends read off a finished factorization besides solves: the determinant in
// log space, and selected entries of the inverse (selected inversion on the filled pattern of the factors).
//
// Every backend reduces its factors to one form, B = L D U with L unit lower triangular, D diagonal and U
// unit upper triangular, B = P A Q (up to a row scaling) in the factorization's own ordering, on a lower
// pattern that is closed under elimination (a FilledPattern). The selected inverse Z = B^{-1} on that
// pattern and its transpose then follows from the recurrences of Takahashi (symmetric/Hermitian, U = L^H)
// and of Erisman and Tinney (general): from U Z = D^{-1} L^{-1} and Z L = U^{-1} D^{-1},
//   Z(p, j) = - sum_{k > p} U(p, k) Z(k, j)        (j > p)
//   Z(i, p) = - sum_{k > p} Z(i, k) L(k, p)        (i > p)
//   Z(p, p) = 1 / d_p - sum_{k > p} U(p, k) Z(k, p)
// taken for p = n-1, ..., 0. Where L(k, p) or U(p, k) is nonzero only for k in the pattern S_p of column
// p, the sums read Z only on S_p x S_p, which a closed pattern stores: for k < j both in S_p, j is in S_k.
#pragma once

#include <cmath>
#include <complex>
#include <limits>
#include <vector>

#include "sla/direct.hpp"
#include "sla/errors.hpp"
#include "sla/types.hpp"

namespace sla::detail {

// The strictly lower pattern of a factor, column by column with sorted rows, closed under elimination:
// for every column p and rows k < j of column p, j is a row of column k (the pattern of a Cholesky factor,
// or any supernodal relaxation of it).
struct FilledPattern {
  index_t n = 0;
  std::vector<index_t> colptr{0};  // n + 1
  std::vector<index_t> rowind;     // colptr[n], rows > column, increasing within a column
  // The position in rowind of (i, j), i > j, or -1 when it is not in the pattern.
  index_t find(index_t i, index_t j) const;
};

// The Cholesky fill of the symmetric pattern C + C^T, C given as strictly lower (row > column) entries
// column by column: lower_colptr (n + 1) and lower_rowind, in any order, duplicates allowed.
FilledPattern symbolic_fill(index_t n, const std::vector<index_t>& lower_colptr,
                            const std::vector<index_t>& lower_rowind);

// Z = B^{-1} on a FilledPattern: zd the diagonal, zl[q] = Z(rowind[q], j) and zu[q] = Z(j, rowind[q]) for
// q in column j (zu empty when Hermitian: Z(j, i) = conj(Z(i, j))).
template <class W>
struct SelectedInverse {
  std::vector<W> zd, zl, zu;
  // Z(i, j), or false when (i, j) is outside the pattern and its transpose.
  bool at(const FilledPattern& p, index_t i, index_t j, W& z) const;
};

// The selected inverse of B = L D U from the factors on `pattern`: l[q] = L(rowind[q], j), u[q] = U(j,
// rowind[q]) (ignored when hermitian: U = L^H, D real), d the pivots, all nonzero. Throws Internal when the
// pattern turns out not to be closed (a library storing less than the fill of its factor).
template <class W>
SelectedInverse<W> selected_inverse(const FilledPattern& pattern, const std::vector<W>& l, const std::vector<W>& u,
                                    const std::vector<W>& d, bool hermitian);

// Check a request of inverse_entries against an n x n matrix: every index in [0, n).
void check_entry_indices(index_t n, const index_t* rows, const index_t* cols, index_t m);
// The InvalidArgument for request k, (rows[k], cols[k]) in A's indexing, outside the supported positions.
[[noreturn]] void fail_unsupported_entry(index_t k, index_t row, index_t col, const char* factor);
// The SingularMatrix of a selected inversion (or a solve) with a factor that has a zero pivot.
[[noreturn]] void fail_zero_pivot(const char* what);

// Accumulates det = prod of pivots in log space.
class LogDet {
 public:
  // Multiply by v^power (power 1 or 2).
  template <class T>
  void add(const T& v, int power = 1) {
    using std::abs;
    const double a = static_cast<double>(abs(v));
    if (a == 0.0) {
      zero_ = true;
      return;
    }
    add_log(power * std::log(a));
    std::complex<double> u = std::complex<double>(v) / a;  // unit phase; a real v gives +-1 exactly
    for (int k = 0; k < power; ++k) phase_ *= u;
  }
  // Multiply by the sign of a permutation (+1 or -1).
  void flip(bool odd) {
    if (odd) phase_ = -phase_;
  }
  // The result, for a real (sign +-1) or complex (unit modulus) scalar type.
  SignLogDet result(bool complex) const {
    if (zero_) return {std::complex<double>(0.0, 0.0), -std::numeric_limits<double>::infinity()};
    SignLogDet r;
    r.logabs = logabs_ + carry_;
    if (complex) {
      const double m = std::abs(phase_);  // renormalize the rounding of the running product
      r.sign = m > 0.0 ? phase_ / m : std::complex<double>(1.0, 0.0);
    } else {
      r.sign = phase_.real() < 0.0 ? -1.0 : 1.0;
    }
    return r;
  }

 private:
  // Compensated (Neumaier) summation: n terms lose O(eps) in all, not O(n eps).
  void add_log(double term) {
    const double sum = logabs_ + term;
    carry_ += std::abs(logabs_) >= std::abs(term) ? (logabs_ - sum) + term : (term - sum) + logabs_;
    logabs_ = sum;
  }

  std::complex<double> phase_{1.0, 0.0};
  double logabs_ = 0.0, carry_ = 0.0;
  bool zero_ = false;
};

// Whether the permutation perm (perm[k] = image of k, a bijection of 0..n-1) is odd.
bool permutation_is_odd(const index_t* perm, index_t n);

}  // namespace sla::detail
