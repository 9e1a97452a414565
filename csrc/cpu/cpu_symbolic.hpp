// Internal to the CPU backends: the CSC plan of a pattern and the Symbolic base class that holds it.
// Nothing outside csrc/cpu (and the C++ tests) sees these: the public contract (sla/direct.hpp) exposes
// only what every backend can answer, whatever its device.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "sla/direct.hpp"
#include "sla/types.hpp"

namespace sla::detail {

// A matrix's pattern converted once to the column-major layout that the libraries want.
// perm[k] is the CSR position of the k-th stored CSC entry; for Cholesky/LDL only the lower triangle
// (row >= col) is kept, which the libraries read as a symmetric/Hermitian matrix.
struct CscPlan {
  index_t n = 0;
  std::vector<index_t> colptr;  // n + 1
  std::vector<index_t> rowind;  // colptr[n]
  std::vector<index_t> perm;    // colptr[n], positions into the CSR values
  index_t csr_nnz = 0;          // number of CSR values the caller passes to factorize()
  // The first row and the first column of the factored matrix without any stored entry (-1: none), which
  // make it structurally singular. With lower_only the factored matrix is tril(A) + tril(A)^H, whose row j
  // and column j are both empty when tril(A) has nothing in row j or column j: both are set to that j.
  index_t empty_row = -1;
  index_t empty_col = -1;
  Ordering ordering = Ordering::Default;  // what the analysis was asked for
};

// Build the CSC plan of a validated square CSR pattern.
template <class I>
CscPlan make_csc_plan(const CsrView<I>& pattern, bool lower_only);

// The base of every CPU backend's analysis: it owns the CSC plan, runs on the CPU, and answers the
// structural and non-finite questions of sla::factorize from the plan.
class CpuSymbolic : public Symbolic {
 public:
  const CscPlan& plan() const { return plan_; }
  Device device() const override { return Device::cpu(); }
  index_t n() const override { return plan_.n; }
  index_t csr_nnz() const override { return plan_.csr_nnz; }
  Ordering ordering() const override { return plan_.ordering; }
  // This object and the plan's arrays; a backend adds what it keeps besides.
  std::size_t memory_bytes() const override;
  void check_structure() const override;
  index_t first_non_finite(const void* values) const override;

 protected:
  CpuSymbolic(ScalarType scalar, CscPlan plan) : Symbolic(scalar), plan_(std::move(plan)) {}
  CscPlan plan_;
};

}  // namespace sla::detail
