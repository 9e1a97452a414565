// Partitioning of the rows of a square sparse matrix (the vertices of its graph) into parts, for
// distributing a matrix over processes: each part becomes one process's block of rows.
//
//   std::vector<index_t> owner(n);
//   sla::partition_metis(n, crow, col, 4, nullptr, /*seed=*/0, owner.data());   // owner[i] in [0, 4)
//   sla::PartitionQuality q = sla::partition_quality(n, crow, col, owner.data(), 4);
//
// The graph of a pattern is the symmetrized adjacency graph of A + A^T: vertices are the rows, i and j
// (i != j) are joined when A stores (i, j) or (j, i); the diagonal and duplicates are dropped. The CSR
// pattern (crow: n + 1 entries, col: crow[n] entries, int32 or int64) need not have sorted or unique
// columns; crow must start at 0 and not decrease, and every column must lie in [0, n).
//
// Three partitioners, all returning part numbers in [0, num_parts) with no empty part (1 <= num_parts <= n
// is required; anything else throws InvalidArgument):
//   partition_metis        METIS k-way (multilevel, minimizing the edge cut). Only when the core is built
//                          with METIS (metis_available()); otherwise it throws Unavailable.
//   partition_coordinates  recursive coordinate bisection of points in `dim` dimensions: geometric, no graph.
//   partition_contiguous   consecutive blocks of rows, sizes differing by at most one.
#pragma once

#include <cstdint>
#include <vector>

#include "sla/types.hpp"

namespace sla {

// Whether partition_metis is compiled in (SLA_HAVE_METIS).
bool metis_available();

// METIS_PartGraphKway on the symmetrized graph of the pattern, minimizing the edge cut, with METIS's
// default balance tolerance (3% over the ideal part weight) and random seed `seed`. When the graph is
// connected, METIS is also asked for connected parts. `vertex_weights` (nullable: all 1) holds n positive
// weights that METIS balances instead of vertex counts. num_parts == 1 gives all zeros without METIS.
// METIS may leave a part empty (on tiny or edgeless graphs, or with very uneven weights); then, as long
// as a part is empty, one vertex of the largest part (one with the fewest neighbors in its part) is moved
// into it, so no part is ever empty. Throws InvalidArgument (bad sizes, indices, weights, or a graph
// beyond METIS's index type), Unavailable (no METIS), Internal (METIS reported an error).
template <class I>
void partition_metis(index_t n, const I* crow, const I* col, index_t num_parts, const index_t* vertex_weights,
                     std::uint64_t seed, index_t* owner);

// Recursive coordinate bisection of n points (coords: row-major n x dim, finite). A set of points to be
// split into k parts is cut along its widest extent (the first such axis on ties) at the position that
// puts floor(k / 2) parts' share of the points on the low side; ties in the coordinate are broken by the
// point's index. Every part ends up with floor(n / num_parts) or ceil(n / num_parts) points, for any
// num_parts (not only powers of two).
void partition_coordinates(index_t n, index_t dim, const double* coords, index_t num_parts, index_t* owner);

// Rows [offset(p), offset(p + 1)) to part p, the first n % num_parts parts one row larger than the rest.
void partition_contiguous(index_t n, index_t num_parts, index_t* owner);

struct PartitionQuality {
  index_t edge_cut = 0;             // edges {i, j} of the symmetrized graph with owner[i] != owner[j]
  std::vector<index_t> part_sizes;  // vertices per part (num_parts entries)
  double imbalance = 0.0;           // max(part_sizes) / (n / num_parts); 1 is a perfect balance
};

// The quality of `owner` (n part numbers in [0, num_parts)) for the graph of the pattern. Empty parts are
// allowed here (they count 0). Throws InvalidArgument for bad sizes, indices or part numbers.
template <class I>
PartitionQuality partition_quality(index_t n, const I* crow, const I* col, const index_t* owner, index_t num_parts);

}  // namespace sla
