// Tests of the Matrix Market reader and writer on tiny hand-checkable files.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <complex>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "sla/errors.hpp"
#include "sla/mtx.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using cplx = std::complex<double>;
using sla::index_t;

namespace {

// A scratch folder per test, removed afterwards.
class MtxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("sla_mtx_" + std::to_string(std::random_device{}()) + "_" + info->name() + "_" +
            std::to_string(counter++));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::string put(const std::string& text, const std::string& name = "a.mtx") const {
    const std::string p = path(name);
    std::ofstream f(p, std::ios::binary);
    f << text;
    return p;
  }

  sla::MtxData read_text(const std::string& text) const { return sla::read_mtx(put(text)); }

  // Reading `text` must return, or fail with a MatrixMarket error, within a second whatever the sizes on its
  // size line: the work is bounded by the file's content. Returns whether it loaded.
  bool read_bounded(const std::string& text, sla::MtxData* out = nullptr) const {
    bool loaded = false;
    sla::test::within_seconds(10.0, "reading:\n" + text, [&] {
      const auto t0 = std::chrono::steady_clock::now();
      try {
        sla::MtxData d = read_text(text);
        loaded = true;
        if (out != nullptr) *out = std::move(d);
      } catch (const sla::Error& e) {
        EXPECT_EQ(e.kind(), sla::ErrorKind::MatrixMarket) << e.what();
      }
      EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.0) << text;
    });
    return loaded;
  }

  // Reading `text` must fail with a MatrixMarket error whose message names the file, the line (when
  // line > 0) and contains `fragment`.
  void expect_bad(const std::string& text, int line, const std::string& fragment) const {
    const std::string p = put(text, "bad.mtx");
    try {
      sla::read_mtx(p);
      ADD_FAILURE() << "no error for:\n" << text;
    } catch (const sla::Error& e) {
      EXPECT_EQ(e.kind(), sla::ErrorKind::MatrixMarket) << e.what();
      const std::string msg = e.what();
      const std::string where = line > 0 ? p + ":" + std::to_string(line) + ":" : p;
      EXPECT_NE(msg.find(where), std::string::npos) << "message lacks '" << where << "': " << msg;
      EXPECT_NE(msg.find(fragment), std::string::npos) << "message lacks '" << fragment << "': " << msg;
    }
  }

  fs::path dir_;
};

using Entries = std::map<std::pair<index_t, index_t>, cplx>;

// Sum the entries of `d` by position (complex or real values alike).
Entries entries(const sla::MtxData& d) {
  Entries out;
  EXPECT_EQ(d.row.size(), d.col.size());
  const bool complex = d.field == "complex";
  EXPECT_EQ(complex ? d.cvalues.size() : d.values.size(), d.row.size());
  for (size_t k = 0; k < d.row.size(); ++k)
    out[{d.row[k], d.col[k]}] += complex ? d.cvalues[k] : cplx(d.values[k], 0.0);
  return out;
}

