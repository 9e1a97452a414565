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
// The sparse analyses of the larger blocks are made once per distinct block pattern in a call (a batch
// that repeats one mesh analyses it once) and, given a BlockAnalysisCache, kept for later calls: a
// training loop that feeds the same meshes again skips the orderings and symbolic factorizations.
//
// A block that fails (singular, not positive definite, NaN) does not stop the others: its error is
// recorded (errors()) and its part of every solution is NaN, so that the caller decides whether the rest
// of the batch is used. Invalid input (offsets, an entry outside its block) throws InvalidArgument.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sla/direct.hpp"
#include "sla/pattern.hpp"
#include "sla/types.hpp"

namespace sla {

// Symbolic analyses of block patterns kept between calls of factorize_blocks, keyed by the exact pattern
// of the block (compared entry by entry, not by a hash alone), the backend, the method and the scalar
// type. Least recently used first out beyond `limit_bytes` (the analyses' memory_bytes() plus the key's
// copy of the pattern); limit 0 keeps nothing. Safe to use from several threads at once.
class BlockAnalysisCache {
 public:
  struct Stats {
    std::size_t entries = 0, bytes = 0, limit_bytes = 0, hits = 0, misses = 0;
  };
  explicit BlockAnalysisCache(std::size_t limit_bytes = std::size_t{1} << 30);
  ~BlockAnalysisCache();
  BlockAnalysisCache(const BlockAnalysisCache&) = delete;
  BlockAnalysisCache& operator=(const BlockAnalysisCache&) = delete;
  void set_limit(std::size_t limit_bytes);  // drops the least recently used entries beyond it
  void clear();
  Stats stats() const;

  // The cached analysis of the square CSR `pattern` (null: none; counted as a hit or a miss).
  std::shared_ptr<const Symbolic> find(Backend backend, Method method, ScalarType scalar,
                                       const CsrView<std::int64_t>& pattern) const;
  // Keep `sym`, the analysis of `pattern`; returns the analysis now cached for it (`sym`, or the one
  // another thread stored first).
  std::shared_ptr<const Symbolic> put(Backend backend, Method method, ScalarType scalar,
                                      const CsrView<std::int64_t>& pattern, std::shared_ptr<const Symbolic> sym);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct BlockOptions {
  int threads = 0;           // 0: OpenMP's default
  index_t dense_max = 96;    // blocks with at most this many rows are factorized densely
  bool fallback_lu = false;  // a block whose Cholesky breaks down (not positive definite) is redone by LU
  // Choose per block, ignoring `method`: Cholesky (with the LU fallback) for a Hermitian block with a
  // positive real diagonal (up to 100 units of roundoff of its largest entry), LU otherwise.
  bool auto_method = false;
  bool check_finite = true;  // a NaN or infinite value fails its block (InvalidArgument)
  // Where the analyses of the sparse blocks are looked up and kept between calls (null: none kept; the
  // blocks of one call that share a pattern still share one analysis). Not owned; used during the call.
  BlockAnalysisCache* cache = nullptr;
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
  // Sparse analyses made by this call, and sparse blocks that took theirs from the cache or from another
  // block of the call with the same pattern (an LU fallback counts once more).
  virtual index_t analyses() const = 0;
  virtual index_t analyses_reused() const = 0;
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
