// Distance-2 column coloring: valid on every pattern, few colors on stencils, conflicts found.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "sla/coloring.hpp"
#include "sla/errors.hpp"
#include "sla/pattern.hpp"
#include "test_util.hpp"

using sla::index_t;

namespace {

sla::CsrPattern pattern_of(index_t n_rows, index_t n_cols, std::vector<std::set<index_t>> rows) {
  std::vector<std::int64_t> p{0}, j;
  for (const auto& r : rows) {
    j.insert(j.end(), r.begin(), r.end());
    p.push_back(static_cast<std::int64_t>(j.size()));
  }
  return sla::CsrPattern::copy_of(sla::CsrView<std::int64_t>{n_rows, n_cols, p.data(), j.data()},
                                  static_cast<index_t>(p.size()), static_cast<index_t>(j.size()), "A");
}

void expect_valid(const sla::CsrPattern& p, const sla::ColumnColoring& c) {
  ASSERT_EQ(static_cast<index_t>(c.colors.size()), p.n_cols());
  for (auto k : c.colors) {
    EXPECT_GE(k, 0);
    EXPECT_LT(k, c.n_colors);
  }
  index_t row = -1, a = -1, b = -1;
  EXPECT_FALSE(sla::find_coloring_conflict(p, c.colors.data(), &row, &a, &b))
      << "columns " << a << " and " << b << " share row " << row;
}

const sla::ColoringOrder kOrders[] = {sla::ColoringOrder::Natural, sla::ColoringOrder::LargestFirst,
                                      sla::ColoringOrder::SmallestLast, sla::ColoringOrder::Best};

TEST(Coloring, FivePointStencilNeedsFewColorsWhateverTheSize) {
  for (index_t m : {3, 10, 50, 200}) {
    const sla::CsrPattern p = sla::test::Poisson2d(m).pattern();
    for (auto o : kOrders) {
      const auto c = sla::color_columns(p, o);
      expect_valid(p, c);
      EXPECT_LE(c.n_colors, 9) << "m = " << m;
      EXPECT_GE(c.n_colors, 5);  // a column and its four neighbors share its row
    }
    EXPECT_LE(sla::color_columns(p, sla::ColoringOrder::Best).n_colors, 8);
  }
}

TEST(Coloring, ValidOnRandomRectangularPatterns) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 60; ++trial) {
    const index_t n_rows = 1 + static_cast<index_t>(rng() % 40), n_cols = 1 + static_cast<index_t>(rng() % 40);
    std::vector<std::set<index_t>> rows(static_cast<size_t>(n_rows));
    const int per_row = 1 + static_cast<int>(rng() % 6);
    for (auto& r : rows)
      for (int t = 0; t < per_row; ++t)
        if (rng() % 3) r.insert(static_cast<index_t>(rng() % n_cols));
    const sla::CsrPattern p = pattern_of(n_rows, n_cols, rows);
    size_t longest = 0;
    for (const auto& r : rows) longest = std::max(longest, r.size());
    for (auto o : kOrders) {
      const auto c = sla::color_columns(p, o);
      expect_valid(p, c);
      EXPECT_GE(static_cast<size_t>(c.n_colors), longest);  // a row's columns all differ
    }
  }
}

TEST(Coloring, DiagonalAndEmptyPatternsNeedOneOrNoColor) {
  const sla::CsrPattern diag = pattern_of(4, 4, {{0}, {1}, {2}, {3}});
  EXPECT_EQ(sla::color_columns(diag, sla::ColoringOrder::Best).n_colors, 1);
  const sla::CsrPattern none = pattern_of(0, 0, {});
  EXPECT_EQ(sla::color_columns(none, sla::ColoringOrder::Best).n_colors, 0);
  const sla::CsrPattern dense = pattern_of(2, 3, {{0, 1, 2}, {0, 1, 2}});
  EXPECT_EQ(sla::color_columns(dense, sla::ColoringOrder::SmallestLast).n_colors, 3);
}

TEST(Coloring, FindsAConflict) {
  const sla::CsrPattern p = pattern_of(2, 3, {{0, 2}, {1}});
  const std::vector<std::int32_t> bad{0, 0, 0}, good{0, 0, 1};
  index_t row = -1, a = -1, b = -1;
  ASSERT_TRUE(sla::find_coloring_conflict(p, bad.data(), &row, &a, &b));
  EXPECT_EQ(row, 0);
  EXPECT_EQ(a, 0);
  EXPECT_EQ(b, 2);
  EXPECT_FALSE(sla::find_coloring_conflict(p, good.data(), &row, &a, &b));
  const std::vector<std::int32_t> negative{0, -1, 0};
  EXPECT_THROW(sla::find_coloring_conflict(p, negative.data(), &row, &a, &b), sla::Error);
}

TEST(Coloring, ParsesOrderNames) {
  EXPECT_EQ(sla::parse_coloring_order("best", "order"), sla::ColoringOrder::Best);
  EXPECT_EQ(sla::parse_coloring_order("smallest_last", "order"), sla::ColoringOrder::SmallestLast);
  EXPECT_THROW(sla::parse_coloring_order("random", "order"), sla::Error);
}

}  // namespace