template <class E>
void expect_invalid(const E& call, const std::string& fragment) {
  try {
    call();
    ADD_FAILURE() << "no error; expected one containing '" << fragment << "'";
  } catch (const sla::Error& e) {
    EXPECT_EQ(e.kind(), sla::ErrorKind::InvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

// --- Reading: header variants and mirroring ---------------------------------------------------------

TEST_F(MtxTest, CoordinateRealGeneral) {
  const auto d = read_text(
      "%%MatrixMarket matrix coordinate real general\n"
      "% a comment\n"
      "%another\n"
      "3 4 3\n"
      "1 1 1.5\n"
      "3 4 -2e3\n"
      "2 1 +0.25\n");
  EXPECT_EQ(d.n_rows, 3);
  EXPECT_EQ(d.n_cols, 4);
  EXPECT_EQ(d.format, "coordinate");
  EXPECT_EQ(d.field, "real");
  EXPECT_EQ(d.symmetry, "general");
  EXPECT_EQ(d.row, (std::vector<index_t>{0, 2, 1}));
  EXPECT_EQ(d.col, (std::vector<index_t>{0, 3, 0}));
  EXPECT_EQ(d.values, (std::vector<double>{1.5, -2000.0, 0.25}));
  EXPECT_TRUE(d.cvalues.empty());
}

TEST_F(MtxTest, BannerIsCaseInsensitive) {
  const auto d = read_text("%%matrixmarket MATRIX Coordinate REAL General\n1 1 1\n1 1 7\n");
  EXPECT_EQ(d.format, "coordinate");
  EXPECT_EQ(d.field, "real");
  EXPECT_EQ(d.symmetry, "general");
  EXPECT_EQ(d.values, std::vector<double>{7.0});
}

TEST_F(MtxTest, IntegerField) {
  const auto d = read_text("%%MatrixMarket matrix coordinate integer general\n2 2 2\n1 2 -3\n2 2 +12\n");
  EXPECT_EQ(d.field, "integer");
  EXPECT_EQ(d.values, (std::vector<double>{-3.0, 12.0}));
}

TEST_F(MtxTest, PatternGeneralAndSymmetric) {
  auto d = read_text("%%MatrixMarket matrix coordinate pattern general\n2 3 2\n1 3\n2 1\n");
  EXPECT_EQ(d.field, "pattern");
  EXPECT_EQ(d.row, (std::vector<index_t>{0, 1}));
  EXPECT_EQ(d.col, (std::vector<index_t>{2, 0}));
  EXPECT_EQ(d.values, (std::vector<double>{1.0, 1.0}));
  d = read_text("%%MatrixMarket matrix coordinate pattern symmetric\n3 3 2\n1 1\n3 2\n");
  EXPECT_EQ(entries(d), (Entries{{{0, 0}, 1.0}, {{2, 1}, 1.0}, {{1, 2}, 1.0}}));
}

TEST_F(MtxTest, ComplexGeneral) {
  const auto d = read_text("%%MatrixMarket matrix coordinate complex general\n2 2 2\n1 2 1.5 -2\n2 1 0 3\n");
  EXPECT_TRUE(d.values.empty());
  EXPECT_EQ(d.cvalues, (std::vector<cplx>{{1.5, -2.0}, {0.0, 3.0}}));
  EXPECT_EQ(d.row, (std::vector<index_t>{0, 1}));
  EXPECT_EQ(d.col, (std::vector<index_t>{1, 0}));
}

TEST_F(MtxTest, SymmetricMirrorsOffDiagonal) {
  const auto d = read_text("%%MatrixMarket matrix coordinate real symmetric\n3 3 3\n1 1 4\n2 1 -1\n3 2 2.5\n");
  EXPECT_EQ(d.nnz(), 5);  // diagonal not duplicated
  EXPECT_EQ(entries(d), (Entries{{{0, 0}, 4.0}, {{1, 0}, -1.0}, {{0, 1}, -1.0}, {{2, 1}, 2.5}, {{1, 2}, 2.5}}));
}

TEST_F(MtxTest, SkewSymmetricNegatesMirror) {
  const auto d = read_text("%%MatrixMarket matrix coordinate real skew-symmetric\n3 3 2\n2 1 3\n3 1 -1\n");
  EXPECT_EQ(entries(d), (Entries{{{1, 0}, 3.0}, {{0, 1}, -3.0}, {{2, 0}, -1.0}, {{0, 2}, 1.0}}));
}

TEST_F(MtxTest, SkewSymmetricComplexNegatesBothParts) {
  const auto d = read_text("%%MatrixMarket matrix coordinate complex skew-symmetric\n2 2 1\n2 1 1 2\n");
  EXPECT_EQ(entries(d), (Entries{{{1, 0}, cplx(1, 2)}, {{0, 1}, cplx(-1, -2)}}));
}

TEST_F(MtxTest, SkewSymmetricAcceptsExplicitZeroDiagonal) {
  const auto d = read_text("%%MatrixMarket matrix coordinate real skew-symmetric\n2 2 2\n1 1 0\n2 1 5\n");
  EXPECT_EQ(entries(d), (Entries{{{0, 0}, 0.0}, {{1, 0}, 5.0}, {{0, 1}, -5.0}}));
}

TEST_F(MtxTest, HermitianConjugatesMirror) {
  const auto d = read_text("%%MatrixMarket matrix coordinate complex hermitian\n2 2 3\n1 1 5 0\n2 1 1 2\n2 2 -1 0\n");
  EXPECT_EQ(d.nnz(), 4);
  EXPECT_EQ(entries(d), (Entries{{{0, 0}, 5.0}, {{1, 0}, cplx(1, 2)}, {{0, 1}, cplx(1, -2)}, {{1, 1}, -1.0}}));
}

TEST_F(MtxTest, ArrayGeneralIsColumnMajorAndDense) {
  const auto d = read_text("%%MatrixMarket matrix array real general\n% c\n2 3\n1\n2\n0\n4\n5\n6\n");
  EXPECT_EQ(d.format, "array");
  EXPECT_EQ(d.nnz(), 6);  // zeros are kept
  EXPECT_EQ(d.row, (std::vector<index_t>{0, 1, 0, 1, 0, 1}));
  EXPECT_EQ(d.col, (std::vector<index_t>{0, 0, 1, 1, 2, 2}));
  EXPECT_EQ(d.values, (std::vector<double>{1, 2, 0, 4, 5, 6}));
}

TEST_F(MtxTest, ArraySymmetricStoresLowerTriangle) {
  // Lower triangle column by column: a11 a21 a31 a22 a32 a33.
  const auto d = read_text("%%MatrixMarket matrix array real symmetric\n3 3\n1\n2\n3\n4\n5\n6\n");
  EXPECT_EQ(d.nnz(), 9);
  EXPECT_EQ(entries(d), (Entries{{{0, 0}, 1.0},
                                 {{1, 0}, 2.0},
                                 {{0, 1}, 2.0},
                                 {{2, 0}, 3.0},
                                 {{0, 2}, 3.0},
                                 {{1, 1}, 4.0},
                                 {{2, 1}, 5.0},
                                 {{1, 2}, 5.0},
                                 {{2, 2}, 6.0}}));
}

TEST_F(MtxTest, ArraySkewSymmetricOmitsDiagonal) {
  // Strict lower triangle column by column: a21 a31 a32.
  const auto d = read_text("%%MatrixMarket matrix array integer skew-symmetric\n3 3\n1\n2\n3\n");
  EXPECT_EQ(d.nnz(), 6);
  EXPECT_EQ(entries(d), (Entries{{{1, 0}, 1.0},
                                 {{0, 1}, -1.0},
                                 {{2, 0}, 2.0},
                                 {{0, 2}, -2.0},
                                 {{2, 1}, 3.0},
                                 {{1, 2}, -3.0}}));
}

TEST_F(MtxTest, ArrayHermitianAndComplexGeneral) {
  auto d = read_text("%%MatrixMarket matrix array complex hermitian\n2 2\n1 0\n2 3\n4 0\n");
  EXPECT_EQ(entries(d), (Entries{{{0, 0}, 1.0}, {{1, 0}, cplx(2, 3)}, {{0, 1}, cplx(2, -3)}, {{1, 1}, 4.0}}));
  d = read_text("%%MatrixMarket matrix array complex general\n1 2\n1 -1\n0 2\n");
  EXPECT_EQ(d.cvalues, (std::vector<cplx>{{1, -1}, {0, 2}}));
  EXPECT_EQ(d.col, (std::vector<index_t>{0, 1}));
}

TEST_F(MtxTest, EmptyMatrices) {
  auto d = read_text("%%MatrixMarket matrix coordinate real general\n0 0 0\n");
  EXPECT_EQ(d.n_rows, 0);
  EXPECT_EQ(d.nnz(), 0);
  d = read_text("%%MatrixMarket matrix coordinate real general\n5 3 0\n");
  EXPECT_EQ(d.n_rows, 5);
  EXPECT_EQ(d.n_cols, 3);
  EXPECT_EQ(d.nnz(), 0);
  d = read_text("%%MatrixMarket matrix array real symmetric\n0 0\n");
  EXPECT_EQ(d.nnz(), 0);
  d = read_text("%%MatrixMarket matrix array real skew-symmetric\n1 1\n");
  EXPECT_EQ(d.nnz(), 0);
}

TEST_F(MtxTest, TolerantWhitespace) {
  // CRLF line ends, tabs, blank lines, a byte order mark and no final newline.
  const auto d = read_text(
      "\xEF\xBB\xBF%%MatrixMarket  matrix\tcoordinate real general \r\n"
      "\r\n"
      "% comment\r\n"
      "  2 2 2\r\n"
      "\n"
      "1\t1   3.0\r\n"
      "   \n"
      "2 2 4");
  EXPECT_EQ(entries(d), (Entries{{{0, 0}, 3.0}, {{1, 1}, 4.0}}));
}

TEST_F(MtxTest, NanAndInfAreAccepted) {
  const auto d = read_text("%%MatrixMarket matrix coordinate real general\n1 3 3\n1 1 nan\n1 2 -inf\n1 3 1e400\n");
  ASSERT_EQ(d.values.size(), 3u);
  EXPECT_TRUE(std::isnan(d.values[0]));
  EXPECT_TRUE(std::isinf(d.values[1]) && d.values[1] < 0);
  EXPECT_TRUE(std::isinf(d.values[2]) && d.values[2] > 0);
}

TEST_F(MtxTest, DuplicatesAreKept) {
  const auto d = read_text("%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 1\n1 1 2\n");
  EXPECT_EQ(d.nnz(), 2);
  EXPECT_EQ(entries(d), (Entries{{{0, 0}, 3.0}}));
}

// --- Reading: malformed files -------------------------------------------------------------------

const char* kCoo = "%%MatrixMarket matrix coordinate real general\n";

TEST_F(MtxTest, ErrorUnreadablePath) {
  const std::string p = path("does_not_exist.mtx");
  try {
    sla::read_mtx(p);
    ADD_FAILURE() << "no error";
  } catch (const sla::Error& e) {
    EXPECT_EQ(e.kind(), sla::ErrorKind::MatrixMarket);
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cannot open"), std::string::npos) << e.what();
  }
  // A directory is not a readable file either.
  EXPECT_THROW(sla::read_mtx(dir_.string()), sla::Error);
}

TEST_F(MtxTest, ErrorBanner) {
  expect_bad("", 1, "empty file");
  expect_bad("3 3 1\n1 1 1\n", 1, "missing Matrix Market banner");
  expect_bad("%MatrixMarket matrix coordinate real general\n1 1 0\n", 1, "missing Matrix Market banner");
  expect_bad("%%MatrixMarket matrix coordinate real\n1 1 0\n", 1, "malformed banner");
  expect_bad("%%MatrixMarket matrix coordinate real general extra\n1 1 0\n", 1, "malformed banner");
  expect_bad("%%MatrixMarket vector coordinate real general\n1 1 0\n", 1, "unsupported object 'vector'");
  expect_bad("%%MatrixMarket matrix sparse real general\n1 1 0\n", 1, "unknown format 'sparse'");
  expect_bad("%%MatrixMarket matrix coordinate double general\n1 1 0\n", 1, "unknown field 'double'");
  expect_bad("%%MatrixMarket matrix coordinate real upper\n1 1 0\n", 1, "unknown symmetry 'upper'");
}

TEST_F(MtxTest, ErrorInconsistentHeader) {
  expect_bad("%%MatrixMarket matrix array pattern general\n1 1\n", 1,
             "'pattern' field cannot be used with the 'array'");
  expect_bad("%%MatrixMarket matrix coordinate real hermitian\n1 1 0\n", 1, "'hermitian' symmetry requires");
  expect_bad("%%MatrixMarket matrix coordinate integer hermitian\n1 1 0\n", 1, "'hermitian' symmetry requires");
  expect_bad("%%MatrixMarket matrix coordinate pattern skew-symmetric\n1 1 0\n", 1, "cannot be skew-symmetric");
}

TEST_F(MtxTest, ErrorSizeLine) {
  expect_bad(std::string(kCoo) + "% only comments\n", 2, "file ends before the size line");
  expect_bad(std::string(kCoo) + "-1 2 0\n", 2, "negative size");
  expect_bad(std::string(kCoo) + "2 2 -1\n", 2, "negative size");
  expect_bad(std::string(kCoo) + "2 2\n", 2, "malformed size line");
  expect_bad(std::string(kCoo) + "2 2 1 1\n", 2, "malformed size line");
  expect_bad(std::string(kCoo) + "2 x 1\n", 2, "invalid number 'x'");
  expect_bad(std::string(kCoo) + "2.0 2 1\n", 2, "invalid number '2.0'");
  expect_bad("%%MatrixMarket matrix array real general\n2 2 4\n", 2, "malformed size line");
  expect_bad("%%MatrixMarket matrix coordinate real symmetric\n% c\n2 3 0\n", 3, "must be square, got 2 x 3");
  expect_bad("%%MatrixMarket matrix array real skew-symmetric\n3 2\n", 2, "must be square");
}

TEST_F(MtxTest, ErrorIndexOutOfRange) {
  expect_bad(std::string(kCoo) + "2 3 2\n1 1 1\n0 1 1\n", 4, "row index 0 is out of range 1..2");
  expect_bad(std::string(kCoo) + "2 3 1\n3 1 1\n", 3, "row index 3 is out of range 1..2");
  expect_bad(std::string(kCoo) + "2 3 1\n1 4 1\n", 3, "column index 4 is out of range 1..3");
  expect_bad(std::string(kCoo) + "2 3 1\n1 -1 1\n", 3, "column index -1 is out of range");
  expect_bad(std::string(kCoo) + "2 3 1\n1.0 1 1\n", 3, "invalid row index '1.0'");
}

TEST_F(MtxTest, ErrorWrongValueCount) {
  expect_bad(std::string(kCoo) + "2 2 1\n1 1\n", 3, "expected 3 values 'row col value' on an entry line, got 2");
  expect_bad(std::string(kCoo) + "2 2 1\n1 1 1 1\n", 3, "got 4");
  expect_bad(std::string(kCoo) + "2 2 1\n1 1 1 1 1 1\n", 3, "got more than 4");
  expect_bad("%%MatrixMarket matrix coordinate complex general\n2 2 1\n1 1 1\n", 3,
             "expected 4 values 'row col real imag'");
  expect_bad("%%MatrixMarket matrix coordinate pattern general\n2 2 1\n1 1 1\n", 3, "expected 2 values 'row col'");
  expect_bad("%%MatrixMarket matrix array real general\n1 2\n1 2\n3\n", 3, "expected 1 value 'value'");
  expect_bad("%%MatrixMarket matrix array complex general\n1 1\n1\n", 3, "expected 2 values 'real imag'");
}

TEST_F(MtxTest, ErrorBadNumbers) {
  expect_bad(std::string(kCoo) + "2 2 1\n1 1 abc\n", 3, "invalid real value 'abc'");
  expect_bad(std::string(kCoo) + "2 2 1\n1 1 1.5.2\n", 3, "invalid real value '1.5.2'");
  expect_bad(std::string(kCoo) + "2 2 1\n1 1 1,5\n", 3, "invalid real value '1,5'");
  expect_bad("%%MatrixMarket matrix coordinate integer general\n2 2 1\n1 1 1.5\n", 3, "invalid integer value '1.5'");
  expect_bad("%%MatrixMarket matrix coordinate integer general\n2 2 1\n1 1 1e3\n", 3, "invalid integer value '1e3'");
  expect_bad("%%MatrixMarket matrix coordinate integer general\n2 2 1\n1 1 99999999999999999999\n", 3,
             "invalid integer value");
  expect_bad("%%MatrixMarket matrix coordinate complex general\n2 2 1\n1 1 1 i\n", 3, "invalid imaginary part 'i'");
  expect_bad("%%MatrixMarket matrix array real general\n1 1\nx\n", 3, "invalid real value 'x'");
}

TEST_F(MtxTest, ErrorSymmetryViolations) {
  expect_bad("%%MatrixMarket matrix coordinate real symmetric\n3 3 2\n1 1 1\n1 2 1\n", 4,
             "entry (1, 2) lies in the upper triangle");
  expect_bad("%%MatrixMarket matrix coordinate real skew-symmetric\n3 3 1\n1 3 1\n", 3, "upper triangle");
  expect_bad("%%MatrixMarket matrix coordinate complex hermitian\n3 3 1\n2 3 1 1\n", 3, "upper triangle");
  expect_bad("%%MatrixMarket matrix coordinate pattern symmetric\n3 3 1\n2 3\n", 3, "upper triangle");
  expect_bad("%%MatrixMarket matrix coordinate real skew-symmetric\n3 3 2\n2 1 1\n2 2 0.5\n", 4,
             "skew-symmetric matrix has a nonzero diagonal entry at (2, 2)");
  expect_bad("%%MatrixMarket matrix coordinate complex hermitian\n2 2 1\n1 1 1 0.5\n", 3,
             "diagonal entry with a nonzero imaginary part");
  expect_bad("%%MatrixMarket matrix array complex hermitian\n2 2\n1 0\n2 3\n4 1\n", 5, "nonzero imaginary part");
}

TEST_F(MtxTest, ErrorEntryCount) {
  expect_bad(std::string(kCoo) + "2 2 3\n1 1 1\n2 2 1\n", 4, "file ends after 2 of the 3 entries");
  expect_bad(std::string(kCoo) + "% c\n2 2 3\n1 1 1\n2 2 1\n% trailing\n", 6, "is it truncated?");
  expect_bad(std::string(kCoo) + "2 2 1\n1 1 1\n2 2 1\n", 4, "more entries than the 1 declared");
  expect_bad(std::string(kCoo) + "2 2 0\n1 1 1\n", 3, "more entries than the 0 declared");
  expect_bad("%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n", 5, "file ends after 3 of the 4 values");
  expect_bad("%%MatrixMarket matrix array real general\n1 2\n1\n2\n3\n", 5, "more values than the 2 expected");
  expect_bad("%%MatrixMarket matrix array real symmetric\n2 2\n1\n2\n", 4, "file ends after 2 of the 3 values");
  expect_bad("%%MatrixMarket matrix array real skew-symmetric\n2 2\n1\n2\n", 4, "more values than the 1 expected");
}

// --- Reading: sizes on the size line that the content does not back --------------------------------

TEST_F(MtxTest, HugeArraySizesDoNotHang) {
  const std::string big = "1000000000000000000";  // 10^18
  sla::MtxData d;
  // 0 x 10^18 and 10^18 x 0: valid empty matrices.
  EXPECT_TRUE(read_bounded("%%MatrixMarket matrix array real general\n0 " + big + "\n", &d));
  EXPECT_EQ(d.n_rows, 0);
  EXPECT_EQ(d.n_cols, 1000000000000000000);
  EXPECT_EQ(d.nnz(), 0);
  EXPECT_TRUE(read_bounded("%%MatrixMarket matrix array complex general\n0 " + big + "\n"));
  EXPECT_TRUE(read_bounded("%%MatrixMarket matrix array integer general\n" + big + " 0\n", &d));
  EXPECT_EQ(d.n_rows, 1000000000000000000);
  EXPECT_EQ(d.n_cols, 0);
  // A value where there is no position for it, and huge arrays with a few values: errors.
  EXPECT_FALSE(read_bounded("%%MatrixMarket matrix array real general\n0 " + big + "\n1\n"));
  EXPECT_FALSE(read_bounded("%%MatrixMarket matrix array real general\n" + big + " 1\n1\n2\n"));
  EXPECT_FALSE(read_bounded("%%MatrixMarket matrix array real general\n1 " + big + "\n1\n2\n"));
  EXPECT_FALSE(read_bounded("%%MatrixMarket matrix array real general\n" + big + " " + big + "\n1\n"));
  for (const char* sym : {"symmetric", "skew-symmetric"}) {
    SCOPED_TRACE(sym);
    const std::string banner = std::string("%%MatrixMarket matrix array real ") + sym + "\n";
    EXPECT_TRUE(read_bounded(banner + "0 0\n"));
    EXPECT_FALSE(read_bounded(banner + big + " " + big + "\n1\n2\n"));
    EXPECT_FALSE(read_bounded(banner + "2147483648 2147483648\n1\n2\n"));
    EXPECT_FALSE(read_bounded(banner + "0 0\n1\n"));
  }
  EXPECT_FALSE(read_bounded("%%MatrixMarket matrix array complex hermitian\n" + big + " " + big + "\n1 0\n"));
  EXPECT_TRUE(read_bounded("%%MatrixMarket matrix array real skew-symmetric\n1 1\n"));
}

TEST_F(MtxTest, HugeCoordinateSizesDoNotHang) {
  const std::string big = "1000000000000000000";
  sla::MtxData d;
  EXPECT_TRUE(read_bounded(std::string(kCoo) + big + " " + big + " 0\n", &d));
  EXPECT_EQ(d.n_rows, 1000000000000000000);
  EXPECT_EQ(d.nnz(), 0);
  EXPECT_TRUE(read_bounded(std::string(kCoo) + big + " " + big + " 1\n" + big + " " + big + " 2.5\n", &d));
  EXPECT_EQ(d.row, std::vector<index_t>{999999999999999999});
  EXPECT_FALSE(read_bounded(std::string(kCoo) + big + " " + big + " " + big + "\n1 1 1\n"));
  EXPECT_FALSE(read_bounded(std::string(kCoo) + "0 " + big + " " + big + "\n"));
  EXPECT_FALSE(
      read_bounded("%%MatrixMarket matrix coordinate real symmetric\n" + big + " " + big + " " + big + "\n2 1 1\n"));
  EXPECT_FALSE(read_bounded(std::string(kCoo) + "9223372036854775807 9223372036854775807 "
                                                "9223372036854775807\n1 1 1\n"));
}

// Error messages quote at most a bounded piece of a line or a token, whatever its length.
TEST_F(MtxTest, LongTokensAreShortenedInMessages) {
  const std::string token(1 << 20, '7');
  for (const std::string& text :
       {std::string(kCoo) + "2 2 1\n1 1 " + token + "x\n", std::string(kCoo) + "2 2 1\n" + token + " 1 1\n",
        std::string(kCoo) + token + "\n", "%%MatrixMarket matrix coordinate " + token + " general\n"}) {
    try {
      read_text(text);
      ADD_FAILURE() << "no error";
    } catch (const sla::Error& e) {
      EXPECT_EQ(e.kind(), sla::ErrorKind::MatrixMarket);
      EXPECT_LT(std::string(e.what()).size(), 1000u) << std::string(e.what()).substr(0, 200);
    }
  }
}

// --- Writing ---------------------------------------------------------------------------------------

struct Coo {
  index_t n_rows, n_cols;
  std::vector<index_t> row, col;
  std::vector<double> values;
  std::vector<cplx> cvalues;
};

void write_coo(const std::string& p, const Coo& a, const std::string& field, const std::string& sym,
               const std::string& comment = "") {
  sla::write_mtx(p, a.n_rows, a.n_cols, a.row.data(), a.col.data(), static_cast<index_t>(a.row.size()),
                 a.values.empty() ? nullptr : a.values.data(), a.cvalues.empty() ? nullptr : a.cvalues.data(),
                 field, sym, comment);
}

std::string file_text(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST_F(MtxTest, WriteExactText) {
  const std::string p = path("w.mtx");
  write_coo(p, Coo{2, 3, {0, 1}, {2, 0}, {1.5, -0.1}, {}}, "real", "general", "first\n second\n");
  EXPECT_EQ(file_text(p),
            "%%MatrixMarket matrix coordinate real general\n%first\n% second\n2 3 2\n1 3 1.5\n"
            "2 1 -0.10000000000000001\n");
  write_coo(p, Coo{2, 2, {1}, {0}, {-7.0}, {}}, "integer", "symmetric");
  EXPECT_EQ(file_text(p), "%%MatrixMarket matrix coordinate integer symmetric\n2 2 1\n2 1 -7\n");
  write_coo(p, Coo{2, 2, {1, 1}, {0, 1}, {}, {}}, "pattern", "general");
  EXPECT_EQ(file_text(p), "%%MatrixMarket matrix coordinate pattern general\n2 2 2\n2 1\n2 2\n");
  write_coo(p, Coo{1, 1, {0}, {0}, {}, {cplx(0.5, -2)}}, "complex", "general");
  EXPECT_EQ(file_text(p), "%%MatrixMarket matrix coordinate complex general\n1 1 1\n1 1 0.5 -2\n");
}

TEST_F(MtxTest, RoundTripEveryFieldAndSymmetry) {
  const std::string p = path("rt.mtx");
  const std::vector<std::string> fields = {"real", "integer", "complex", "pattern"};
  const std::vector<std::string> syms = {"general", "symmetric", "skew-symmetric", "hermitian"};
  for (const auto& field : fields) {
    for (const auto& sym : syms) {
      if (sym == "hermitian" && field != "complex") continue;
      if (sym == "skew-symmetric" && field == "pattern") continue;
      SCOPED_TRACE(field + " " + sym);
      // A 4 x 4 lower triangle (strictly lower for skew), values chosen to survive the field.
      Coo a{4, 4, {}, {}, {}, {}};
      int k = 0;
      for (index_t j = 0; j < 4; ++j)
        for (index_t i = j; i < 4; ++i) {
          if (sym == "skew-symmetric" && i == j) continue;
          if ((i + j) % 3 == 1) continue;  // leave some holes
          a.row.push_back(i);
          a.col.push_back(j);
          const double re = field == "integer" ? k - 3 : 0.1 * k - 0.35;
          const double im = (sym == "hermitian" && i == j) ? 0.0 : 1.0 / (k + 3);
          if (field == "complex")
            a.cvalues.emplace_back(re, im);
          else if (field != "pattern")
            a.values.push_back(re);
          ++k;
        }
      write_coo(p, a, field, sym, "round trip");
      const auto d = sla::read_mtx(p);
      EXPECT_EQ(d.format, "coordinate");
      EXPECT_EQ(d.field, field);
      EXPECT_EQ(d.symmetry, sym);
      EXPECT_EQ(d.n_rows, 4);
      Entries want;
      for (size_t e = 0; e < a.row.size(); ++e) {
        const cplx v = field == "complex" ? a.cvalues[e] : field == "pattern" ? cplx(1.0) : cplx(a.values[e]);
        const index_t i = a.row[e], j = a.col[e];
        want[{i, j}] += v;
        if (i == j || sym == "general") continue;
        want[{j, i}] += sym == "symmetric" ? v : sym == "skew-symmetric" ? -v : std::conj(v);
      }
      EXPECT_EQ(entries(d), want);  // exact: 17 significant digits round-trip doubles
    }
  }
}

TEST_F(MtxTest, RoundTripRectangularAndEmpty) {
  const std::string p = path("rt.mtx");
  write_coo(p, Coo{3, 5, {}, {}, {}, {}}, "real", "general");
  auto d = sla::read_mtx(p);
  EXPECT_EQ(d.n_rows, 3);
  EXPECT_EQ(d.n_cols, 5);
  EXPECT_EQ(d.nnz(), 0);
  write_coo(p, Coo{3, 5, {2, 0}, {4, 0}, {1e-300, -1e300}, {}}, "real", "general");
  d = sla::read_mtx(p);
  EXPECT_EQ(d.values, (std::vector<double>{1e-300, -1e300}));
}

TEST_F(MtxTest, RoundTripLargeRandom) {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<index_t> ri(0, 999);
  std::normal_distribution<double> rv(0.0, 1e3);
  Coo a{1000, 1000, {}, {}, {}, {}};
  const int n = 200000;
  for (int k = 0; k < n; ++k) {
    a.row.push_back(ri(rng));
    a.col.push_back(ri(rng));
    a.values.push_back(rv(rng));
  }
  const std::string p = path("big.mtx");
  write_coo(p, a, "real", "general");
  const auto d = sla::read_mtx(p);
  EXPECT_EQ(d.row, a.row);
  EXPECT_EQ(d.col, a.col);
  EXPECT_EQ(d.values, a.values);
}

TEST_F(MtxTest, WriteRejectsBadArguments) {
  const std::string p = path("bad.mtx");
  expect_invalid([&] { write_coo(p, Coo{2, 2, {0}, {1}, {1.0}, {}}, "real", "symmetric"); }, "upper triangle");
  expect_invalid([&] { write_coo(p, Coo{2, 2, {1}, {1}, {1.0}, {}}, "real", "skew-symmetric"); },
                 "strict lower triangle");
  expect_invalid([&] { write_coo(p, Coo{2, 2, {0}, {0}, {}, {cplx(1, 1)}}, "complex", "hermitian"); },
                 "nonzero imaginary part");
  expect_invalid([&] { write_coo(p, Coo{2, 2, {0}, {0}, {1.5}, {}}, "integer", "general"); }, "not an integer");
  expect_invalid([&] { write_coo(p, Coo{2, 2, {0}, {0}, {NAN}, {}}, "integer", "general"); }, "not an integer");
  expect_invalid([&] { write_coo(p, Coo{2, 2, {2}, {0}, {1.0}, {}}, "real", "general"); },
                 "row: index 2 of entry 0 is out of range [0, 2)");
  expect_invalid([&] { write_coo(p, Coo{2, 2, {0}, {-1}, {1.0}, {}}, "real", "general"); }, "col: index -1");
  expect_invalid([&] { write_coo(p, Coo{2, 2, {0}, {0}, {1.0}, {}}, "float", "general"); },
                 "unknown Matrix Market field");
  expect_invalid([&] { write_coo(p, Coo{2, 2, {0}, {0}, {1.0}, {}}, "real", "upper"); },
                 "unknown Matrix Market symmetry");
  expect_invalid([&] { write_coo(p, Coo{2, 3, {0}, {0}, {1.0}, {}}, "real", "symmetric"); }, "must be square");
  expect_invalid([&] { write_coo(p, Coo{2, 2, {0}, {0}, {1.0}, {}}, "real", "hermitian"); },
                 "'hermitian' requires the 'complex' field");
  expect_invalid([&] { write_coo(p, Coo{2, 2, {0}, {0}, {}, {}}, "real", "general"); }, "needs real values");
  expect_invalid([&] { write_coo(p, Coo{2, 2, {0}, {0}, {1.0}, {}}, "complex", "general"); }, "needs complex values");
  expect_invalid([&] { write_coo(p, Coo{-1, 2, {}, {}, {}, {}}, "real", "general"); }, "negative size");
  EXPECT_FALSE(fs::exists(p));  // nothing is written when the arguments are rejected
}

TEST_F(MtxTest, WriteUnwritablePath) {
  const std::string p = path("no_such_dir/out.mtx");
  try {
    write_coo(p, Coo{1, 1, {0}, {0}, {1.0}, {}}, "real", "general");
    ADD_FAILURE() << "no error";
  } catch (const sla::Error& e) {
    EXPECT_EQ(e.kind(), sla::ErrorKind::MatrixMarket);
    EXPECT_NE(std::string(e.what()).find("cannot open the file for writing"), std::string::npos) << e.what();
  }
}

}  // namespace
