// The CSC plan of a CSR pattern and what the CPU backends answer from it: their common Symbolic base.
#include <cmath>
#include <complex>
#include <cstdint>
#include <vector>

#include "convert.hpp"
#include "cpu_symbolic.hpp"
#include "sla/errors.hpp"
#include "sla/interrupt.hpp"

namespace sla::detail {

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

template CscPlan make_csc_plan<std::int32_t>(const CsrView<std::int32_t>&, bool);
template CscPlan make_csc_plan<std::int64_t>(const CsrView<std::int64_t>&, bool);

std::size_t CpuSymbolic::memory_bytes() const {
  // This object and the plan's arrays: colptr, rowind and perm.
  return sizeof(*this) + (plan_.colptr.capacity() + plan_.rowind.capacity() + plan_.perm.capacity()) * sizeof(index_t);
}

void CpuSymbolic::check_structure() const {
  const CscPlan& p = plan_;
  if (p.empty_row < 0 && p.empty_col < 0) return;
  if (method() != Method::LU)
    fail(ErrorKind::SingularMatrix, "A is structurally singular: row and column ", p.empty_row,
         " have no stored entry in the lower triangle of A (row >= col), which is all that the ", method_name(method()),
         " factorization reads (the upper triangle is taken as its mirror). Pass A with its lower triangle (or both)");
  if (p.empty_row >= 0)
    fail(ErrorKind::SingularMatrix, "A is structurally singular: row ", p.empty_row, " of the ", p.n, " x ", p.n,
         " matrix has no stored entry");
  fail(ErrorKind::SingularMatrix, "A is structurally singular: column ", p.empty_col, " of the ", p.n, " x ", p.n,
       " matrix has no stored entry");
}

index_t CpuSymbolic::first_non_finite(const void* values) const {
  // Only the CSR values that the plan uses (Cholesky and LDL^T read the lower triangle alone).
  return visit_scalar(scalar_, [&](auto tag) -> index_t {
    using T = decltype(tag);
    const T* v = static_cast<const T*>(values);
    for (index_t k : plan_.perm) {
      bool finite;
      if constexpr (is_complex_t<T>::value)
        finite = std::isfinite(v[k].real()) && std::isfinite(v[k].imag());
      else
        finite = std::isfinite(v[k]);
      if (!finite) return k;
    }
    return -1;
  });
}

}  // namespace sla::detail
