// Matrix Market reader and writer. The reader loads the whole file into one buffer and parses it in
// place: integers with std::from_chars, reals with std::from_chars where the library has it (strtod
// otherwise), so a file of millions of entries is read at memory speed.
#include "sla/mtx.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <complex>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "sla/errors.hpp"
#include "sla/interrupt.hpp"
#include "sla/types.hpp"

namespace sla {
namespace {

enum class Format { Coordinate, Array };
enum class Field { Real, Integer, Complex, Pattern };
enum class Symmetry { General, Symmetric, Skew, Hermitian };

constexpr const char* kBannerHint = "%%MatrixMarket matrix <coordinate|array> <field> <symmetry>";

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool parse_format(const std::string& s, Format& f) {
  if (s == "coordinate") return f = Format::Coordinate, true;
  if (s == "array") return f = Format::Array, true;
  return false;
}

bool parse_field(const std::string& s, Field& f) {
  if (s == "real") return f = Field::Real, true;
  if (s == "integer") return f = Field::Integer, true;
  if (s == "complex") return f = Field::Complex, true;
  if (s == "pattern") return f = Field::Pattern, true;
  return false;
}

bool parse_symmetry(const std::string& s, Symmetry& y) {
  if (s == "general") return y = Symmetry::General, true;
  if (s == "symmetric") return y = Symmetry::Symmetric, true;
  if (s == "skew-symmetric") return y = Symmetry::Skew, true;
  if (s == "hermitian") return y = Symmetry::Hermitian, true;
  return false;
}

inline bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

// Split `line` at blanks into at most `max` tokens stored in `out`; returns the number of tokens found,
// capped at max + 1 so that callers can tell "too many" apart without scanning the whole line.
int split(std::string_view line, std::string_view* out, int max) {
  const char* p = line.data();
  const char* end = p + line.size();
  int n = 0;
  while (true) {
    while (p < end && is_blank(*p)) ++p;
    if (p == end) return n;
    const char* b = p;
    while (p < end && !is_blank(*p)) ++p;
    if (n == max) return n + 1;
    out[n++] = std::string_view(b, static_cast<size_t>(p - b));
  }
}

// A signed decimal integer filling the whole token ("+" allowed).
bool parse_int(std::string_view t, index_t& out) {
  const char* b = t.data();
  const char* e = b + t.size();
  if (b != e && *b == '+') {
    ++b;
    if (b != e && *b == '-') return false;
  }
  if (b == e) return false;
  const auto r = std::from_chars(b, e, out);
  return r.ec == std::errc() && r.ptr == e;
}

// A real number filling the whole token; "nan" and "inf" are accepted. The token must be followed by a
// blank, a newline or the terminating NUL of the buffer (strtod relies on it).
bool parse_real(std::string_view t, double& out) {
  if (t.empty()) return false;
  const char* b = t.data();
  const char* e = b + t.size();
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
  const char* s = b;
  if (*s == '+') {
    ++s;
    if (s == e || *s == '-') return false;
  }
  const auto r = std::from_chars(s, e, out);
  if (r.ec == std::errc()) return r.ptr == e;
  if (r.ec != std::errc::result_out_of_range) return false;
  // Overflow or underflow: fall through to strtod, which rounds to +-inf or a (sub)normal value.
#endif
  char* stop = nullptr;
  out = std::strtod(b, &stop);
  return stop == e;
}

// A piece of the file quoted in an error message: at most 60 bytes of it, so that a huge token or line
// does not make a huge message. Bytes are kept as they are (the bindings decode them leniently).
std::string clip(std::string_view s) {
  constexpr size_t kMax = 60;
  if (s.size() <= kMax) return std::string(s);
  return std::string(s.substr(0, kMax)) + "... (" + std::to_string(s.size()) + " bytes)";
}

// Where the reader is, for error messages: "path:line: ...".
struct Where {
  const std::string& path;
  index_t line;
};

template <class... Args>
[[noreturn]] void bad(const Where& w, const Args&... args) {
  fail(ErrorKind::MatrixMarket, w.path, ":", w.line, ": ", args...);
}

// Reads the whole file into a NUL-terminated buffer.
std::string slurp(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr)
    fail(ErrorKind::MatrixMarket, path, ": cannot open the Matrix Market file (", std::strerror(errno), ")");
  std::string buf;
  size_t used = 0;
  size_t cap = 1 << 16;
  bool err = false;
  while (true) {
    poll_interrupt();
    buf.resize(used + cap);
    const size_t got = std::fread(&buf[used], 1, cap, f);
    used += got;
    if (got < cap) {
      err = std::ferror(f) != 0;
      break;
    }
    if (cap < (size_t{1} << 26)) cap *= 2;
  }
  const int saved = errno;
  std::fclose(f);
  if (err) fail(ErrorKind::MatrixMarket, path, ": cannot read the Matrix Market file (", std::strerror(saved), ")");
  buf.resize(used);
  return buf;  // std::string keeps a NUL after the last character
}

// Iterates over the lines of a buffer, counting them from 1.
class Lines {
 public:
  Lines(const char* begin, const char* end) : p_(begin), end_(end) {}

