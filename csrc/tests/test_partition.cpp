// Graph partitioning: hand-checkable cuts and sizes, balance, determinism, and bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "sla/errors.hpp"
#include "sla/partition.hpp"
#include "test_util.hpp"

using sla::ErrorKind;
using sla::index_t;

namespace {

template <class F>
void expect_error(ErrorKind kind, const std::string& fragment, F&& fn) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing '" << fragment << "'";
  } catch (const sla::Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

// A pattern given by rows of column lists, with int32 or int64 indices.
template <class I>
struct Pattern {
  index_t n = 0;
  std::vector<I> p{0}, j;
  explicit Pattern(const std::vector<std::vector<index_t>>& rows) : n(static_cast<index_t>(rows.size())) {
    for (const auto& r : rows) {
      for (index_t c : r) j.push_back(static_cast<I>(c));
      p.push_back(static_cast<I>(j.size()));
    }
  }
};

// The path 0 - 1 - ... - (n - 1), stored as the upper triangle only (the graph symmetrizes it).
std::vector<std::vector<index_t>> path_upper(index_t n) {
  std::vector<std::vector<index_t>> rows(static_cast<size_t>(n));
  for (index_t i = 0; i < n; ++i) {
    rows[i].push_back(i);
    if (i + 1 < n) rows[i].push_back(i + 1);
  }
  return rows;
}

// The m x m grid with its points' coordinates (x = i % m, y = i / m).
std::vector<double> grid_coords(index_t m) {
  std::vector<double> xy;
  for (index_t i = 0; i < m * m; ++i)
    xy.push_back(static_cast<double>(i % m)), xy.push_back(static_cast<double>(i / m));
  return xy;
}

// Every vertex in [0, k), every part non-empty; returns the sizes.
std::vector<index_t> check_valid(const std::vector<index_t>& owner, index_t k) {
  std::vector<index_t> size(static_cast<size_t>(k), 0);
  for (index_t o : owner) {
    EXPECT_GE(o, 0);
    EXPECT_LT(o, k);
    if (o >= 0 && o < k) ++size[o];
  }
  for (index_t p = 0; p < k; ++p) EXPECT_GT(size[p], 0) << "part " << p << " is empty";
  return size;
}

TEST(Partition, QualityOfAHandExample) {
  // 0 - 1, 1 - 2 stored twice (both directions), 2 - 3 stored below the diagonal, a duplicate entry, and
  // the diagonal: 3 undirected edges. Parts {0, 1} and {2, 3}: only 1 - 2 is cut.
  const Pattern<std::int64_t> a({{0, 1}, {1, 2, 2}, {1}, {2, 3}});
  const std::vector<index_t> owner{0, 0, 1, 1};
  const auto q = sla::partition_quality(a.n, a.p.data(), a.j.data(), owner.data(), 2);
  EXPECT_EQ(q.edge_cut, 1);
  EXPECT_EQ(q.part_sizes, (std::vector<index_t>{2, 2}));
  EXPECT_DOUBLE_EQ(q.imbalance, 1.0);
  // Alternating parts cut every edge; three parts of sizes 2, 1, 1 (and an empty fourth one is counted).
  const std::vector<index_t> alt{0, 1, 0, 2};
  const auto r = sla::partition_quality(a.n, a.p.data(), a.j.data(), alt.data(), 4);
  EXPECT_EQ(r.edge_cut, 3);
  EXPECT_EQ(r.part_sizes, (std::vector<index_t>{2, 1, 1, 0}));
  EXPECT_DOUBLE_EQ(r.imbalance, 2.0);  // 2 / (4 / 4)
}

TEST(Partition, ContiguousBlocksDifferByAtMostOne) {
  std::vector<index_t> owner(10);
  sla::partition_contiguous(10, 4, owner.data());
  EXPECT_EQ(owner, (std::vector<index_t>{0, 0, 0, 1, 1, 1, 2, 2, 3, 3}));
  sla::partition_contiguous(10, 10, owner.data());
  for (index_t i = 0; i < 10; ++i) EXPECT_EQ(owner[i], i);
  sla::partition_contiguous(10, 1, owner.data());
  EXPECT_EQ(owner, std::vector<index_t>(10, 0));
  // A path in contiguous blocks is cut once per boundary.
  const Pattern<std::int32_t> a(path_upper(10));
  sla::partition_contiguous(10, 4, owner.data());
  EXPECT_EQ(sla::partition_quality(a.n, a.p.data(), a.j.data(), owner.data(), 4).edge_cut, 3);
}

TEST(Partition, CoordinateBisectionCutsAGridStraight) {
  const index_t m = 20, n = m * m;
  const auto xy = grid_coords(m);
  const sla::test::Poisson2d grid(m);
  std::vector<index_t> owner(n);
  sla::partition_coordinates(n, 2, xy.data(), 2, owner.data());
  for (index_t i = 0; i < n; ++i) EXPECT_EQ(owner[i], i % m < m / 2 ? 0 : 1) << "point " << i;
  EXPECT_EQ(sla::partition_quality(n, grid.p.data(), grid.j.data(), owner.data(), 2).edge_cut, m);
  // Four parts: two straight cuts, a 10 x 10 quadrant each.
  sla::partition_coordinates(n, 2, xy.data(), 4, owner.data());
  const auto q = sla::partition_quality(n, grid.p.data(), grid.j.data(), owner.data(), 4);
  EXPECT_EQ(q.edge_cut, 2 * m);
  EXPECT_EQ(q.part_sizes, (std::vector<index_t>(4, 100)));
}

TEST(Partition, CoordinateBisectionBalancesAnyNumberOfParts) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (index_t n : {1, 7, 100, 1001}) {
    for (index_t dim : {1, 3}) {
      std::vector<double> x(static_cast<size_t>(n * dim));
      for (double& v : x) v = u(rng);
      if (n > 10) std::fill(x.begin(), x.begin() + 5 * dim, 0.25);  // ties
      for (index_t k : {1, 2, 3, 5, 7}) {
        if (k > n) continue;
        std::vector<index_t> owner(n);
        sla::partition_coordinates(n, dim, x.data(), k, owner.data());
        for (index_t s : check_valid(owner, k)) {
          EXPECT_GE(s, n / k);
          EXPECT_LE(s, (n + k - 1) / k);
        }
      }
    }
  }
}

