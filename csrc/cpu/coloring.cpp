// Greedy distance-2 column coloring (see sla/coloring.hpp).
#include "sla/coloring.hpp"

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "sla/errors.hpp"
#include "sla/interrupt.hpp"

namespace sla {
namespace {

// The pattern with its transpose: the rows of each column (CSC) next to the columns of each row (CSR), so
// that the neighbors of column j are the columns of the rows of column j.
template <class I>
struct Bipartite {
  CsrView<I> csr;
  std::vector<index_t> col_ptr, col_rows;

  explicit Bipartite(const CsrView<I>& v) : csr(v), col_ptr(static_cast<size_t>(v.n_cols) + 1, 0) {
    const index_t nnz = v.nnz();
    col_rows.resize(static_cast<size_t>(nnz));
    for (index_t k = 0; k < nnz; ++k) ++col_ptr[static_cast<size_t>(v.indices[k]) + 1];
    for (index_t j = 0; j < v.n_cols; ++j) col_ptr[j + 1] += col_ptr[j];
    std::vector<index_t> next(col_ptr.begin(), col_ptr.end() - 1);
    for (index_t r = 0; r < v.n_rows; ++r)
      for (I k = v.indptr[r]; k < v.indptr[r + 1]; ++k) col_rows[next[v.indices[k]]++] = r;
  }

  // Call f(k) for every column k != j sharing a row with column j (a column may come more than once).
  template <class F>
  void for_each_neighbor(index_t j, F&& f) const {
    for (index_t p = col_ptr[j]; p < col_ptr[j + 1]; ++p) {
      const index_t r = col_rows[p];
      for (I k = csr.indptr[r]; k < csr.indptr[r + 1]; ++k)
        if (static_cast<index_t>(csr.indices[k]) != j) f(static_cast<index_t>(csr.indices[k]));
    }
  }

  // Distinct neighbors of every column (stamp array: one pass per column).
  std::vector<index_t> degrees() const {
    const index_t n = csr.n_cols;
    std::vector<index_t> deg(static_cast<size_t>(n), 0), stamp(static_cast<size_t>(n), -1);
    for (index_t j = 0; j < n; ++j) {
      if ((j & 4095) == 0) poll_interrupt();
      stamp[j] = j;
      for_each_neighbor(j, [&](index_t k) {
        if (stamp[k] != j) stamp[k] = j, ++deg[j];
      });
    }
    return deg;
  }
};

template <class I>
std::vector<index_t> largest_first(const Bipartite<I>& g) {
  const std::vector<index_t> deg = g.degrees();
  std::vector<index_t> order(deg.size());
  std::iota(order.begin(), order.end(), index_t{0});
  std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) { return deg[a] > deg[b]; });
  return order;
}

// Smallest-last: remove a vertex of smallest current degree (a lazy min-heap: stale entries are skipped),
// lower its remaining neighbors' degrees, and color in the reverse order of removal.
template <class I>
std::vector<index_t> smallest_last(const Bipartite<I>& g) {
  const index_t n = g.csr.n_cols;
  std::vector<index_t> deg = g.degrees(), stamp(static_cast<size_t>(n), -1), order;
  std::vector<char> removed(static_cast<size_t>(n), 0);
  using Entry = std::pair<index_t, index_t>;  // (degree, column)
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  for (index_t j = 0; j < n; ++j) heap.emplace(deg[j], j);
  order.reserve(static_cast<size_t>(n));
  while (!heap.empty()) {
    const auto [d, j] = heap.top();
    heap.pop();
    if (removed[j] || d != deg[j]) continue;
    if ((order.size() & 4095) == 0) poll_interrupt();
    removed[j] = 1;
    order.push_back(j);
    stamp[j] = j;
    g.for_each_neighbor(j, [&](index_t k) {
      if (stamp[k] == j || removed[k]) return;
      stamp[k] = j;
      heap.emplace(--deg[k], k);
    });
  }
  std::reverse(order.begin(), order.end());
  return order;
}

