// CSR pattern validation.
#include <cstdint>
#include <string>
#include <vector>

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

template void validate_csr<std::int32_t>(const CsrView<std::int32_t>&, index_t, index_t, const std::string&);
template void validate_csr<std::int64_t>(const CsrView<std::int64_t>&, index_t, index_t, const std::string&);

}  // namespace sla