  bool next(std::string_view& line) {
    if (p_ >= end_) return false;
    const void* nl = std::memchr(p_, '\n', static_cast<size_t>(end_ - p_));
    const char* e = nl ? static_cast<const char*>(nl) : end_;
    line = std::string_view(p_, static_cast<size_t>(e - p_));
    p_ = nl ? e + 1 : end_;
    if ((++number_ & 4095) == 0) poll_interrupt();
    return true;
  }

  // The next line that is neither blank nor a '%' comment.
  bool next_data(std::string_view& line) {
    while (next(line)) {
      size_t i = 0;
      while (i < line.size() && is_blank(line[i])) ++i;
      if (i < line.size() && line[i] != '%') return true;
    }
    return false;
  }

  index_t number() const { return number_; }
  size_t remaining() const { return static_cast<size_t>(end_ - p_); }

 private:
  const char* p_;
  const char* end_;
  index_t number_ = 0;
};

const char* field_layout(Field f, Format fmt) {
  const bool coo = fmt == Format::Coordinate;
  switch (f) {
    case Field::Pattern: return "'row col'";
    case Field::Complex: return coo ? "'row col real imag'" : "'real imag'";
    default: return coo ? "'row col value'" : "'value'";
  }
}

// Parse the value tokens of one entry (one real/integer token, or two complex tokens).
void parse_value(const Where& w, Field field, const std::string_view* tok, double& re, double& im) {
  im = 0.0;
  if (field == Field::Pattern) {
    re = 1.0;
    return;
  }
  if (field == Field::Integer) {
    index_t v = 0;
    if (!parse_int(tok[0], v)) bad(w, "invalid integer value '", clip(tok[0]), "'");
    re = static_cast<double>(v);
    return;
  }
  if (!parse_real(tok[0], re)) bad(w, "invalid real value '", clip(tok[0]), "'");
  if (field == Field::Complex && !parse_real(tok[1], im)) bad(w, "invalid imaginary part '", clip(tok[1]), "'");
}

// Appends entries to the output, mirroring off-diagonal ones of a symmetric-like matrix.
struct Sink {
  MtxData& d;
  bool complex;
  Symmetry sym;

  void reserve(size_t n) {
    const size_t m = sym == Symmetry::General ? n : 2 * n;
    d.row.reserve(m);
    d.col.reserve(m);
    if (complex)
      d.cvalues.reserve(m);
    else
      d.values.reserve(m);
  }

  void push(index_t i, index_t j, double re, double im) {
    d.row.push_back(i);
    d.col.push_back(j);
    if (complex)
      d.cvalues.emplace_back(re, im);
    else
      d.values.push_back(re);
  }

