// Selected inversion on a filled pattern and the helpers of determinants (see selinv.hpp for the maths).
#include "selinv.hpp"

#include <algorithm>
#include <complex>
#include <vector>

#include "convert.hpp"
#include "sla/interrupt.hpp"

namespace sla::detail {

index_t FilledPattern::find(index_t i, index_t j) const {
  const auto first = rowind.begin() + colptr[j], last = rowind.begin() + colptr[j + 1];
  const auto it = std::lower_bound(first, last, i);
  return it != last && *it == i ? static_cast<index_t>(it - rowind.begin()) : -1;
}

FilledPattern symbolic_fill(index_t n, const std::vector<index_t>& lower_colptr,
                            const std::vector<index_t>& lower_rowind) {
  // Column j of the factor holds the rows > j of column j of C + C^T and of the columns of its children in
  // the elimination tree; its parent is its smallest row. Children come before their parent, so one pass
  // in increasing j builds every column from finished ones.
  FilledPattern f;
  f.n = n;
  f.colptr.assign(static_cast<size_t>(n) + 1, 0);
  std::vector<index_t> mark(static_cast<size_t>(n), -1), head(static_cast<size_t>(n), -1),
      next(static_cast<size_t>(n), -1);
  std::vector<index_t> col;
  for (index_t j = 0; j < n; ++j) {
    col.clear();
    mark[j] = j;
    auto take = [&](index_t i) {
      if (i > j && mark[i] != j) {
        mark[i] = j;
        col.push_back(i);
      }
    };
    for (index_t q = lower_colptr[j]; q < lower_colptr[j + 1]; ++q) take(lower_rowind[q]);
    for (index_t c = head[j]; c != -1; c = next[c])
      for (index_t q = f.colptr[c]; q < f.colptr[c + 1]; ++q) take(f.rowind[q]);
    std::sort(col.begin(), col.end());
    f.rowind.insert(f.rowind.end(), col.begin(), col.end());
    f.colptr[j + 1] = static_cast<index_t>(f.rowind.size());
    if (!col.empty()) {  // link j into its parent's list of children
      const index_t parent = col.front();
      next[j] = head[parent];
      head[parent] = j;
    }
  }
  return f;
}

namespace {

template <class W>
W conj_if(const W& v, bool c) {
  if constexpr (is_complex_t<W>::value) return c ? std::conj(v) : v;
  else return v;
}

}  // namespace

template <class W>
bool SelectedInverse<W>::at(const FilledPattern& p, index_t i, index_t j, W& z) const {
  if (i == j) {
    z = zd[i];
    return true;
  }
  if (i > j) {
    const index_t q = p.find(i, j);
    if (q < 0) return false;
    z = zl[q];
    return true;
  }
  const index_t q = p.find(j, i);
  if (q < 0) return false;
  z = zu.empty() ? conj_if(zl[q], true) : zu[q];
  return true;
}

template <class W>
SelectedInverse<W> selected_inverse(const FilledPattern& pattern, const std::vector<W>& l, const std::vector<W>& u,
                                    const std::vector<W>& d, bool hermitian) {
  const index_t n = pattern.n;
  const auto& cp = pattern.colptr;
  const auto& ri = pattern.rowind;
  SelectedInverse<W> z;
  z.zd.assign(static_cast<size_t>(n), W(0));
  z.zl.assign(ri.size(), W(0));
  if (!hermitian) z.zu.assign(ri.size(), W(0));
  // local[r]: the place of row r in the pattern S_p of the current column (-1: not in S_p).
  std::vector<index_t> local(static_cast<size_t>(n), -1);
  std::vector<W> y, x;  // Z(S_p, p) and Z(p, S_p), accumulated with the opposite sign
  for (index_t p = n; p-- > 0;) {
    if ((p & 1023) == 0) poll_interrupt();
    const index_t q0 = cp[p], m = cp[p + 1] - q0;
    for (index_t t = 0; t < m; ++t) local[ri[q0 + t]] = t;
    y.assign(static_cast<size_t>(m), W(0));
    if (!hermitian) x.assign(static_cast<size_t>(m), W(0));
    for (index_t t = 0; t < m; ++t) {
      // k = c = S_p[t]: the diagonal Z(c, c), then the entries (r, c), r > c, of column c that lie in S_p.
      const index_t c = ri[q0 + t];
      const W lc = l[q0 + t];
      const W uc = hermitian ? conj_if(lc, true) : u[q0 + t];  // U(p, c)
      y[t] += z.zd[c] * lc;
      if (!hermitian) x[t] += uc * z.zd[c];
      // The rows of S_p after c (m - t - 1 of them) are all in column c: stop at the last one.
      const index_t wanted = m - t - 1;
      index_t found = 0;
      for (index_t q = cp[c]; q < cp[c + 1] && found < wanted; ++q) {
        const index_t s = local[ri[q]];
        if (s < 0) continue;
        ++found;
        const W zrc = z.zl[q];                                        // Z(r, c)
        const W zcr = hermitian ? conj_if(zrc, true) : z.zu[q];       // Z(c, r)
        y[s] += zrc * lc;                                              // Z(r, p) gets Z(r, c) L(c, p)
        y[t] += zcr * l[q0 + s];                                       // Z(c, p) gets Z(c, r) L(r, p)
        if (!hermitian) {
          x[t] += u[q0 + s] * zrc;                                     // Z(p, c) gets U(p, r) Z(r, c)
          x[s] += uc * zcr;                                            // Z(p, r) gets U(p, c) Z(c, r)
        }
      }
      if (found != wanted)
        fail(ErrorKind::Internal, "selected inversion: the factor's pattern is not closed under elimination ",
             "(column ", p, " has rows missing from column ", c, ")");
    }
    W diag = W(1) / d[p];
    for (index_t t = 0; t < m; ++t) {
      z.zl[q0 + t] = -y[t];
      if (!hermitian) z.zu[q0 + t] = -x[t];
      const W upk = hermitian ? conj_if(l[q0 + t], true) : u[q0 + t];
      diag -= upk * z.zl[q0 + t];
      local[ri[q0 + t]] = -1;
    }
    if constexpr (is_complex_t<W>::value)
      if (hermitian) diag = W(diag.real(), 0.0);  // Z is Hermitian: its diagonal is real
    z.zd[p] = diag;
  }
  return z;
}

template struct SelectedInverse<double>;
template struct SelectedInverse<std::complex<double>>;
template SelectedInverse<double> selected_inverse(const FilledPattern&, const std::vector<double>&,
                                                  const std::vector<double>&, const std::vector<double>&, bool);
template SelectedInverse<std::complex<double>> selected_inverse(const FilledPattern&,
                                                                const std::vector<std::complex<double>>&,
                                                                const std::vector<std::complex<double>>&,
                                                                const std::vector<std::complex<double>>&, bool);

void check_entry_indices(index_t n, const index_t* rows, const index_t* cols, index_t m) {
  if (m < 0) fail(ErrorKind::InvalidArgument, "inverse_entries: negative number of entries ", m);
  if (m > 0 && (rows == nullptr || cols == nullptr))
    fail(ErrorKind::InvalidArgument, "inverse_entries: null rows or cols for ", m, " entries");
  for (index_t k = 0; k < m; ++k) {
    if (rows[k] < 0 || rows[k] >= n)
      fail(ErrorKind::InvalidArgument, "rows[", k, "] = ", rows[k], " is out of range for a ", n, " x ", n,
           " matrix");
    if (cols[k] < 0 || cols[k] >= n)
      fail(ErrorKind::InvalidArgument, "cols[", k, "] = ", cols[k], " is out of range for a ", n, " x ", n,
           " matrix");
  }
}

void fail_unsupported_entry(index_t k, index_t row, index_t col, const char* factor) {
  fail(ErrorKind::InvalidArgument, "inverse_entries: position (", row, ", ", col, ") (entry ", k,
       ") is not in the filled pattern of the ", factor,
       " factor; the supported positions are the stored entries of A, their transposes and the fill of the "
       "factor (the pattern of L + L^T in the factorization's ordering)");
}

void fail_zero_pivot(const char* what) {
  fail(ErrorKind::SingularMatrix, "A is singular (the factorization has a zero pivot): ", what,
       " is not defined");
}

bool permutation_is_odd(const index_t* perm, index_t n) {
  // The parity of a permutation is that of n minus its number of cycles.
  std::vector<char> seen(static_cast<size_t>(n), 0);
  index_t cycles = 0;
  for (index_t i = 0; i < n; ++i) {
    if (seen[i]) continue;
    ++cycles;
    for (index_t j = i; !seen[j]; j = perm[j]) seen[j] = 1;
  }
  return ((n - cycles) & 1) != 0;
}

}  // namespace sla::detail
