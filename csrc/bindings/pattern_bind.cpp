// Binding of CsrPattern: a CSR pattern validated once, whose index arrays the core owns.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include <algorithm>
#include <cstdint>
#include <new>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "common.hpp"
#include "sla/coloring.hpp"
#include "sla/pattern.hpp"

namespace sla::bind {
namespace {

template <class I>
CsrPattern copy_pattern(index_t n_rows, index_t n_cols, const Array& crow, const Array& col) {
  CsrView<I> view{n_rows, n_cols, static_cast<const I*>(crow.data()), static_cast<const I*>(col.data())};
  const auto indptr_len = static_cast<index_t>(crow.shape(0)), indices_len = static_cast<index_t>(col.shape(0));
  nb::gil_scoped_release release;  // O(nnz): validation and copy
  return CsrPattern::copy_of(view, indptr_len, indices_len, "A");
}

// The transpose of a valid CSR pattern by a counting sort, O(nnz + n_cols): t_crow (n_cols + 1), t_col
// (nnz) and perm (nnz) with values_T = values[perm]. Entries of a row of the transpose keep increasing
// column order because the input rows are visited in order.
void transpose_py(index_t n_rows, index_t n_cols, const Array& crow, const Array& col, OutArray& t_crow,
                  OutArray& t_col, OutArray& perm) {
  check_array(crow, "crow_indices", 1);
  check_array(col, "col_indices", 1);
  check_output(t_crow, "t_crow", 1);
  check_output(t_col, "t_col", 1);
  check_output(perm, "perm", 1);
  if (!is_int64(crow) || !is_int64(col)) fail(ErrorKind::InvalidArgument, "crow_indices, col_indices: must be int64");
  for (const OutArray* a : {&t_crow, &t_col, &perm})
    if (a->dtype() != nb::dtype<std::int64_t>()) fail(ErrorKind::InvalidArgument, "outputs: must be int64");
  if (n_rows < 0 || n_cols < 0 || static_cast<index_t>(crow.shape(0)) != n_rows + 1)
    fail(ErrorKind::InvalidArgument, "crow_indices: expected n_rows + 1 = ", n_rows + 1, " entries");
  const auto nnz = static_cast<index_t>(col.shape(0));
  if (static_cast<index_t>(t_crow.shape(0)) != n_cols + 1 || static_cast<index_t>(t_col.shape(0)) != nnz ||
      static_cast<index_t>(perm.shape(0)) != nnz)
    fail(ErrorKind::InvalidArgument, "outputs: expected n_cols + 1, nnz and nnz entries");
  const auto* rp = static_cast<const std::int64_t*>(crow.data());
  const auto* ci = static_cast<const std::int64_t*>(col.data());
  auto* tp = static_cast<std::int64_t*>(t_crow.data());
  auto* tc = static_cast<std::int64_t*>(t_col.data());
  auto* pm = static_cast<std::int64_t*>(perm.data());
  {
    nb::gil_scoped_release release;
    CsrView<std::int64_t> view{n_rows, n_cols, rp, ci};
    validate_csr(view, n_rows + 1, nnz, "A");
    std::fill(tp, tp + n_cols + 1, 0);
    for (index_t e = 0; e < nnz; ++e) ++tp[ci[e] + 1];
    for (index_t c = 0; c < n_cols; ++c) tp[c + 1] += tp[c];
    std::vector<std::int64_t> next(tp, tp + n_cols);
    for (index_t r = 0; r < n_rows; ++r)
      for (index_t e = rp[r]; e < rp[r + 1]; ++e) {
        const index_t dst = next[static_cast<std::size_t>(ci[e])]++;
        tc[dst] = r;
        pm[dst] = e;
      }
  }
}

}  // namespace

CsrPattern make_pattern(index_t n_rows, index_t n_cols, const Array& crow, const Array& col) {
  check_array(crow, "crow_indices", 1);
  check_array(col, "col_indices", 1);
  if (crow.shape(0) < 1) fail(ErrorKind::InvalidArgument, "crow_indices: empty, expected n_rows + 1 entries");
  if (is_int64(crow) && is_int64(col)) return copy_pattern<std::int64_t>(n_rows, n_cols, crow, col);
  if (is_int32(crow) && is_int32(col)) return copy_pattern<std::int32_t>(n_rows, n_cols, crow, col);
  fail(ErrorKind::InvalidArgument, "crow_indices, col_indices: must both be int32 or both int64");
}

void check_values(const CsrPattern& p, const Array& values, const char* what) {
  check_array(values, what, 1);
  if (static_cast<index_t>(values.shape(0)) != p.nnz())
    fail(ErrorKind::InvalidArgument, what, ": expected ", p.nnz(), " entries (the pattern's nnz), got ",
         values.shape(0));
  scalar_of(values, what);
}

// Colors of a column coloring, as an int32 array of n_cols entries (checked).
const std::int32_t* colors_of(const CsrPattern& p, const Array& colors, const char* what) {
  check_array(colors, what, 1);
  if (colors.dtype() != nb::dtype<std::int32_t>()) fail(ErrorKind::InvalidArgument, what, ": dtype must be int32");
  if (static_cast<index_t>(colors.shape(0)) != p.n_cols())
    fail(ErrorKind::InvalidArgument, what, ": expected ", p.n_cols(), " entries (one per column), got ",
         colors.shape(0));
  return static_cast<const std::int32_t*>(colors.data());
}

void bind_coloring(nb::module_& m) {
  m.def(
      "color_columns",
      [](const CsrPattern& p, const std::string& order, OutArray& colors) {
        check_output(colors, "colors", 1);
        if (colors.dtype() != nb::dtype<std::int32_t>())
          fail(ErrorKind::InvalidArgument, "colors: dtype must be int32");
        if (static_cast<index_t>(colors.shape(0)) != p.n_cols())
          fail(ErrorKind::InvalidArgument, "colors: expected ", p.n_cols(), " entries (one per column), got ",
               colors.shape(0));
        const ColoringOrder o = parse_coloring_order(order, "order");
        ColumnColoring c;
        {
          nb::gil_scoped_release release;
          c = color_columns(p, o);
        }
        std::copy(c.colors.begin(), c.colors.end(), static_cast<std::int32_t*>(colors.data()));
        return c.n_colors;
      },
      nb::arg("pattern"), nb::arg("order"), nb::arg("colors"),
      "Greedy distance-2 coloring of the columns of `pattern` (no two columns sharing a row get one color), "
      "written into the int32 array `colors` (n_cols); returns the number of colors. `order`: 'natural', "
      "'largest_first', 'smallest_last' or 'best' (the fewest colors of the three).");
  m.def(
      "coloring_conflict",
      [](const CsrPattern& p, const Array& colors) -> std::optional<std::tuple<index_t, index_t, index_t>> {
        const std::int32_t* c = colors_of(p, colors, "colors");
        index_t row = 0, a = 0, b = 0;
        if (!find_coloring_conflict(p, c, &row, &a, &b)) return std::nullopt;
        return std::make_tuple(row, a, b);
      },
      nb::arg("pattern"), nb::arg("colors"),
      "None when no two columns of one color share a row of `pattern`, else (row, column, column).");
}

void bind_pattern(nb::module_& m) {
  m.def("csr_transpose", &transpose_py, nb::arg("n_rows"), nb::arg("n_cols"), nb::arg("crow_indices"),
        nb::arg("col_indices"), nb::arg("t_crow"), nb::arg("t_col"), nb::arg("perm"),
        "Transpose a CSR pattern (int64) into t_crow, t_col and perm (values_T = values[perm]) by a counting "
        "sort, O(nnz + n_cols); the pattern is validated first.");
  m.def(
      "csr_from_ordered_coo",
      [](const Array& row, const Array& col, index_t n_rows, index_t n_cols, OutArray& crow,
         int threads) -> std::optional<CsrPattern> {
        check_array(row, "row_indices", 1);
        check_array(col, "col_indices", 1);
        check_output(crow, "crow", 1);
        if (crow.dtype() != nb::dtype<std::int64_t>() || static_cast<index_t>(crow.shape(0)) != n_rows + 1)
          fail(ErrorKind::InvalidArgument, "crow: expected ", n_rows + 1, " int64 entries");
        const auto nnz = static_cast<index_t>(row.shape(0));
        if (static_cast<index_t>(col.shape(0)) != nnz)
          fail(ErrorKind::InvalidArgument, "col_indices: has ", col.shape(0), " entries but row_indices has ", nnz);
        auto* cp = static_cast<std::int64_t*>(crow.data());
        if (is_int64(row) && is_int64(col)) {
          const auto* r = static_cast<const std::int64_t*>(row.data());
          const auto* c = static_cast<const std::int64_t*>(col.data());
          nb::gil_scoped_release release;
          return CsrPattern::from_ordered_coo(r, c, nnz, n_rows, n_cols, cp, "row_indices", "col_indices", threads);
        }
        if (is_int32(row) && is_int32(col)) {
          const auto* r = static_cast<const std::int32_t*>(row.data());
          const auto* c = static_cast<const std::int32_t*>(col.data());
          nb::gil_scoped_release release;
          return CsrPattern::from_ordered_coo(r, c, nnz, n_rows, n_cols, cp, "row_indices", "col_indices", threads);
        }
        fail(ErrorKind::InvalidArgument, "row_indices, col_indices: must both be int32 or both int64");
      },
      nb::arg("row"), nb::arg("col"), nb::arg("n_rows"), nb::arg("n_cols"), nb::arg("crow"), nb::arg("threads") = 1,
      "The CsrPattern of COO indices already in CSR order (each entry strictly after the previous one in "
      "row-major order), with its row pointers written to crow (int64, n_rows + 1), in one pass; None when "
      "an entry is out of that order. An index out of range raises.");
  nb::class_<CsrPattern>(m, "CsrPattern",
                         "A CSR sparsity pattern validated once; the core keeps its own copy of the indices "
                         "(int32 when they fit, else int64). Entry points that take it skip the O(nnz) "
                         "pattern validation.")
      .def(
          "__init__",
          [](CsrPattern* self, index_t n_rows, index_t n_cols, const Array& crow, const Array& col) {
            new (self) CsrPattern(make_pattern(n_rows, n_cols, crow, col));
          },
          nb::arg("n_rows"), nb::arg("n_cols"), nb::arg("crow_indices"), nb::arg("col_indices"))
      .def_prop_ro("n_rows", &CsrPattern::n_rows)
      .def_prop_ro("n_cols", &CsrPattern::n_cols)
      .def_prop_ro("nnz", &CsrPattern::nnz)
      .def_prop_ro("index_bits", &CsrPattern::index_bits, "32 or 64: the type of the indices the core keeps.")
      .def_prop_ro("memory_bytes", &CsrPattern::memory_bytes, "Bytes the pattern holds (indices included).")
      .def_prop_ro(
          "device", [](const CsrPattern& p) { return p.device().str(); }, "Where the indices live: 'cpu'.")
      .def("__repr__", [](const CsrPattern& p) {
        return "CsrPattern(n_rows=" + std::to_string(p.n_rows()) + ", n_cols=" + std::to_string(p.n_cols()) +
               ", nnz=" + std::to_string(p.nnz()) + ", index_bits=" + std::to_string(p.index_bits()) + ")";
      });
  bind_coloring(m);
}

}  // namespace sla::bind