  void add(index_t i, index_t j, double re, double im) {
    push(i, j, re, im);
    if (i == j || sym == Symmetry::General) return;
    if (sym == Symmetry::Symmetric) push(j, i, re, im);
    if (sym == Symmetry::Skew) push(j, i, -re, -im);
    if (sym == Symmetry::Hermitian) push(j, i, re, -im);
  }
};

// Checks shared by both formats on a stored entry at 0-based (i, j).
void check_triangle(const Where& w, Symmetry sym, index_t i, index_t j, double re, double im) {
  if (sym == Symmetry::General) return;
  const char* name = sym == Symmetry::Symmetric ? "symmetric" : sym == Symmetry::Skew ? "skew-symmetric" : "hermitian";
  if (i < j)
    bad(w, "entry (", i + 1, ", ", j + 1, ") lies in the upper triangle; a ", name,
        " matrix stores only its lower triangle (row >= col)");
  if (i == j && sym == Symmetry::Skew && (re != 0.0 || im != 0.0))
    bad(w, "skew-symmetric matrix has a nonzero diagonal entry at (", i + 1, ", ", j + 1, ")");
  if (i == j && sym == Symmetry::Hermitian && im != 0.0)
    bad(w, "hermitian matrix has a diagonal entry with a nonzero imaginary part at (", i + 1, ", ", j + 1, ")");
}

index_t parse_index(const Where& w, std::string_view tok, const char* what, index_t n) {
  index_t v = 0;
  if (!parse_int(tok, v)) bad(w, "invalid ", what, " index '", clip(tok), "'");
  if (v < 1 || v > n) bad(w, what, " index ", v, " is out of range 1..", n);
  return v - 1;
}

void read_coordinate(const std::string& path, Lines& lines, MtxData& d, Field field, Symmetry sym,
                     index_t declared, index_t size_line) {
  Sink sink{d, field == Field::Complex, sym};
  // Every entry takes at least 4 bytes ("1 1\n"): do not trust a huge declared count beyond that.
  sink.reserve(std::min<size_t>(static_cast<size_t>(declared), lines.remaining() / 4 + 1));
  const int expected = field == Field::Pattern ? 2 : field == Field::Complex ? 4 : 3;
  std::string_view tok[4];
  std::string_view line;
  index_t count = 0;
  while (lines.next_data(line)) {
    const Where w{path, lines.number()};
    if (count == declared)
      bad(w, "more entries than the ", declared, " declared on the size line (line ", size_line, ")");
    const int got = split(line, tok, 4);
    if (got != expected)
      bad(w, "expected ", expected, " values ", field_layout(field, Format::Coordinate), " on an entry line, got ",
          got > 4 ? "more than 4" : std::to_string(got));
    const index_t i = parse_index(w, tok[0], "row", d.n_rows);
    const index_t j = parse_index(w, tok[1], "column", d.n_cols);
    double re = 0.0, im = 0.0;
    parse_value(w, field, tok + 2, re, im);
    check_triangle(w, sym, i, j, re, im);
    sink.add(i, j, re, im);
    ++count;
  }
  if (count < declared)
    bad(Where{path, lines.number()}, "file ends after ", count, " of the ", declared,
        " entries declared on the size line (line ", size_line, "); is it truncated?");
}

void read_array(const std::string& path, Lines& lines, MtxData& d, Field field, Symmetry sym, index_t size_line) {
  const index_t m = d.n_rows, n = d.n_cols;
  index_t declared = 0;
  if (sym == Symmetry::General) {
    if (m > 0 && n > std::numeric_limits<index_t>::max() / m)
      bad(Where{path, size_line}, "array of ", m, " x ", n, " entries is too large");
    declared = m * n;
  } else {
    // n is square here; n (n +- 1) / 2 stored values, computed without overflow for any sane n.
    if (n > (index_t{1} << 31)) bad(Where{path, size_line}, "array of ", n, " x ", n, " entries is too large");
    declared = sym == Symmetry::Skew ? n * (n - 1) / 2 : n * (n + 1) / 2;
    if (n == 0) declared = 0;
  }
  Sink sink{d, field == Field::Complex, sym};
  // Every value takes at least 2 bytes ("0\n").
  sink.reserve(std::min<size_t>(static_cast<size_t>(declared), lines.remaining() / 2 + 1));
  const int expected = field == Field::Complex ? 2 : 1;
  // Values come column by column: rows 0..m-1 (general), j..n-1 (symmetric, hermitian) or j+1..n-1 (skew)
  // of column j. (i, j) is the position of the next value; it is only used while count < declared, so it
  // never needs to skip over empty columns (a loop over them would run once per column of the header,
  // 10^18 times for a "0 1000000000000000000" array).
  const index_t first_row_offset = sym == Symmetry::General ? -1 : sym == Symmetry::Skew ? 1 : 0;
  auto column_start = [&](index_t col) { return first_row_offset < 0 ? index_t{0} : col + first_row_offset; };
  index_t j = 0, i = column_start(0);
  std::string_view tok[2];
  std::string_view line;
  index_t count = 0;
  while (lines.next_data(line)) {
    const Where w{path, lines.number()};
    if (count == declared)
      bad(w, "more values than the ", declared, " expected for a ", m, " x ", n, " array (size line ", size_line,
          ")");
    const int got = split(line, tok, 2);
    if (got != expected)
      bad(w, "expected ", expected, " value", expected > 1 ? "s " : " ", field_layout(field, Format::Array),
          " on an array line, got ", got > 2 ? "more than 2" : std::to_string(got));
    double re = 0.0, im = 0.0;
    parse_value(w, field, tok, re, im);
    check_triangle(w, sym, i, j, re, im);
    sink.add(i, j, re, im);
    ++count;
    if (++i >= m) i = column_start(++j);
  }
  if (count < declared)
    bad(Where{path, lines.number()}, "file ends after ", count, " of the ", declared, " values of a ", m, " x ", n,
        " array (size line ", size_line, "); is it truncated?");
}

}  // namespace

