// Many independent square matrices with distinct patterns, factorized and solved in one call.
//
// The matrices are the diagonal blocks of one block-diagonal CSR matrix: block b holds the rows and the
// columns [offsets[b], offsets[b+1]). A graph-learning batch (a block-diagonal COO and a `batch` vector)
// is exactly this layout, and a list of matrices becomes it by concatenation, so the members cross into
// C++ as a handful of arrays whatever their number.
//
//   auto f = sla::factorize_blocks(Backend::SuiteSparse, Method::Cholesky, ScalarType::Float64, pattern,
//                                  offsets, nblocks, values, {.threads = 2});
//   f->solve(b, x, nrhs, Op::N, 2);   // column-major n x nrhs of the whole block-diagonal system
//
// Small blocks (n <= dense_max) are factorized as dense matrices in double precision (Cholesky, or LU with
// partial pivoting for the LU and LDL^T methods): for a few dozen unknowns this costs microseconds where a
// sparse library's set-up costs tens. Larger blocks get a sparse analysis and factorization each from
// `backend`. Blocks run in parallel on OpenMP threads, the BLAS single-threaded meanwhile.
//
// A block that fails (singular, not positive definite, NaN) does not stop the others: its error is
// recorded (errors()) and its part of every solution is NaN, so that the caller decides whether the rest
// of the batch is used. Invalid input (offsets, an entry outside its block) throws InvalidArgument.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "sla/direct.hpp"
#include "sla/pattern.hpp"
#include "sla/types.hpp"

namespace sla {

struct BlockOptions {
  int threads = 0;           // 0: OpenMP's default
  index_t dense_max = 96;    // blocks with at most this many rows are factorized densely
  bool fallback_lu = false;  // a block whose Cholesky breaks down (not positive definite) is redone by LU
  // Choose per block, ignoring `method`: Cholesky (with the LU fallback) for a Hermitian block with a
  // positive real diagonal (up to 100 units of roundoff of its largest entry), LU otherwise.
  bool auto_method = false;
  bool check_finite = true;  // a NaN or infinite value fails its block (InvalidArgument)
};

struct BlockError {
  index_t block;
  ErrorKind kind;
  std::string message;
};

class BlockFactors {
 public:
  virtual ~BlockFactors() = default;
  virtual index_t blocks() const = 0;
  virtual index_t n() const = 0;  // rows of the whole block-diagonal matrix
  // The blocks that failed, in increasing order (empty: all factorized).
  virtual const std::vector<BlockError>& errors() const = 0;
  // How many blocks were factorized densely / by the sparse backend / fell back from Cholesky to LU.
  virtual index_t dense_blocks() const = 0;
  virtual index_t sparse_blocks() const = 0;
  virtual index_t lu_fallbacks() const = 0;
  // Blocks factorized (or first tried) by Cholesky.
  virtual index_t cholesky_blocks() const = 0;
  // Solve op(A) X = B for the whole block-diagonal matrix: b and x are n x nrhs column-major of the
  // scalar type the values were given in; the rows of a failed block are NaN in x.
  virtual void solve(const void* b, void* x, index_t nrhs, Op op, int threads) const = 0;
};

// Factorize the diagonal blocks of `pattern` (square, n x n) with `values` (pattern.nnz() values of
// `scalar`, CSR order). offsets: nblocks + 1 non-decreasing row offsets from 0 to n; every stored entry
// must lie in its row's block (InvalidArgument naming the first one that does not).
std::unique_ptr<BlockFactors> factorize_blocks(Backend backend, Method method, ScalarType scalar,
                                               const CsrPattern& pattern, const index_t* offsets, index_t nblocks,
                                               const void* values, const BlockOptions& options);

}  // namespace sla
