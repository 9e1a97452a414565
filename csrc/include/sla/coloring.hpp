// Column coloring of a sparsity pattern, for compressed Jacobian assembly.
//
// Two columns of a matrix are structurally orthogonal when no row holds an entry in both. A partition of the
// columns into groups of structurally orthogonal columns (a distance-2 coloring of the column vertices of the
// bipartite row/column graph, equivalently a distance-1 coloring of the column intersection graph) lets one
// recover every entry of J from one product J d per group, d the indicator vector of the group: row i of
// J d is J[i, j] for the one column j of the group that row i touches.
//
//   auto c = sla::color_columns(pattern, sla::ColoringOrder::Best);   // c.colors[j] in [0, c.n_colors)
//   index_t row, a, b;  sla::find_coloring_conflict(pattern, c.colors.data(), &row, &a, &b);  // false: valid
//
// The coloring is greedy (each column takes the smallest color no neighbor has), in one of three vertex
// orders: the natural one, largest-first (by degree in the column intersection graph) or smallest-last (the
// reverse of repeatedly removing a vertex of smallest remaining degree; it colors planar-like graphs with
// few colors). Best runs the three and keeps the coloring with the fewest colors. The intersection graph is
// never built: the neighbors of a column are enumerated through the rows it touches, so the cost is
// O(sum over rows of (row length)^2) time and O(nnz + n_rows + n_cols) memory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sla/pattern.hpp"
#include "sla/types.hpp"

namespace sla {

enum class ColoringOrder { Natural, LargestFirst, SmallestLast, Best };

// "natural", "largest_first", "smallest_last" or "best"; anything else throws InvalidArgument naming `what`.
ColoringOrder parse_coloring_order(const std::string& name, const std::string& what);

struct ColumnColoring {
  std::vector<std::int32_t> colors;  // one per column, in [0, n_colors)
  std::int32_t n_colors = 0;         // 0 for a pattern without columns; 1 when no two columns share a row
};

ColumnColoring color_columns(const CsrPattern& pattern, ColoringOrder order);

// Whether `colors` (one per column, non-negative) puts two columns that share a row in the same group; if
// so, the first such row and the two columns are written to *row, *col_a, *col_b.
bool find_coloring_conflict(const CsrPattern& pattern, const std::int32_t* colors, index_t* row, index_t* col_a,
                            index_t* col_b);

}  // namespace sla
