// CsrPattern: a CSR sparsity pattern validated once, which owns its index arrays.
//
//   auto p = sla::CsrPattern::copy_of(view, indptr_len, indices_len, "A");  // validate_csr + a copy
//   auto sym = sla::analyze(Backend::SuiteSparse, Method::Cholesky, ScalarType::Float64, p);
//   sla::spmv(p.with_values(values, ScalarType::Float64), x, y, k, threads);
//
// Entry points that take a CsrPattern skip the O(nnz) pattern validation: only the values (and vectors) of
// each call are checked, which is O(1). The copy is the pattern's own, so the caller's arrays may change or
// go away after copy_of() returns; the core keeps no pointer into them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sla/errors.hpp"
#include "sla/types.hpp"

namespace sla {

class CsrPattern {
 public:
  // Validate a borrowed pattern (validate_csr, naming `what` in any error) and copy it. The copy's indices
  // are int32 when n_rows, n_cols and nnz are all at most 2^31 - 1 (half the index traffic of int64 in
  // SpMV), int64 otherwise, whatever the index type of the view.
  template <class I>
  static CsrPattern copy_of(const CsrView<I>& view, index_t indptr_len, index_t indices_len, const std::string& what);

  // The pattern of COO indices (nnz each) that are already in CSR order, every entry strictly after the one
  // before it in row-major order (sorted, no duplicates): the usual layout of graph libraries' edge lists.
  // Writes the row pointers to crow (n_rows + 1, int64) and returns the pattern, in one pass (on up to
  // `threads` OpenMP threads for large arrays); returns nothing when an entry is out of that order (the
  // caller sorts). Throws InvalidArgument naming row_name or col_name for an index out of range met before
  // that.
  template <class I>
  static std::optional<CsrPattern> from_ordered_coo(const I* row, const I* col, index_t nnz, index_t n_rows,
                                                    index_t n_cols, std::int64_t* crow, const std::string& row_name,
                                                    const std::string& col_name, int threads = 1);

  index_t n_rows() const { return n_rows_; }
  index_t n_cols() const { return n_cols_; }
  index_t nnz() const { return nnz_; }
  bool index32() const { return index32_; }
  int index_bits() const { return index32_ ? 32 : 64; }
  // Where the index arrays live (a CPU copy).
  Device device() const { return Device::cpu(); }
  // This object and its index arrays.
  std::size_t memory_bytes() const;

  // The index arrays (int32 when index32(), else int64): n_rows + 1 and nnz entries.
  const void* indptr() const;
  const void* indices() const;
  // A typed view; I must be the stored index type (std::int32_t when index32(), else std::int64_t).
  template <class I>
  CsrView<I> view() const;
  // The pattern with `values` (nnz values of type `scalar`, CSR order) as the borrowed arrays of the Krylov
  // solvers, preconditioners and SpMV. The values are borrowed, not copied.
  CsrArrays with_values(const void* values, ScalarType scalar) const;

 private:
  CsrPattern() = default;
  index_t n_rows_ = 0, n_cols_ = 0, nnz_ = 0;
  bool index32_ = true;
  std::vector<std::int32_t> indptr32_, indices32_;
  std::vector<std::int64_t> indptr64_, indices64_;
};

template <>
CsrView<std::int32_t> CsrPattern::view<std::int32_t>() const;
template <>
CsrView<std::int64_t> CsrPattern::view<std::int64_t>() const;

}  // namespace sla
