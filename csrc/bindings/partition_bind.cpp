// Bindings of the graph partitioners (sla/partition.hpp): METIS k-way, coordinate bisection, contiguous.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "common.hpp"
#include "sla/partition.hpp"

namespace sla::bind {
namespace {

// crow (n + 1) and col (crow[n]) of one square pattern: 1-D, on the CPU, both int32 or both int64. Checked
// before anything reads them; returns whether they are int32.
bool check_graph(index_t n, const Array& crow, const Array& col) {
  check_array(crow, "crow_indices", 1);
  check_array(col, "col_indices", 1);
  const bool i32 = is_int32(crow) && is_int32(col);
  if (!i32 && !(is_int64(crow) && is_int64(col)))
    fail(ErrorKind::InvalidArgument, "crow_indices, col_indices: must both be int32 or both int64");
  if (n < 0) fail(ErrorKind::InvalidArgument, "n: must be non-negative, got ", n);
  if (static_cast<index_t>(crow.shape(0)) != n + 1)
    fail(ErrorKind::InvalidArgument, "crow_indices: expected n + 1 = ", n + 1, " entries, got ", crow.shape(0));
  const index_t nnz =
      i32 ? static_cast<const std::int32_t*>(crow.data())[n] : static_cast<const std::int64_t*>(crow.data())[n];
  if (static_cast<index_t>(col.shape(0)) != nnz)
    fail(ErrorKind::InvalidArgument, "col_indices: expected crow_indices[n] = ", nnz, " entries, got ", col.shape(0));
  return i32;
}

// A 1-D int64 array of n entries, read (`Array`) or written (`OutArray`, C-contiguous).
template <class A>
void check_int64_vector(const A& a, const char* what, index_t n) {
  if constexpr (std::is_same_v<A, OutArray>)
    check_output(a, what, 1);
  else
    check_array(a, what, 1);
  if (a.dtype() != nb::dtype<std::int64_t>()) fail(ErrorKind::InvalidArgument, what, ": dtype must be int64");
  if (static_cast<index_t>(a.shape(0)) != n)
    fail(ErrorKind::InvalidArgument, what, ": expected ", n, " entries (one per vertex), got ", a.shape(0));
}

void metis_py(index_t n, const Array& crow, const Array& col, index_t num_parts,
              const std::optional<Array>& vertex_weights, std::uint64_t seed, OutArray& owner) {
  const bool i32 = check_graph(n, crow, col);
  check_int64_vector(owner, "owner", n);
  const index_t* w = nullptr;
  if (vertex_weights) {
    check_int64_vector(*vertex_weights, "vertex_weights", n);
    w = static_cast<const index_t*>(vertex_weights->data());
  }
  auto* out = static_cast<index_t*>(owner.data());
  const void* rp = crow.data();
  const void* ci = col.data();
  nb::gil_scoped_release release;
  if (i32)
    partition_metis(n, static_cast<const std::int32_t*>(rp), static_cast<const std::int32_t*>(ci), num_parts, w, seed,
                    out);
  else
    partition_metis(n, static_cast<const std::int64_t*>(rp), static_cast<const std::int64_t*>(ci), num_parts, w, seed,
                    out);
}

void coordinates_py(const Array& coords, index_t num_parts, OutArray& owner) {
  check_array(coords, "coords", 2);
  if (coords.dtype() != nb::dtype<double>()) fail(ErrorKind::InvalidArgument, "coords: dtype must be float64");
  const auto n = static_cast<index_t>(coords.shape(0)), dim = static_cast<index_t>(coords.shape(1));
  check_int64_vector(owner, "owner", n);
  const auto* x = static_cast<const double*>(coords.data());
  auto* out = static_cast<index_t*>(owner.data());
  nb::gil_scoped_release release;
  partition_coordinates(n, dim, x, num_parts, out);
}

void contiguous_py(index_t n, index_t num_parts, OutArray& owner) {
  if (n < 0) fail(ErrorKind::InvalidArgument, "n: must be non-negative, got ", n);
  check_int64_vector(owner, "owner", n);
  auto* out = static_cast<index_t*>(owner.data());
  nb::gil_scoped_release release;
  partition_contiguous(n, num_parts, out);
}

std::tuple<index_t, std::vector<index_t>, double> quality_py(index_t n, const Array& crow, const Array& col,
                                                             const Array& owner, index_t num_parts) {
  const bool i32 = check_graph(n, crow, col);
  check_int64_vector(owner, "owner", n);
  const auto* o = static_cast<const index_t*>(owner.data());
  const void* rp = crow.data();
  const void* ci = col.data();
  PartitionQuality q;
  {
    nb::gil_scoped_release release;
    if (i32)
      q = partition_quality(n, static_cast<const std::int32_t*>(rp), static_cast<const std::int32_t*>(ci), o,
                            num_parts);
    else
      q = partition_quality(n, static_cast<const std::int64_t*>(rp), static_cast<const std::int64_t*>(ci), o,
                            num_parts);
  }
  return {q.edge_cut, std::move(q.part_sizes), q.imbalance};
}

}  // namespace

void bind_partition(nb::module_& m) {
  m.def("metis_available", &metis_available, "Whether METIS is compiled into this build (partition_metis).");
  m.def("partition_metis", &metis_py, nb::arg("n"), nb::arg("crow_indices"), nb::arg("col_indices"),
        nb::arg("num_parts"), nb::arg("vertex_weights").none(), nb::arg("seed"), nb::arg("owner"),
        "METIS k-way partition (minimum edge cut) of the symmetrized graph of the square CSR pattern "
        "(crow_indices, col_indices: both int32 or both int64) into num_parts parts, written into the int64 "
        "array `owner` (n); no part is left empty. vertex_weights: None or n positive int64 weights. "
        "Raises BackendUnavailableError when METIS is not compiled in.");
  m.def("partition_coordinates", &coordinates_py, nb::arg("coords"), nb::arg("num_parts"), nb::arg("owner"),
        "Recursive coordinate bisection of the points `coords` (float64, n x dim) into num_parts parts of "
        "floor or ceil(n / num_parts) points, written into the int64 array `owner` (n).");
  m.def("partition_contiguous", &contiguous_py, nb::arg("n"), nb::arg("num_parts"), nb::arg("owner"),
        "Contiguous blocks of rows, sizes differing by at most one, written into the int64 array `owner` (n).");
  m.def("partition_quality", &quality_py, nb::arg("n"), nb::arg("crow_indices"), nb::arg("col_indices"),
        nb::arg("owner"), nb::arg("num_parts"),
        "(edge_cut, part_sizes, imbalance) of the partition `owner` (int64, n) of the symmetrized graph of the "
        "pattern: undirected off-diagonal edges between parts, vertices per part, max part size / (n / "
        "num_parts).");
}

}  // namespace sla::bind