MtxData read_mtx(const std::string& path) {
  const std::string buf = slurp(path);
  const char* begin = buf.data();
  const char* end = begin + buf.size();
  if (buf.size() >= 3 && std::memcmp(begin, "\xEF\xBB\xBF", 3) == 0) begin += 3;  // UTF-8 byte order mark
  Lines lines(begin, end);

  // Banner.
  std::string_view line;
  if (!lines.next(line)) bad(Where{path, 1}, "empty file; expected the banner '", kBannerHint, "'");
  const Where banner{path, 1};
  std::string_view tok[5];
  const int nb = split(line, tok, 5);
  if (nb == 0 || to_lower(tok[0]) != "%%matrixmarket")
    bad(banner, "missing Matrix Market banner; expected '", kBannerHint, "'");
  if (nb != 5) bad(banner, "malformed banner '", clip(line), "'; expected '", kBannerHint, "'");
  const std::string object = to_lower(tok[1]);
  if (object != "matrix") bad(banner, "unsupported object '", clip(tok[1]), "'; only 'matrix' is supported");
  MtxData d;
  d.format = to_lower(tok[2]);
  d.field = to_lower(tok[3]);
  d.symmetry = to_lower(tok[4]);
  Format format{};
  Field field{};
  Symmetry sym{};
  if (!parse_format(d.format, format))
    bad(banner, "unknown format '", clip(tok[2]), "'; expected 'coordinate' or 'array'");
  if (!parse_field(d.field, field))
    bad(banner, "unknown field '", clip(tok[3]), "'; expected 'real', 'integer', 'complex' or 'pattern'");
  if (!parse_symmetry(d.symmetry, sym))
    bad(banner, "unknown symmetry '", clip(tok[4]),
        "'; expected 'general', 'symmetric', 'skew-symmetric' or 'hermitian'");
  if (field == Field::Pattern && format == Format::Array)
    bad(banner, "the 'pattern' field cannot be used with the 'array' format");
  if (field == Field::Pattern && sym == Symmetry::Skew)
    bad(banner, "the 'pattern' field cannot be skew-symmetric (a pattern has no signs)");
  if (sym == Symmetry::Hermitian && field != Field::Complex)
    bad(banner, "'hermitian' symmetry requires the 'complex' field, not '", clip(tok[3]), "'");

  // Size line, after any comments and blank lines.
  const bool coo = format == Format::Coordinate;
  const char* size_hint = coo ? "'rows cols entries'" : "'rows cols'";
  if (!lines.next_data(line)) bad(Where{path, lines.number()}, "file ends before the size line ", size_hint);
  const Where size{path, lines.number()};
  const int want = coo ? 3 : 2;
  const int ns = split(line, tok, 3);
  if (ns != want) bad(size, "malformed size line '", clip(line), "'; expected ", size_hint);
  index_t dims[3] = {0, 0, 0};
  for (int k = 0; k < want; ++k)
    if (!parse_int(tok[k], dims[k]))
      bad(size, "invalid number '", clip(tok[k]), "' on the size line; expected ", size_hint);
  if (dims[0] < 0 || dims[1] < 0 || dims[2] < 0) bad(size, "negative size on the size line '", clip(line), "'");
  d.n_rows = dims[0];
  d.n_cols = dims[1];
  if (sym != Symmetry::General && d.n_rows != d.n_cols)
    bad(size, "a ", d.symmetry, " matrix must be square, got ", d.n_rows, " x ", d.n_cols);

  if (coo)
    read_coordinate(path, lines, d, field, sym, dims[2], size.line);
  else
    read_array(path, lines, d, field, sym, size.line);
  return d;
}

