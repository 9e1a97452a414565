// Graph partitioning: METIS k-way, recursive coordinate bisection, contiguous blocks (see sla/partition.hpp).
#include "sla/partition.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "sla/errors.hpp"
#include "sla/interrupt.hpp"

#ifdef SLA_HAVE_METIS
#include <metis.h>
#endif

namespace sla {
namespace {

void check_parts(index_t n, index_t num_parts) {
  if (n < 1) fail(ErrorKind::InvalidArgument, "n: the graph has no vertex (n = ", n, "); nothing to partition");
  if (num_parts < 1) fail(ErrorKind::InvalidArgument, "num_parts: must be at least 1, got ", num_parts);
  if (num_parts > n)
    fail(ErrorKind::InvalidArgument, "num_parts: ", num_parts, " parts of ", n,
         " vertices would leave a part empty; use at most n parts");
}

// crow (n + 1 entries) starts at 0 and does not decrease; every column lies in [0, n). Columns need not be
// sorted or unique: the graph is symmetrized and deduplicated anyway.
template <class I>
void check_pattern(index_t n, const I* crow, const I* col) {
  if (crow == nullptr || (col == nullptr && n > 0 && crow[n] > 0))
    fail(ErrorKind::InvalidArgument, "A: null index array");
  if (crow[0] != 0) fail(ErrorKind::InvalidArgument, "A: crow_indices[0] must be 0, got ", crow[0]);
  for (index_t i = 0; i < n; ++i)
    if (crow[i + 1] < crow[i])
      fail(ErrorKind::InvalidArgument, "A: crow_indices decreases at row ", i, " (", crow[i], " then ", crow[i + 1],
           ")");
  const index_t nnz = static_cast<index_t>(crow[n]);
  for (index_t k = 0; k < nnz; ++k)
    if (col[k] < 0 || static_cast<index_t>(col[k]) >= n)
      fail(ErrorKind::InvalidArgument, "A: column index ", col[k], " at entry ", k, " is out of range [0, ", n, ")");
}

// The symmetrized adjacency graph of a pattern: for each vertex its neighbors, sorted, unique, without itself.
struct Graph {
  std::vector<index_t> xadj, adj;
  index_t degree(index_t i) const { return xadj[i + 1] - xadj[i]; }
};

template <class I>
Graph symmetrize(index_t n, const I* crow, const I* col) {
  std::vector<index_t> count(static_cast<size_t>(n) + 1, 0);
  for (index_t i = 0; i < n; ++i)
    for (I k = crow[i]; k < crow[i + 1]; ++k) {
      const index_t j = static_cast<index_t>(col[k]);
      if (j != i) ++count[i + 1], ++count[j + 1];
    }
  for (index_t i = 0; i < n; ++i) count[i + 1] += count[i];
  std::vector<index_t> both(static_cast<size_t>(count[n])), next(count.begin(), count.end() - 1);
  for (index_t i = 0; i < n; ++i)
    for (I k = crow[i]; k < crow[i + 1]; ++k) {
      const index_t j = static_cast<index_t>(col[k]);
      if (j != i) both[next[i]++] = j, both[next[j]++] = i;
    }
  Graph g;
  g.xadj.assign(static_cast<size_t>(n) + 1, 0);
  g.adj.reserve(both.size());
  for (index_t i = 0; i < n; ++i) {
    if ((i & 16383) == 0) poll_interrupt();
    auto* b = both.data() + count[i];
    auto* e = both.data() + count[i + 1];
    std::sort(b, e);
    g.adj.insert(g.adj.end(), b, std::unique(b, e));
    g.xadj[i + 1] = static_cast<index_t>(g.adj.size());
  }
  return g;
}

#ifdef SLA_HAVE_METIS
bool is_connected(const Graph& g, index_t n) {
  std::vector<char> seen(static_cast<size_t>(n), 0);
  std::vector<index_t> stack{0};
  seen[0] = 1;
  index_t reached = 1;
  while (!stack.empty()) {
    const index_t v = stack.back();
    stack.pop_back();
    for (index_t k = g.xadj[v]; k < g.xadj[v + 1]; ++k)
      if (!seen[g.adj[k]]) seen[g.adj[k]] = 1, ++reached, stack.push_back(g.adj[k]);
  }
  return reached == n;
}

const char* metis_status(int status) {
  switch (status) {
    case METIS_ERROR_INPUT: return "METIS_ERROR_INPUT (erroneous input or options)";
    case METIS_ERROR_MEMORY: return "METIS_ERROR_MEMORY (out of memory)";
    default: return "METIS_ERROR";
  }
}

// idx_t is METIS's index type: 32 or 64 bits, as its build chose (IDXTYPEWIDTH).
constexpr index_t kIdxMax = static_cast<index_t>(std::numeric_limits<idx_t>::max());

void run_metis(const Graph& g, index_t n, index_t num_parts, const index_t* vertex_weights, std::uint64_t seed,
               index_t* owner) {
  const auto n_adj = static_cast<index_t>(g.adj.size());
  if (n > kIdxMax || n_adj > kIdxMax)
    fail(ErrorKind::InvalidArgument, "A: the graph (", n, " vertices, ", n_adj / 2,
         " edges) exceeds the index range of this METIS build (", IDXTYPEWIDTH, "-bit idx_t)");
  std::vector<idx_t> xadj(g.xadj.begin(), g.xadj.end()), adjncy(g.adj.begin(), g.adj.end());
  std::vector<idx_t> vwgt;
  if (vertex_weights != nullptr) vwgt.assign(vertex_weights, vertex_weights + n);
  idx_t nvtxs = static_cast<idx_t>(n), ncon = 1, nparts = static_cast<idx_t>(num_parts), objval = 0;
  std::vector<idx_t> part(static_cast<size_t>(n), 0);
  idx_t options[METIS_NOPTIONS];
  METIS_SetDefaultOptions(options);
  options[METIS_OPTION_OBJTYPE] = METIS_OBJTYPE_CUT;
  options[METIS_OPTION_NUMBERING] = 0;
  options[METIS_OPTION_SEED] = static_cast<idx_t>(seed % 2147483647u);
  // Connected parts keep the halo of each part small; METIS refuses the option for a disconnected graph.
  options[METIS_OPTION_CONTIG] = is_connected(g, n) ? 1 : 0;
  poll_interrupt();
  const int status =
      METIS_PartGraphKway(&nvtxs, &ncon, xadj.data(), adjncy.data(), vwgt.empty() ? nullptr : vwgt.data(), nullptr,
                          nullptr, &nparts, nullptr, nullptr, options, &objval, part.data());
  if (status != METIS_OK)
    fail(ErrorKind::Internal, "METIS_PartGraphKway failed with ", metis_status(status), " on a graph of ", n,
         " vertices and ", n_adj / 2, " edges into ", num_parts, " parts");
  for (index_t i = 0; i < n; ++i) {
    if (part[i] < 0 || part[i] >= nparts)
      fail(ErrorKind::Internal, "METIS_PartGraphKway returned part ", part[i], " for vertex ", i, ", outside [0, ",
           num_parts, ")");
    owner[i] = part[i];
  }
}

// While a part is empty, move into it the vertex of the largest part with the fewest neighbors in that part
// (the smallest increase of the edge cut; the first such vertex on ties). With n >= num_parts the largest
// part has two vertices or more whenever a part is empty, so it never empties itself.
void fill_empty_parts(const Graph& g, index_t n, index_t num_parts, index_t* owner) {
  std::vector<index_t> size(static_cast<size_t>(num_parts), 0);
  for (index_t i = 0; i < n; ++i) ++size[owner[i]];
  for (index_t empty = 0; empty < num_parts; ++empty) {
    if (size[empty] != 0) continue;
    const index_t largest = static_cast<index_t>(std::max_element(size.begin(), size.end()) - size.begin());
    index_t best = -1, best_inside = std::numeric_limits<index_t>::max();
    for (index_t i = 0; i < n; ++i) {
      if (owner[i] != largest) continue;
      index_t inside = 0;
      for (index_t k = g.xadj[i]; k < g.xadj[i + 1]; ++k) inside += owner[g.adj[k]] == largest;
      if (inside < best_inside) best = i, best_inside = inside;
    }
    owner[best] = empty;
    --size[largest], ++size[empty];
  }
}
#endif

// Recursive coordinate bisection of the points idx[begin, end) into k parts numbered from `first`.
struct Bisection {
  index_t dim;
  const double* coords;
  index_t* owner;
  std::vector<index_t> idx;

