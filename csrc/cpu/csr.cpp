// CSR pattern validation, and CsrPattern: a validated pattern with its own copy of the indices.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "sla/errors.hpp"
#include "sla/interrupt.hpp"
#include "sla/pattern.hpp"
#include "sla/types.hpp"

namespace sla {

template <class I>
void validate_csr(const CsrView<I>& a, index_t indptr_len, index_t indices_len, const std::string& what) {
  if (a.n_rows < 0 || a.n_cols < 0)
    fail(ErrorKind::InvalidArgument, what, ": shape (", a.n_rows, ", ", a.n_cols, ") has a negative size");
  if (indptr_len != a.n_rows + 1)
    fail(ErrorKind::InvalidArgument, what, ": indptr has ", indptr_len,
         " entries, expected n_rows + 1 = ", a.n_rows + 1);
  if (a.indptr == nullptr || (indices_len > 0 && a.indices == nullptr))
    fail(ErrorKind::InvalidArgument, what, ": null index array");
  if (a.indptr[0] != 0) fail(ErrorKind::InvalidArgument, what, ": indptr[0] is ", a.indptr[0], ", expected 0");
  for (index_t r = 0; r < a.n_rows; ++r) {
    if ((r & 0xFFFF) == 0) poll_interrupt();
    const index_t lo = a.indptr[r], hi = a.indptr[r + 1];
    if (hi < lo) fail(ErrorKind::InvalidArgument, what, ": indptr decreases at row ", r, " (", lo, " -> ", hi, ")");
    if (hi > indices_len)
      fail(ErrorKind::InvalidArgument, what, ": indptr[", r + 1, "] = ", hi, " exceeds the ", indices_len,
           " column indices given");
    for (index_t k = lo; k < hi; ++k) {
      const index_t c = a.indices[k];
      if (c < 0 || c >= a.n_cols)
        fail(ErrorKind::InvalidArgument, what, ": column index ", c, " in row ", r, " is out of range [0, ", a.n_cols,
             ")");
      if (k > lo && c <= static_cast<index_t>(a.indices[k - 1]))
        fail(ErrorKind::InvalidArgument, what, ": column indices of row ", r, " are not sorted and unique (",
             a.indices[k - 1], " then ", c, ")");
    }
  }
  if (a.nnz() != indices_len)
    fail(ErrorKind::InvalidArgument, what, ": indptr[n_rows] = ", a.nnz(), " but ", indices_len,
         " column indices were given");
}

index_t CsrArrays::nnz() const {
  if (n_rows == 0) return 0;
  return index32 ? static_cast<const std::int32_t*>(indptr)[n_rows] : static_cast<const std::int64_t*>(indptr)[n_rows];
}

void validate_csr_arrays(const CsrArrays& a, index_t indptr_len, index_t indices_len, const std::string& what) {
  if (a.index32) {
    validate_csr(CsrView<std::int32_t>{a.n_rows, a.n_cols, static_cast<const std::int32_t*>(a.indptr),
                                       static_cast<const std::int32_t*>(a.indices)},
                 indptr_len, indices_len, what);
  } else {
    validate_csr(CsrView<std::int64_t>{a.n_rows, a.n_cols, static_cast<const std::int64_t*>(a.indptr),
                                       static_cast<const std::int64_t*>(a.indices)},
                 indptr_len, indices_len, what);
  }
}

template void validate_csr<std::int32_t>(const CsrView<std::int32_t>&, index_t, index_t, const std::string&);
template void validate_csr<std::int64_t>(const CsrView<std::int64_t>&, index_t, index_t, const std::string&);

template <class I>
CsrPattern CsrPattern::copy_of(const CsrView<I>& view, index_t indptr_len, index_t indices_len,
                               const std::string& what) {
  // Validate the caller's own arrays first: a narrowing copy of an out-of-range index could make it look valid.
  validate_csr(view, indptr_len, indices_len, what);
  CsrPattern p;
  p.n_rows_ = view.n_rows;
  p.n_cols_ = view.n_cols;
  p.nnz_ = view.nnz();
  constexpr index_t kMax32 = std::numeric_limits<std::int32_t>::max();
  p.index32_ = p.n_rows_ <= kMax32 && p.n_cols_ <= kMax32 && p.nnz_ <= kMax32;
  auto copy = [&](auto& indptr, auto& indices) {
    using J = typename std::decay_t<decltype(indptr)>::value_type;
    indptr.resize(static_cast<std::size_t>(p.n_rows_ + 1));
    indices.resize(static_cast<std::size_t>(p.nnz_));
    for (index_t r = 0; r <= p.n_rows_; ++r) indptr[r] = static_cast<J>(view.indptr[r]);
    for (index_t k = 0; k < p.nnz_; ++k) indices[k] = static_cast<J>(view.indices[k]);
  };
  if (p.index32_)
    copy(p.indptr32_, p.indices32_);
  else
    copy(p.indptr64_, p.indices64_);
  return p;
}

template CsrPattern CsrPattern::copy_of<std::int32_t>(const CsrView<std::int32_t>&, index_t, index_t,
                                                      const std::string&);
template CsrPattern CsrPattern::copy_of<std::int64_t>(const CsrView<std::int64_t>&, index_t, index_t,
                                                      const std::string&);

template <class I>
std::optional<CsrPattern> CsrPattern::from_ordered_coo(const I* row, const I* col, index_t nnz, index_t n_rows,
                                                       index_t n_cols, std::int64_t* crow, const std::string& row_name,
                                                       const std::string& col_name, int threads) {
  if (nnz < 0 || n_rows < 0 || n_cols < 0)
    fail(ErrorKind::InvalidArgument, "from_ordered_coo: negative size (", nnz, ", ", n_rows, ", ", n_cols, ")");
  const int t = threads > 1 && nnz >= (index_t{1} << 16) ? threads : 1;
  // The first entry out of range and the first out of order (each compared with the one before it).
  index_t first_range = nnz, first_disorder = nnz;
#pragma omp parallel for schedule(static) num_threads(t) reduction(min : first_range, first_disorder) if (t > 1)
  for (index_t e = 0; e < nnz; ++e) {
    const auto r = static_cast<index_t>(row[e]), c = static_cast<index_t>(col[e]);
    if (r < 0 || r >= n_rows || c < 0 || c >= n_cols) {
      first_range = std::min(first_range, e);
      continue;
    }
    if (e > 0) {
      const auto pr = static_cast<index_t>(row[e - 1]), pc = static_cast<index_t>(col[e - 1]);
      if (r < pr || (r == pr && c <= pc)) first_disorder = std::min(first_disorder, e);
    }
  }
  if (first_range < first_disorder) {  // met before any disorder, as a pass in order would meet it
    const auto r = static_cast<index_t>(row[first_range]), c = static_cast<index_t>(col[first_range]);
    if (r < 0 || r >= n_rows)
      fail(ErrorKind::InvalidArgument, row_name, ": index ", r, " is out of range for a matrix of shape (", n_rows,
           ", ", n_cols, ")");
    fail(ErrorKind::InvalidArgument, col_name, ": index ", c, " is out of range for a matrix of shape (", n_rows, ", ",
         n_cols, ")");
  }
  if (first_disorder < nnz) return std::nullopt;
    // Row pointers: each entry that starts a row writes the start of that row and of the empty rows before it.
#pragma omp parallel for schedule(static) num_threads(t) if (t > 1)
  for (index_t e = 0; e < nnz; ++e) {
    const auto r = static_cast<index_t>(row[e]);
    const index_t before = e == 0 ? -1 : static_cast<index_t>(row[e - 1]);
    for (index_t q = before + 1; q <= r; ++q) crow[q] = e;
  }
  for (index_t q = nnz == 0 ? 0 : static_cast<index_t>(row[nnz - 1]) + 1; q <= n_rows; ++q) crow[q] = nnz;
  CsrPattern p;
  p.n_rows_ = n_rows;
  p.n_cols_ = n_cols;
  p.nnz_ = nnz;
  constexpr index_t kMax32 = std::numeric_limits<std::int32_t>::max();
  p.index32_ = n_rows <= kMax32 && n_cols <= kMax32 && nnz <= kMax32;
  auto copy = [&](auto& indptr, auto& indices) {
    using J = typename std::decay_t<decltype(indptr)>::value_type;
    indptr.resize(static_cast<std::size_t>(n_rows + 1));
    indices.resize(static_cast<std::size_t>(nnz));
    J* ip = indptr.data();
    J* ix = indices.data();
#pragma omp parallel num_threads(t) if (t > 1)
    {
#pragma omp for schedule(static) nowait
      for (index_t r = 0; r <= n_rows; ++r) ip[r] = static_cast<J>(crow[r]);
#pragma omp for schedule(static)
      for (index_t k = 0; k < nnz; ++k) ix[k] = static_cast<J>(col[k]);
    }
  };
  if (p.index32_)
    copy(p.indptr32_, p.indices32_);
  else
    copy(p.indptr64_, p.indices64_);
  return p;
}

template std::optional<CsrPattern> CsrPattern::from_ordered_coo<std::int32_t>(const std::int32_t*, const std::int32_t*,
                                                                              index_t, index_t, index_t, std::int64_t*,
                                                                              const std::string&, const std::string&,
                                                                              int);
template std::optional<CsrPattern> CsrPattern::from_ordered_coo<std::int64_t>(const std::int64_t*, const std::int64_t*,
                                                                              index_t, index_t, index_t, std::int64_t*,
                                                                              const std::string&, const std::string&,
                                                                              int);

std::size_t CsrPattern::memory_bytes() const {
  return sizeof(*this) + (indptr32_.capacity() + indices32_.capacity()) * sizeof(std::int32_t) +
         (indptr64_.capacity() + indices64_.capacity()) * sizeof(std::int64_t);
}

const void* CsrPattern::indptr() const {
  return index32_ ? static_cast<const void*>(indptr32_.data()) : static_cast<const void*>(indptr64_.data());
}

const void* CsrPattern::indices() const {
  return index32_ ? static_cast<const void*>(indices32_.data()) : static_cast<const void*>(indices64_.data());
}

template <>
CsrView<std::int32_t> CsrPattern::view<std::int32_t>() const {
  if (!index32_) fail(ErrorKind::Internal, "CsrPattern::view<int32>: the pattern's indices are int64");
  return {n_rows_, n_cols_, indptr32_.data(), indices32_.data()};
}

template <>
CsrView<std::int64_t> CsrPattern::view<std::int64_t>() const {
  if (index32_) fail(ErrorKind::Internal, "CsrPattern::view<int64>: the pattern's indices are int32");
  return {n_rows_, n_cols_, indptr64_.data(), indices64_.data()};
}

CsrArrays CsrPattern::with_values(const void* values, ScalarType scalar) const {
  CsrArrays a;
  a.n_rows = n_rows_;
  a.n_cols = n_cols_;
  a.indptr = indptr();
  a.indices = indices();
  a.values = values;
  a.index32 = index32_;
  a.scalar = scalar;
  return a;
}

}  // namespace sla