// ------------------------------------------------------------------------------------------------
// Writer

namespace {

// Buffers formatted text and flushes it to a FILE in large blocks.
class Writer {
 public:
  Writer(const std::string& path) : path_(path) {
    f_ = std::fopen(path.c_str(), "wb");
    if (f_ == nullptr)
      fail(ErrorKind::MatrixMarket, path, ": cannot open the file for writing (", std::strerror(errno), ")");
    buf_.reserve(kBlock + 256);
  }
  ~Writer() {
    if (f_ != nullptr) std::fclose(f_);
  }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void put(std::string_view s) {
    buf_.append(s.data(), s.size());
    if (buf_.size() >= kBlock) flush();
  }
  void put(char c) { buf_.push_back(c); }
  void put_int(long long v) {
    char tmp[24];
    const auto r = std::to_chars(tmp, tmp + sizeof(tmp), v);
    buf_.append(tmp, static_cast<size_t>(r.ptr - tmp));
  }
  // 17 significant digits ("%.17g"), independent of the C locale where std::to_chars supports doubles.
  void put_real(double v) {
    char tmp[48];
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
    if (std::isfinite(v)) {
      const auto r = std::to_chars(tmp, tmp + sizeof(tmp), v, std::chars_format::general, 17);
      buf_.append(tmp, static_cast<size_t>(r.ptr - tmp));
      return;
    }
#endif
    const int n = std::snprintf(tmp, sizeof(tmp), "%.17g", v);
    buf_.append(tmp, static_cast<size_t>(n));
  }
  void end_line() {
    buf_.push_back('\n');
    if (buf_.size() >= kBlock) flush();
  }

  void close() {
    flush();
    const int rc = std::fclose(f_);
    f_ = nullptr;
    if (rc != 0) fail(ErrorKind::MatrixMarket, path_, ": error while writing the file (", std::strerror(errno), ")");
  }

 private:
  static constexpr size_t kBlock = size_t{1} << 20;

  void flush() {
    if (buf_.empty()) return;
    if (std::fwrite(buf_.data(), 1, buf_.size(), f_) != buf_.size())
      fail(ErrorKind::MatrixMarket, path_, ": error while writing the file (", std::strerror(errno), ")");
    buf_.clear();
  }

  const std::string& path_;
  std::FILE* f_ = nullptr;
  std::string buf_;
};

bool is_integral(double v) {
  // Exactly representable in int64: [-2^63, 2^63).
  return std::isfinite(v) && std::floor(v) == v && v >= -9223372036854775808.0 && v < 9223372036854775808.0;
}

}  // namespace