TEST(Partition, CoordinateBisectionPutsTheLowerHalfFirst) {
  const std::vector<double> x{5.0, 1.0, 4.0, 2.0, 3.0};
  std::vector<index_t> owner(5);
  sla::partition_coordinates(5, 1, x.data(), 2, owner.data());
  EXPECT_EQ(owner, (std::vector<index_t>{1, 0, 1, 0, 0}));  // the first part takes ceil(5 / 2) = 3 points
}

TEST(Partition, MetisSplitsAPathOnce) {
  const Pattern<std::int64_t> a(path_upper(10));
  std::vector<index_t> owner(10, -1);
  if (!sla::metis_available()) {
    expect_error(ErrorKind::Unavailable, "METIS is not compiled",
                 [&] { sla::partition_metis(a.n, a.p.data(), a.j.data(), 2, nullptr, 0, owner.data()); });
    return;
  }
  sla::partition_metis(a.n, a.p.data(), a.j.data(), 2, nullptr, 0, owner.data());
  check_valid(owner, 2);
  const auto q = sla::partition_quality(a.n, a.p.data(), a.j.data(), owner.data(), 2);
  EXPECT_EQ(q.edge_cut, 1);
  EXPECT_EQ(q.part_sizes[0], 5);
  // One part: all zeros.
  sla::partition_metis(a.n, a.p.data(), a.j.data(), 1, nullptr, 0, owner.data());
  EXPECT_EQ(owner, std::vector<index_t>(10, 0));
}

TEST(Partition, MetisOnAGridIsBalancedWithASmallCutAndDeterministic) {
  if (!sla::metis_available()) GTEST_SKIP() << "METIS is not compiled into this build";
  const index_t m = 40, n = m * m;
  const sla::test::Poisson2d grid(m);
  std::vector<index_t> owner(n), again(n);
  sla::partition_metis(n, grid.p.data(), grid.j.data(), 4, nullptr, 7, owner.data());
  sla::partition_metis(n, grid.p.data(), grid.j.data(), 4, nullptr, 7, again.data());
  EXPECT_EQ(owner, again);
  check_valid(owner, 4);
  const auto q = sla::partition_quality(n, grid.p.data(), grid.j.data(), owner.data(), 4);
  EXPECT_LE(q.imbalance, 1.05);
  EXPECT_LE(q.edge_cut, 3 * m);  // two straight cuts: 2 m = 80; contiguous blocks of rows: 3 m
  // int32 indices give the same partition.
  const std::vector<std::int32_t> p32(grid.p.begin(), grid.p.end()), j32(grid.j.begin(), grid.j.end());
  sla::partition_metis(n, p32.data(), j32.data(), 4, nullptr, 7, again.data());
  EXPECT_EQ(owner, again);
}

TEST(Partition, MetisNeverLeavesAPartEmpty) {
  if (!sla::metis_available()) GTEST_SKIP() << "METIS is not compiled into this build";
  // Edgeless graphs (a diagonal matrix) and tiny graphs with as many parts as vertices.
  for (index_t n : {2, 3, 5, 8, 13}) {
    std::vector<std::vector<index_t>> diag(static_cast<size_t>(n));
    for (index_t i = 0; i < n; ++i) diag[i] = {i};
    const Pattern<std::int64_t> d(diag), path(path_upper(n));
    for (index_t k = 2; k <= n; ++k) {
      std::vector<index_t> owner(n, -1);
      sla::partition_metis(n, d.p.data(), d.j.data(), k, nullptr, 0, owner.data());
      check_valid(owner, k);
      sla::partition_metis(n, path.p.data(), path.j.data(), k, nullptr, 0, owner.data());
      check_valid(owner, k);
    }
  }
}

