// CSR validation and the CSR -> CSC plan shared by the direct-solver backends.
#include <cstdint>
#include <string>
#include <vector>

#include "sla/direct.hpp"
#include "sla/errors.hpp"
#include "sla/interrupt.hpp"
#include "sla/types.hpp"

namespace sla {

template <class I>
void validate_csr(const CsrView<I>& a, index_t indptr_len, index_t indices_len, const std::string& what) {
  if (a.n_rows < 0 || a.n_cols < 0)
    fail(ErrorKind::InvalidArgument, what, ": shape (", a.n_rows, ", ", a.n_cols, ") has a negative size");
  if (indptr_len != a.n_rows + 1)
    fail(ErrorKind::InvalidArgument, what, ": indptr has ", indptr_len, " entries, expected n_rows + 1 = ",
         a.n_rows + 1);
  if (a.indptr == nullptr || (indices_len > 0 && a.indices == nullptr))
    fail(ErrorKind::InvalidArgument, what, ": null index array");
  if (a.indptr[0] != 0) fail(ErrorKind::InvalidArgument, what, ": indptr[0] is ", a.indptr[0], ", expected 0");
  for (index_t r = 0; r < a.n_rows; ++r) {
    if ((r & 0xFFFF) == 0) poll_interrupt();
    const index_t lo = a.indptr[r], hi = a.indptr[r + 1];
    if (hi < lo)
      fail(ErrorKind::InvalidArgument, what, ": indptr decreases at row ", r, " (", lo, " -> ", hi, ")");
    if (hi > indices_len)
      fail(ErrorKind::InvalidArgument, what, ": indptr[", r + 1, "] = ", hi, " exceeds the ", indices_len,
           " column indices given");
    for (index_t k = lo; k < hi; ++k) {
      const index_t c = a.indices[k];
      if (c < 0 || c >= a.n_cols)
        fail(ErrorKind::InvalidArgument, what, ": column index ", c, " in row ", r, " is out of range [0, ",
             a.n_cols, ")");
      if (k > lo && c <= static_cast<index_t>(a.indices[k - 1]))
        fail(ErrorKind::InvalidArgument, what, ": column indices of row ", r,
             " are not sorted and unique (", a.indices[k - 1], " then ", c, ")");
    }
  }
  if (a.nnz() != indices_len)
    fail(ErrorKind::InvalidArgument, what, ": indptr[n_rows] = ", a.nnz(), " but ", indices_len,
         " column indices were given");
}

template <class I>
CscPlan make_csc_plan(const CsrView<I>& a, bool lower_only) {
  CscPlan plan;
  const index_t n = a.n_rows;
  plan.n = n;
  plan.csr_nnz = a.nnz();
  plan.colptr.assign(n + 1, 0);
  // Counting sort by column; rows are visited in order, so row indices come out sorted per column.
  for (index_t r = 0; r < n; ++r)
    for (index_t k = a.indptr[r]; k < a.indptr[r + 1]; ++k) {
      const index_t c = a.indices[k];
      if (!lower_only || r >= c) ++plan.colptr[c + 1];
    }
  for (index_t c = 0; c < n; ++c) plan.colptr[c + 1] += plan.colptr[c];
  const index_t m = plan.colptr[n];
  plan.rowind.resize(m);
  plan.perm.resize(m);
  std::vector<index_t> next(plan.colptr.begin(), plan.colptr.end() - 1);
  std::vector<char> row_used(n, 0);
  for (index_t r = 0; r < n; ++r) {
    if ((r & 0xFFFF) == 0) poll_interrupt();
    for (index_t k = a.indptr[r]; k < a.indptr[r + 1]; ++k) {
      const index_t c = a.indices[k];
      if (lower_only && r < c) continue;
      const index_t dst = next[c]++;
      plan.rowind[dst] = r;
      plan.perm[dst] = k;
      row_used[r] = 1;
    }
  }
  // Structurally empty lines of the factored matrix (see CscPlan).
  for (index_t j = 0; j < n; ++j) {
    const bool col_used = plan.colptr[j + 1] > plan.colptr[j];
    if (lower_only) {
      if (!col_used && !row_used[j]) {
        plan.empty_row = plan.empty_col = j;
        break;
      }
    } else {
      if (plan.empty_row < 0 && !row_used[j]) plan.empty_row = j;
      if (plan.empty_col < 0 && !col_used) plan.empty_col = j;
    }
  }
  return plan;
}

template void validate_csr<std::int32_t>(const CsrView<std::int32_t>&, index_t, index_t, const std::string&);
template void validate_csr<std::int64_t>(const CsrView<std::int64_t>&, index_t, index_t, const std::string&);
template CscPlan make_csc_plan<std::int32_t>(const CsrView<std::int32_t>&, bool);
template CscPlan make_csc_plan<std::int64_t>(const CsrView<std::int64_t>&, bool);

}  // namespace sla