void write_mtx(const std::string& path, index_t n_rows, index_t n_cols, const index_t* row, const index_t* col,
               index_t nnz, const double* values, const std::complex<double>* cvalues, const std::string& field_name,
               const std::string& symmetry_name, const std::string& comment) {
  Field field{};
  Symmetry sym{};
  if (!parse_field(field_name, field))
    fail(ErrorKind::InvalidArgument, "field: unknown Matrix Market field '", field_name,
         "' (expected 'real', 'integer', 'complex' or 'pattern')");
  if (!parse_symmetry(symmetry_name, sym))
    fail(ErrorKind::InvalidArgument, "symmetry: unknown Matrix Market symmetry '", symmetry_name,
         "' (expected 'general', 'symmetric', 'skew-symmetric' or 'hermitian')");
  if (n_rows < 0 || n_cols < 0)
    fail(ErrorKind::InvalidArgument, "shape: (", n_rows, ", ", n_cols, ") has a negative size");
  if (nnz < 0) fail(ErrorKind::InvalidArgument, "nnz: negative entry count ", nnz);
  if (sym != Symmetry::General && n_rows != n_cols)
    fail(ErrorKind::InvalidArgument, "symmetry: a ", symmetry_name, " matrix must be square, got ", n_rows, " x ",
         n_cols);
  if (sym == Symmetry::Hermitian && field != Field::Complex)
    fail(ErrorKind::InvalidArgument, "symmetry: 'hermitian' requires the 'complex' field, not '", field_name, "'");
  if (sym == Symmetry::Skew && field == Field::Pattern)
    fail(ErrorKind::InvalidArgument, "symmetry: the 'pattern' field cannot be skew-symmetric");
  if (nnz > 0 && (row == nullptr || col == nullptr))
    fail(ErrorKind::InvalidArgument, "row, col: missing index arrays for ", nnz, " entries");
  if (nnz > 0 && field == Field::Complex && cvalues == nullptr)
    fail(ErrorKind::InvalidArgument, "values: the 'complex' field needs complex values");
  if (nnz > 0 && (field == Field::Real || field == Field::Integer) && values == nullptr)
    fail(ErrorKind::InvalidArgument, "values: the '", field_name, "' field needs real values");

  for (index_t k = 0; k < nnz; ++k) {
    if ((k & 0xFFFF) == 0) poll_interrupt();
    const index_t i = row[k], j = col[k];
    if (i < 0 || i >= n_rows)
      fail(ErrorKind::InvalidArgument, "row: index ", i, " of entry ", k, " is out of range [0, ", n_rows, ")");
    if (j < 0 || j >= n_cols)
      fail(ErrorKind::InvalidArgument, "col: index ", j, " of entry ", k, " is out of range [0, ", n_cols, ")");
    if (sym != Symmetry::General && i < j)
      fail(ErrorKind::InvalidArgument, "entry ", k, " at (", i, ", ", j, ") is in the upper triangle; a ",
           symmetry_name, " matrix is written from its lower triangle (row >= col)");
    if (sym == Symmetry::Skew && i == j)
      fail(ErrorKind::InvalidArgument, "entry ", k, " at (", i, ", ", j,
           ") is on the diagonal; a skew-symmetric matrix is written from its strict lower triangle (row > col)");
    if (sym == Symmetry::Hermitian && i == j && cvalues[k].imag() != 0.0)
      fail(ErrorKind::InvalidArgument, "values: diagonal entry ", k, " at (", i, ", ", j,
           ") of a hermitian matrix has a nonzero imaginary part");
    if (field == Field::Integer && !is_integral(values[k]))
      fail(ErrorKind::InvalidArgument, "values: entry ", k, " at (", i, ", ", j, ") is ", values[k],
           ", not an integer as the 'integer' field requires");
  }

  Writer w(path);
  w.put("%%MatrixMarket matrix coordinate ");
  w.put(field_name);
  w.put(' ');
  w.put(symmetry_name);
  w.end_line();
  size_t start = 0;
  while (start < comment.size()) {
    size_t stop = comment.find('\n', start);
    if (stop == std::string::npos) stop = comment.size();
    std::string_view text(comment.data() + start, stop - start);
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    w.put('%');
    w.put(text);
    w.end_line();
    start = stop + 1;
  }
  w.put_int(n_rows);
  w.put(' ');
  w.put_int(n_cols);
  w.put(' ');
  w.put_int(nnz);
  w.end_line();
  for (index_t k = 0; k < nnz; ++k) {
    if ((k & 0xFFFF) == 0) poll_interrupt();  // an interrupt leaves a truncated file behind
    w.put_int(row[k] + 1);
    w.put(' ');
    w.put_int(col[k] + 1);
    switch (field) {
      case Field::Pattern: break;
      case Field::Integer:
        w.put(' ');
        w.put_int(static_cast<long long>(values[k]));
        break;
      case Field::Real:
        w.put(' ');
        w.put_real(values[k]);
        break;
      case Field::Complex:
        w.put(' ');
        w.put_real(cvalues[k].real());
        w.put(' ');
        w.put_real(cvalues[k].imag());
        break;
    }
    w.end_line();
  }
  w.close();
}

}  // namespace sla