template <class I>
ColumnColoring greedy(const Bipartite<I>& g, const std::vector<index_t>& order) {
  const index_t n = g.csr.n_cols;
  ColumnColoring out;
  out.colors.assign(static_cast<size_t>(n), -1);
  std::vector<index_t> forbidden;  // forbidden[c] == j: a neighbor of column j has color c
  for (size_t t = 0; t < order.size(); ++t) {
    if ((t & 4095) == 0) poll_interrupt();
    const index_t j = order[t];
    g.for_each_neighbor(j, [&](index_t k) {
      const std::int32_t c = out.colors[k];
      if (c >= 0) forbidden[c] = j;
    });
    std::int32_t c = 0;
    while (c < static_cast<std::int32_t>(forbidden.size()) && forbidden[c] == j) ++c;
    if (c == static_cast<std::int32_t>(forbidden.size())) forbidden.push_back(-1);
    out.colors[j] = c;
    out.n_colors = std::max(out.n_colors, c + 1);
  }
  return out;
}

template <class I>
ColumnColoring color(const CsrView<I>& v, ColoringOrder order) {
  const Bipartite<I> g(v);
  auto run = [&](ColoringOrder o) {
    if (o == ColoringOrder::LargestFirst) return greedy(g, largest_first(g));
    if (o == ColoringOrder::SmallestLast) return greedy(g, smallest_last(g));
    std::vector<index_t> natural(static_cast<size_t>(v.n_cols));
    std::iota(natural.begin(), natural.end(), index_t{0});
    return greedy(g, natural);
  };
  if (order != ColoringOrder::Best) return run(order);
  ColumnColoring best = run(ColoringOrder::SmallestLast);
  for (ColoringOrder o : {ColoringOrder::LargestFirst, ColoringOrder::Natural}) {
    ColumnColoring c = run(o);
    if (c.n_colors < best.n_colors) best = std::move(c);
  }
  return best;
}

template <class I>
bool conflict(const CsrView<I>& v, const std::int32_t* colors, index_t* row, index_t* col_a, index_t* col_b) {
  std::int32_t n_colors = 0;
  for (index_t j = 0; j < v.n_cols; ++j) {
    if (colors[j] < 0) fail(ErrorKind::InvalidArgument, "colors: entry ", j, " is negative (", colors[j], ")");
    n_colors = std::max(n_colors, colors[j] + 1);
  }
  std::vector<index_t> seen_row(static_cast<size_t>(n_colors), -1), seen_col(static_cast<size_t>(n_colors), -1);
  for (index_t r = 0; r < v.n_rows; ++r) {
    for (I k = v.indptr[r]; k < v.indptr[r + 1]; ++k) {
      const index_t j = static_cast<index_t>(v.indices[k]);
      const std::int32_t c = colors[j];
      if (seen_row[c] == r) {
        *row = r, *col_a = seen_col[c], *col_b = j;
        return true;
      }
      seen_row[c] = r, seen_col[c] = j;
    }
  }
  return false;
}

}  // namespace

ColoringOrder parse_coloring_order(const std::string& name, const std::string& what) {
  if (name == "natural") return ColoringOrder::Natural;
  if (name == "largest_first") return ColoringOrder::LargestFirst;
  if (name == "smallest_last") return ColoringOrder::SmallestLast;
  if (name == "best") return ColoringOrder::Best;
  fail(ErrorKind::InvalidArgument, what, ": expected 'natural', 'largest_first', 'smallest_last' or 'best', got '",
       name, "'");
}

ColumnColoring color_columns(const CsrPattern& pattern, ColoringOrder order) {
  if (pattern.index32()) return color(pattern.view<std::int32_t>(), order);
  return color(pattern.view<std::int64_t>(), order);
}

bool find_coloring_conflict(const CsrPattern& pattern, const std::int32_t* colors, index_t* row, index_t* col_a,
                            index_t* col_b) {
  if (pattern.index32()) return conflict(pattern.view<std::int32_t>(), colors, row, col_a, col_b);
  return conflict(pattern.view<std::int64_t>(), colors, row, col_a, col_b);
}

}  // namespace sla
