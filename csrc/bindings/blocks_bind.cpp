// Bindings of the block-diagonal batches (sla/blocks.hpp): many matrices with distinct patterns per call.
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <cstddef>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "common.hpp"
#include "sla/blocks.hpp"

namespace sla::bind {
namespace {

const char* kind_name(ErrorKind k) {
  switch (k) {
    case ErrorKind::InvalidArgument: return "invalid_argument";
    case ErrorKind::SingularMatrix: return "singular";
    case ErrorKind::NotPositiveDefinite: return "not_positive_definite";
    case ErrorKind::Unavailable: return "unavailable";
    case ErrorKind::MatrixMarket: return "matrix_market";
    case ErrorKind::Internal: return "internal";
  }
  return "internal";
}

struct BlocksHandle {
  std::unique_ptr<BlockFactors> factors;
  ScalarType scalar;
};

BlocksHandle factorize_blocks_py(const std::string& backend, const std::string& method, const std::string& dtype,
                                 const CsrPattern& pattern, const Array& offsets, const Array& values, int threads,
                                 index_t dense_max, bool fallback_lu, bool auto_method, bool check_finite,
                                 BlockAnalysisCache* cache) {
  check_array(offsets, "offsets", 1);
  if (!is_int64(offsets)) fail(ErrorKind::InvalidArgument, "offsets: must be int64");
  if (offsets.shape(0) < 1) fail(ErrorKind::InvalidArgument, "offsets: need at least one entry (0)");
  const ScalarType s = parse_scalar(dtype);
  check_values(pattern, values, "values");
  if (scalar_of(values, "values") != s)
    fail(ErrorKind::InvalidArgument, "values: dtype does not match dtype '", dtype, "'");
  const Backend b = parse_backend(backend);
  const Method m = auto_method ? Method::LU : parse_method(method);
  const auto* off = static_cast<const index_t*>(offsets.data());
  const auto nblocks = static_cast<index_t>(offsets.shape(0)) - 1;
  const void* v = values.data();
  BlockOptions o;
  o.threads = threads;
  o.dense_max = dense_max;
  o.fallback_lu = fallback_lu;
  o.auto_method = auto_method;
  o.check_finite = check_finite;
  o.cache = cache;
  nb::gil_scoped_release release;  // once, for every block
  return BlocksHandle{factorize_blocks(b, m, s, pattern, off, nblocks, v, o), s};
}

// b and x: (nrhs, n) C-contiguous, each right-hand side of the whole block-diagonal system contiguous.
void solve_blocks_py(const BlocksHandle& h, const Array& b, OutArray& x, const std::string& op, int threads) {
  check_array(b, "b", 2);
  check_output(x, "x", 2);
  const index_t n = h.factors->n();
  if (static_cast<index_t>(b.shape(1)) != n)
    fail(ErrorKind::InvalidArgument, "b: expected ", n, " rows, got ", b.shape(1));
  if (b.shape(0) != x.shape(0) || b.shape(1) != x.shape(1))
    fail(ErrorKind::InvalidArgument, "x: output shape does not match b");
  if (scalar_of(b, "b") != h.scalar || scalar_of(x, "x") != h.scalar)
    fail(ErrorKind::InvalidArgument, "b: dtype must be ", scalar_name(h.scalar), " like the factorized matrices");
  const Op o = parse_op(op);
  const void* bp = b.data();
  void* xp = x.data();
  const auto nrhs = static_cast<index_t>(b.shape(0));
  nb::gil_scoped_release release;
  h.factors->solve(bp, xp, nrhs, o, threads);
}

}  // namespace

void bind_blocks(nb::module_& m) {
  nb::class_<BlocksHandle>(m, "BlockFactors",
                           "Factorizations of the diagonal blocks of a block-diagonal matrix (distinct patterns).")
      .def("solve", &solve_blocks_py, nb::arg("b"), nb::arg("x"), nb::arg("op") = "N", nb::arg("threads") = 0,
           "Solve op(A) X = B for the whole block-diagonal matrix, blocks in parallel; b and x are (nrhs, n) "
           "C-contiguous. The rows of a failed block are NaN.")
      .def_prop_ro("blocks", [](const BlocksHandle& h) { return h.factors->blocks(); })
      .def_prop_ro("n", [](const BlocksHandle& h) { return h.factors->n(); })
      .def_prop_ro("dense_blocks", [](const BlocksHandle& h) { return h.factors->dense_blocks(); })
      .def_prop_ro("sparse_blocks", [](const BlocksHandle& h) { return h.factors->sparse_blocks(); })
      .def_prop_ro("lu_fallbacks", [](const BlocksHandle& h) { return h.factors->lu_fallbacks(); })
      .def_prop_ro("cholesky_blocks", [](const BlocksHandle& h) { return h.factors->cholesky_blocks(); })
      .def_prop_ro(
          "analyses", [](const BlocksHandle& h) { return h.factors->analyses(); }, "Sparse analyses this call made.")
      .def_prop_ro(
          "analyses_reused", [](const BlocksHandle& h) { return h.factors->analyses_reused(); },
          "Sparse blocks whose analysis came from the cache or from another block with the same pattern.")
      .def_prop_ro(
          "errors",
          [](const BlocksHandle& h) {
            std::vector<std::tuple<index_t, std::string, std::string>> out;
            for (const auto& e : h.factors->errors()) out.emplace_back(e.block, kind_name(e.kind), e.message);
            return out;
          },
          "The blocks that failed: (block, kind, message), kind one of 'singular', 'not_positive_definite', ...");
  nb::class_<BlockAnalysisCache>(m, "BlockAnalysisCache",
                                 "Symbolic analyses of block patterns kept between calls of factorize_blocks (exact "
                                 "pattern keys, least recently used first out beyond limit_bytes).")
      .def(nb::init<std::size_t>(), nb::arg("limit_bytes"))
      .def("set_limit", &BlockAnalysisCache::set_limit, nb::arg("limit_bytes"))
      .def("clear", &BlockAnalysisCache::clear)
      .def(
          "stats",
          [](const BlockAnalysisCache& c) {
            const auto s = c.stats();
            return std::make_tuple(s.entries, s.bytes, s.limit_bytes, s.hits, s.misses);
          },
          "(entries, bytes, limit_bytes, hits, misses)");
  m.def("factorize_blocks", &factorize_blocks_py, nb::arg("backend"), nb::arg("method"), nb::arg("dtype"),
        nb::arg("pattern"), nb::arg("offsets"), nb::arg("values"), nb::arg("threads") = 0, nb::arg("dense_max") = 96,
        nb::arg("fallback_lu") = false, nb::arg("auto_method") = false, nb::arg("check_finite") = true,
        nb::arg("cache").none() = nullptr,
        "Factorize the diagonal blocks (rows/columns offsets[b]..offsets[b+1]) of a block-diagonal CsrPattern, "
        "small blocks densely, larger ones with `backend`, blocks in parallel, the GIL released once. Failed "
        "blocks are reported in .errors, not raised. auto_method: per block, Cholesky (LU if it breaks down) for a "
        "Hermitian block with a positive real diagonal, else LU (`method` is then ignored). cache: a "
        "BlockAnalysisCache for the sparse blocks' analyses (None: kept for this call only).");
}

}  // namespace sla::bind