TEST(Partition, MetisBalancesVertexWeights) {
  if (!sla::metis_available()) GTEST_SKIP() << "METIS is not compiled into this build";
  // A path of 15 whose first 3 vertices weigh 4: the halves of equal weight (12) are {0, 1, 2} and the rest.
  const Pattern<std::int64_t> a(path_upper(15));
  std::vector<index_t> w(15, 1), owner(15);
  std::fill(w.begin(), w.begin() + 3, 4);
  sla::partition_metis(a.n, a.p.data(), a.j.data(), 2, w.data(), 0, owner.data());
  check_valid(owner, 2);
  for (index_t i = 0; i < 15; ++i) EXPECT_EQ(owner[i] == owner[0], i < 3) << "vertex " << i;
  EXPECT_EQ(sla::partition_quality(a.n, a.p.data(), a.j.data(), owner.data(), 2).edge_cut, 1);
}

TEST(Partition, BadInputIsRefused) {
  const Pattern<std::int64_t> a(path_upper(4));
  std::vector<index_t> owner(4);
  const std::vector<double> x(8, 0.0);
  for (index_t k : {0, -1}) {
    expect_error(ErrorKind::InvalidArgument, "num_parts: must be at least 1",
                 [&] { sla::partition_coordinates(4, 2, x.data(), k, owner.data()); });
    expect_error(ErrorKind::InvalidArgument, "num_parts: must be at least 1",
                 [&] { sla::partition_contiguous(4, k, owner.data()); });
    expect_error(ErrorKind::InvalidArgument, "num_parts: must be at least 1",
                 [&] { sla::partition_quality(a.n, a.p.data(), a.j.data(), owner.data(), k); });
  }
  expect_error(ErrorKind::InvalidArgument, "use at most n parts",
               [&] { sla::partition_contiguous(4, 5, owner.data()); });
  expect_error(ErrorKind::InvalidArgument, "n: the graph has no vertex",
               [&] { sla::partition_contiguous(0, 1, owner.data()); });
  expect_error(ErrorKind::InvalidArgument, "n: the graph has no vertex",
               [&] { sla::partition_coordinates(0, 2, x.data(), 1, owner.data()); });
  expect_error(ErrorKind::InvalidArgument, "n: the graph has no vertex",
               [&] { sla::partition_quality(0, a.p.data(), a.j.data(), owner.data(), 1); });
  // Coordinates: no dimension, NaN.
  expect_error(ErrorKind::InvalidArgument, "coords: need at least one coordinate",
               [&] { sla::partition_coordinates(4, 0, x.data(), 2, owner.data()); });
  std::vector<double> bad = x;
  bad[5] = std::nan("");
  expect_error(ErrorKind::InvalidArgument, "coords: entry (2, 1) is not finite",
               [&] { sla::partition_coordinates(4, 2, bad.data(), 2, owner.data()); });
  // Pattern: a column out of range, a decreasing crow; owner out of range.
  Pattern<std::int64_t> out_of_range = a;
  out_of_range.j[2] = 4;
  expect_error(ErrorKind::InvalidArgument, "column index 4 at entry 2 is out of range [0, 4)",
               [&] { sla::partition_quality(4, out_of_range.p.data(), out_of_range.j.data(), owner.data(), 2); });
  Pattern<std::int64_t> decreasing = a;
  decreasing.p[2] = 1;
  expect_error(ErrorKind::InvalidArgument, "crow_indices decreases at row 1 (2 then 1)",
               [&] { sla::partition_quality(4, decreasing.p.data(), decreasing.j.data(), owner.data(), 2); });
  const std::vector<index_t> wrong{0, 1, 2, 0};
  expect_error(ErrorKind::InvalidArgument, "owner: entry 2 is 2, outside [0, 2)",
               [&] { sla::partition_quality(4, a.p.data(), a.j.data(), wrong.data(), 2); });
  if (!sla::metis_available()) return;
  expect_error(ErrorKind::InvalidArgument, "num_parts: must be at least 1",
               [&] { sla::partition_metis(4, a.p.data(), a.j.data(), 0, nullptr, 0, owner.data()); });
  expect_error(ErrorKind::InvalidArgument, "use at most n parts",
               [&] { sla::partition_metis(4, a.p.data(), a.j.data(), 5, nullptr, 0, owner.data()); });
  expect_error(ErrorKind::InvalidArgument, "n: the graph has no vertex",
               [&] { sla::partition_metis(0, a.p.data(), a.j.data(), 1, nullptr, 0, owner.data()); });
  expect_error(ErrorKind::InvalidArgument, "out of range", [&] {
    sla::partition_metis(4, out_of_range.p.data(), out_of_range.j.data(), 2, nullptr, 0, owner.data());
  });
  const std::vector<index_t> w{1, 0, 1, 1};
  expect_error(ErrorKind::InvalidArgument, "vertex_weights: must be positive, got 0 at vertex 1",
               [&] { sla::partition_metis(4, a.p.data(), a.j.data(), 2, w.data(), 0, owner.data()); });
}

}  // namespace