  double x(index_t point, index_t axis) const { return coords[point * dim + axis]; }

  void split(index_t begin, index_t end, index_t k, index_t first) {
    poll_interrupt();
    if (k == 1) {
      for (index_t t = begin; t < end; ++t) owner[idx[t]] = first;
      return;
    }
    index_t axis = 0;
    double widest = -1.0;
    for (index_t a = 0; a < dim; ++a) {
      double lo = x(idx[begin], a), hi = lo;
      for (index_t t = begin + 1; t < end; ++t) lo = std::min(lo, x(idx[t], a)), hi = std::max(hi, x(idx[t], a));
      if (hi - lo > widest) widest = hi - lo, axis = a;
    }
    // m = q k + r points: the low side's k1 parts get q points each and one more for each of the first r,
    // so every final part gets q or q + 1 (the extra points go to the lowest-numbered parts).
    const index_t m = end - begin, k1 = k / 2, q = m / k, r = m % k;
    const index_t m1 = q * k1 + std::min(r, k1);
    auto less = [&](index_t a, index_t b) {
      const double xa = x(a, axis), xb = x(b, axis);
      return xa < xb || (xa == xb && a < b);
    };
    std::nth_element(idx.begin() + begin, idx.begin() + begin + m1, idx.begin() + end, less);
    split(begin, begin + m1, k1, first);
    split(begin + m1, end, k - k1, first + k1);
  }
};

}  // namespace

bool metis_available() {
#ifdef SLA_HAVE_METIS
  return true;
#else
  return false;
#endif
}

template <class I>
void partition_metis(index_t n, const I* crow, const I* col, index_t num_parts, const index_t* vertex_weights,
                     std::uint64_t seed, index_t* owner) {
#ifndef SLA_HAVE_METIS
  fail(ErrorKind::Unavailable,
       "partition_metis: METIS is not compiled into this build of torch_sla (install libmetis-dev and rebuild); "
       "partition by coordinates or contiguous blocks instead");
#else
  check_parts(n, num_parts);
  check_pattern(n, crow, col);
  if (vertex_weights != nullptr) {
    index_t total = 0;
    for (index_t i = 0; i < n; ++i) {
      if (vertex_weights[i] < 1)
        fail(ErrorKind::InvalidArgument, "vertex_weights: must be positive, got ", vertex_weights[i], " at vertex ", i);
      if (vertex_weights[i] > kIdxMax - total)
        fail(ErrorKind::InvalidArgument, "vertex_weights: their sum exceeds the index range of this METIS build (",
             IDXTYPEWIDTH, "-bit idx_t)");
      total += vertex_weights[i];
    }
  }
  if (num_parts == 1) {
    std::fill(owner, owner + n, index_t{0});
    return;
  }
  const Graph g = symmetrize(n, crow, col);
  run_metis(g, n, num_parts, vertex_weights, seed, owner);
  fill_empty_parts(g, n, num_parts, owner);
#endif
}

void partition_coordinates(index_t n, index_t dim, const double* coords, index_t num_parts, index_t* owner) {
  check_parts(n, num_parts);
  if (dim < 1) fail(ErrorKind::InvalidArgument, "coords: need at least one coordinate per point, got ", dim);
  for (index_t t = 0; t < n * dim; ++t)
    if (!std::isfinite(coords[t]))
      fail(ErrorKind::InvalidArgument, "coords: entry (", t / dim, ", ", t % dim, ") is not finite (", coords[t], ")");
  Bisection b{dim, coords, owner, std::vector<index_t>(static_cast<size_t>(n))};
  std::iota(b.idx.begin(), b.idx.end(), index_t{0});
  b.split(0, n, num_parts, 0);
}

void partition_contiguous(index_t n, index_t num_parts, index_t* owner) {
  check_parts(n, num_parts);
  const index_t q = n / num_parts, r = n % num_parts;
  index_t i = 0;
  for (index_t p = 0; p < num_parts; ++p)
    for (index_t end = i + q + (p < r ? 1 : 0); i < end; ++i) owner[i] = p;
}

template <class I>
PartitionQuality partition_quality(index_t n, const I* crow, const I* col, const index_t* owner, index_t num_parts) {
  if (n < 1) fail(ErrorKind::InvalidArgument, "n: the graph has no vertex (n = ", n, ")");
  if (num_parts < 1) fail(ErrorKind::InvalidArgument, "num_parts: must be at least 1, got ", num_parts);
  check_pattern(n, crow, col);
  PartitionQuality q;
  q.part_sizes.assign(static_cast<size_t>(num_parts), 0);
  for (index_t i = 0; i < n; ++i) {
    if (owner[i] < 0 || owner[i] >= num_parts)
      fail(ErrorKind::InvalidArgument, "owner: entry ", i, " is ", owner[i], ", outside [0, ", num_parts, ")");
    ++q.part_sizes[owner[i]];
  }
  const Graph g = symmetrize(n, crow, col);
  for (index_t i = 0; i < n; ++i)
    for (index_t k = g.xadj[i]; k < g.xadj[i + 1]; ++k)
      if (g.adj[k] > i && owner[g.adj[k]] != owner[i]) ++q.edge_cut;
  const index_t largest = *std::max_element(q.part_sizes.begin(), q.part_sizes.end());
  q.imbalance = static_cast<double>(largest) * static_cast<double>(num_parts) / static_cast<double>(n);
  return q;
}

template void partition_metis<std::int32_t>(index_t, const std::int32_t*, const std::int32_t*, index_t, const index_t*,
                                            std::uint64_t, index_t*);
template void partition_metis<std::int64_t>(index_t, const std::int64_t*, const std::int64_t*, index_t, const index_t*,
                                            std::uint64_t, index_t*);
template PartitionQuality partition_quality<std::int32_t>(index_t, const std::int32_t*, const std::int32_t*,
                                                          const index_t*, index_t);
template PartitionQuality partition_quality<std::int64_t>(index_t, const std::int64_t*, const std::int64_t*,
                                                          const index_t*, index_t);

}  // namespace sla
