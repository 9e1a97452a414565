// A deterministic fuzz driver for the Matrix Market reader (no libFuzzer needed).
//
//   fuzz_mtx [CASES [SEED [FIRST [LIMIT_S]]]]    defaults: 3000 cases, seed 1, from case 0, 2 s per case
//
// Each case takes one of the built-in seed files (every format x field x symmetry), applies 1 to 4 random
// mutations (truncation, byte flips, inserted and deleted bytes, huge / negative / malformed sizes on
// the size line, invalid UTF-8, very long lines, duplicated lines, odd numbers), writes it to a
// temporary file and reads it with sla::read_mtx. The reader must either load it, with a result that
// keeps its own invariants, or throw sla::Error(MatrixMarket). Anything else fails the driver: another
// exception, a crash or sanitizer report (the process dies), or a case that takes longer than LIMIT_S
// (a watchdog ends the process). The failing case is printed with the seed and its number, and saved
// next to the temporary file. Case i of seed s is generated from (s, i) alone: `fuzz_mtx 1 s i` runs
// that case again.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "sla/errors.hpp"
#include "sla/mtx.hpp"

namespace fs = std::filesystem;

namespace {

const char* const kSeeds[] = {
    "%%MatrixMarket matrix coordinate real general\n% comment\n3 4 4\n1 1 1.5\n3 4 -2e3\n2 1 +0.25\n3 3 7\n",
    "%%MatrixMarket matrix coordinate integer symmetric\n3 3 3\n1 1 4\n2 1 -1\n3 2 2\n",
    "%%MatrixMarket matrix coordinate complex hermitian\n2 2 3\n1 1 5 0\n2 1 1 2\n2 2 -1 0\n",
    "%%MatrixMarket matrix coordinate pattern symmetric\n3 3 2\n1 1\n3 2\n",
    "%%MatrixMarket matrix coordinate pattern general\n2 3 2\n1 3\n2 1\n",
    "%%MatrixMarket matrix coordinate real skew-symmetric\n3 3 2\n2 1 3\n3 1 -1\n",
    "%%MatrixMarket matrix coordinate complex general\n2 2 2\n1 2 1.5 -2\n2 1 0 3\n",
    "%%MatrixMarket matrix coordinate complex skew-symmetric\n2 2 1\n2 1 1 2\n",
    "%%MatrixMarket matrix array real general\n% c\n2 3\n1\n2\n0\n4\n5\n6\n",
    "%%MatrixMarket matrix array integer symmetric\n3 3\n1\n2\n3\n4\n5\n6\n",
    "%%MatrixMarket matrix array integer skew-symmetric\n3 3\n1\n2\n3\n",
    "%%MatrixMarket matrix array complex hermitian\n2 2\n1 0\n2 3\n4 0\n",
    "%%MatrixMarket matrix array complex general\n1 2\n1 -1\n0 2\n",
    "%%MatrixMarket matrix array real symmetric\n0 0\n",
    "\xEF\xBB\xBF%%MatrixMarket  matrix\tcoordinate real general \r\n\r\n% c\r\n  2 2 2\r\n1\t1   3.0\r\n2 2 4",
};

const char* const kSizes[] = {"0",
                              "1",
                              "2",
                              "-1",
                              "+3",
                              "1000000000000000000",
                              "9223372036854775807",
                              "9223372036854775808",
                              "-9223372036854775808",
                              "2147483647",
                              "2147483648",
                              "4294967296",
                              "3037000500",
                              "99999999999999999999",
                              "1e3",
                              "0x10",
                              "",
                              "\xff"};

const char* const kNumbers[] = {
    "nan", "inf",      "-inf", "1e400", "-1e-400", "0x1p3",    "+-1", "1.5.2", "1,5", "99999999999999999999",
    "-0",  "4.9e-324", "1e",   ".",     "+",       "\xc3\xa9", "0"};

const char* const kBadUtf8[] = {"\xff", "\xfe", "\xc3", "\xed\xa0\x80", "\xc0\x80", "\xf8\x88\x80\x80\x80", "\x80"};

constexpr size_t kMaxCase = size_t{4} << 20;  // cases are cut to 4 MiB

using Rng = std::mt19937_64;

size_t pick(Rng& rng, size_t n) { return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng); }

// Start offsets of the lines of s (a line ends at '\n').
std::vector<size_t> line_starts(const std::string& s) {
  std::vector<size_t> out{0};
  for (size_t i = 0; i < s.size(); ++i)
    if (s[i] == '\n' && i + 1 < s.size()) out.push_back(i + 1);
  return out;
}

std::string line_at(const std::string& s, size_t start) {
  const size_t end = s.find('\n', start);
  return s.substr(start, end == std::string::npos ? std::string::npos : end + 1 - start);
}

// The first line after the banner that is not a comment or blank (the size line of a well-formed file).
size_t size_line_start(const std::string& s) {
  const std::vector<size_t> starts = line_starts(s);
  for (size_t k = 1; k < starts.size(); ++k) {
    const std::string l = line_at(s, starts[k]);
    const size_t first = l.find_first_not_of(" \t\r\n");
    if (first != std::string::npos && l[first] != '%') return starts[k];
  }
  return s.size();
}

std::string random_bytes(Rng& rng, size_t n) {
  static const std::string alphabet = std::string("0123456789 \t\n\r-+.eE%xX,") + '\0' + "\xff\xc3\x80";
  std::string out;
  for (size_t i = 0; i < n; ++i) out += alphabet[pick(rng, alphabet.size())];
  return out;
}

// Set the entry count of a coordinate size line to the number of data lines after it, so that cases with
// inserted, deleted or duplicated entries get past the count check to the entries themselves.
std::string recount(std::string& s) {
  const size_t at = size_line_start(s);
  if (at >= s.size()) return "recount(no size line)";
  const size_t end = s.find('\n', at) == std::string::npos ? s.size() : s.find('\n', at);
  const std::string line = s.substr(at, end - at);
  const size_t last = line.find_last_of(" \t");
  if (last == std::string::npos) return "recount(one token)";
  long long count = 0;
  for (size_t p = end; p < s.size();) {
    const size_t q = s.find('\n', p + 1);
    const std::string l = s.substr(p + 1, (q == std::string::npos ? s.size() : q) - p - 1);
    const size_t first = l.find_first_not_of(" \t\r");
    if (first != std::string::npos && l[first] != '%') ++count;
    if (q == std::string::npos) break;
    p = q;
  }
  s.replace(at + last + 1, line.size() - last - 1, std::to_string(count));
  return "recount " + std::to_string(count);
}

// Apply one random mutation to s; returns its name.
std::string mutate(Rng& rng, std::string& s) {
  switch (pick(rng, 11)) {
    case 10:
      return recount(s);
    case 0: {
      s.resize(pick(rng, s.size() + 1));
      return "truncate";
    }
    case 1: {
      const size_t flips = 1 + pick(rng, 4);
      for (size_t k = 0; k < flips && !s.empty(); ++k) s[pick(rng, s.size())] ^= static_cast<char>(1u << pick(rng, 8));
      return "flip";
    }
    case 2: {
      s.insert(pick(rng, s.size() + 1), random_bytes(rng, 1 + pick(rng, 8)));
      return "insert";
    }
    case 3: {
      if (s.empty()) return "delete(empty)";
      const size_t at = pick(rng, s.size());
      s.erase(at, 1 + pick(rng, std::min<size_t>(16, s.size() - at)));
      return "delete";
    }
    case 4: {
      // Replace the size line by 1 to 4 numbers taken from kSizes.
      const size_t at = size_line_start(s);
      const size_t end = std::min(s.size(), s.find('\n', at) == std::string::npos ? s.size() : s.find('\n', at));
      // Mostly as many numbers as the format wants (2 for array, 3 for coordinate), to reach the shape logic.
      std::string banner = s.substr(0, s.find('\n'));
      for (char& ch : banner) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      const size_t wanted = banner.find("array") != std::string::npos ? 2 : 3;
      std::string line;
      const size_t count = pick(rng, 4) == 0 ? 1 + pick(rng, 4) : wanted;
      for (size_t k = 0; k < count; ++k)  // "0" a quarter of the time: empty dimensions meet huge ones
        line += (k ? " " : "") + std::string(pick(rng, 4) == 0 ? "0" : kSizes[pick(rng, std::size(kSizes))]);
      s.replace(at, end - at, line);
      return "size line '" + line + "'";
    }
    case 5: {
      s.insert(pick(rng, s.size() + 1), kBadUtf8[pick(rng, std::size(kBadUtf8))]);
      return "invalid utf-8";
    }
    case 6: {
      // A very long line: digits (a huge number), blanks, or letters, inserted at a line start or anywhere.
      const size_t len = size_t{1000} << pick(rng, 11);  // 1e3 .. 1e6 bytes
      const char fill = "9 x0"[pick(rng, 4)];
      const std::vector<size_t> starts = line_starts(s);
      const size_t at = pick(rng, 2) ? starts[pick(rng, starts.size())] : pick(rng, s.size() + 1);
      s.insert(at, std::string(len, fill) + (pick(rng, 2) ? "\n" : ""));
      return "long line " + std::to_string(len);
    }
    case 7: {
      const std::vector<size_t> starts = line_starts(s);
      const size_t at = starts[pick(rng, starts.size())];
      std::string l = line_at(s, at);
      if (l.empty() || l.back() != '\n') l += '\n';
      const size_t times = size_t{1} << pick(rng, 11);  // 1 .. 1024 copies
      std::string copies;
      for (size_t k = 0; k < times && copies.size() < kMaxCase; ++k) copies += l;
      s.insert(at, copies);
      return "duplicate line x" + std::to_string(times);
    }
    case 8: {
      // Replace a token (a maximal run of non-blanks) by an odd number.
      if (s.empty()) return "number(empty)";
      size_t b = pick(rng, s.size());
      while (b > 0 && s[b - 1] != ' ' && s[b - 1] != '\n' && s[b - 1] != '\t') --b;
      size_t e = b;
      while (e < s.size() && s[e] != ' ' && s[e] != '\n' && s[e] != '\t') ++e;
      const std::string num = kNumbers[pick(rng, std::size(kNumbers))];
      s.replace(b, e - b, num);
      return "number '" + num + "'";
    }
    default: {
      // Swap a banner word for another valid one (format, field or symmetry mismatches).
      static const char* const words[] = {"coordinate", "array",      "real",           "integer",   "complex",
                                          "pattern",    "general",    "symmetric",      "hermitian", "skew-symmetric",
                                          "MATRIX",     "Coordinate", "%%MatrixMarket", "vector"};
      const size_t end = s.find('\n');
      const std::string banner = s.substr(0, end);
      std::vector<size_t> spaces;
      for (size_t i = 0; i < banner.size(); ++i)
        if (banner[i] == ' ' || banner[i] == '\t') spaces.push_back(i);
      if (spaces.empty()) return "banner(none)";
      const size_t w = 1 + pick(rng, spaces.size());  // the word after the chosen blank
      const size_t b = spaces[w - 1] + 1;
      const size_t e = w < spaces.size() ? spaces[w] : banner.size();
      const std::string word = words[pick(rng, std::size(words))];
      s.replace(b, e - b, word);
      return "banner word '" + word + "'";
    }
  }
}

// The invariants of a loaded matrix: consistent lengths, indices in range, one value array.
std::string check_loaded(const sla::MtxData& d) {
  if (d.n_rows < 0 || d.n_cols < 0) return "negative shape";
  if (d.row.size() != d.col.size()) return "row and col differ in length";
  const bool complex = d.field == "complex";
  const size_t nv = complex ? d.cvalues.size() : d.values.size();
  if (nv != d.row.size()) return "values and indices differ in length";
  if ((complex ? d.values.size() : d.cvalues.size()) != 0) return "both value arrays are filled";
  for (size_t k = 0; k < d.row.size(); ++k)
    if (d.row[k] < 0 || d.row[k] >= d.n_rows || d.col[k] < 0 || d.col[k] >= d.n_cols)
      return "entry " + std::to_string(k) + " out of range";
  return "";
}

std::string printable(const std::string& s, size_t max) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\n')
      out += "\\n\n";
    else if (c >= 32 && c < 127 && c != '\\')
      out += static_cast<char>(c);
    else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > max) out += "... (" + std::to_string(s.size()) + " bytes)";
  return out;
}

struct Case {
  std::string text;
  std::string how;
};

Case make_case(std::uint64_t seed, std::uint64_t index) {
  Rng rng(seed * 0x9E3779B97F4A7C15ull + index);
  Case c;
  const size_t which = pick(rng, std::size(kSeeds));
  c.text = kSeeds[which];
  c.how = "seed file " + std::to_string(which);
  const size_t n = 1 + pick(rng, 4);
  for (size_t k = 0; k < n; ++k) {
    c.how += ", " + mutate(rng, c.text);
    if (c.text.size() > kMaxCase) c.text.resize(kMaxCase);
  }
  if (pick(rng, 3) == 0) c.how += ", " + recount(c.text);  // often: let the entries themselves be read
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  const long long cases = argc > 1 ? std::atoll(argv[1]) : 3000;
  const std::uint64_t seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1;
  const long long first = argc > 3 ? std::atoll(argv[3]) : 0;
  const double limit_s = argc > 4 ? std::atof(argv[4]) : 2.0;
  const fs::path file = fs::temp_directory_path() / ("sla_fuzz_mtx_" + std::to_string(seed) + "_" +
                                                     std::to_string(std::random_device{}()) + ".mtx");
  const fs::path saved = fs::path(file).replace_extension(".failure.mtx");

  // Watchdog: a case that runs past the limit ends the process (a hang cannot be stopped from outside).
  std::atomic<long long> current{-1};
  std::atomic<long long> started_ms{0};
  std::atomic<bool> finished{false};
  auto now_ms = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  std::thread watchdog([&] {
    while (!finished.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const long long i = current.load();
      if (i >= 0 && now_ms() - started_ms.load() > static_cast<long long>(limit_s * 1000)) {
        std::fprintf(stderr, "fuzz_mtx: FAILED seed %llu case %lld: still reading after %.1f s (%s saved)\n",
                     static_cast<unsigned long long>(seed), i, limit_s, saved.string().c_str());
        std::error_code ec;
        fs::copy_file(file, saved, fs::copy_options::overwrite_existing, ec);
        std::fflush(stderr);
        std::_Exit(1);
      }
    }
  });

  long long loaded = 0, rejected = 0, failed = 0;
  for (long long i = first; i < first + cases; ++i) {
    const Case c = make_case(seed, static_cast<std::uint64_t>(i));
    {
      std::ofstream f(file, std::ios::binary | std::ios::trunc);
      f.write(c.text.data(), static_cast<std::streamsize>(c.text.size()));
    }
    std::string problem;
    started_ms = now_ms();
    current = i;
    try {
      const sla::MtxData d = sla::read_mtx(file.string());
      problem = check_loaded(d);
      ++loaded;
    } catch (const sla::Error& e) {
      if (e.kind() == sla::ErrorKind::MatrixMarket)
        ++rejected;
      else
        problem = std::string("sla::Error of another kind than MatrixMarket: ") + e.what();
    } catch (const std::exception& e) {
      problem = std::string("unexpected exception: ") + e.what();
    } catch (...) {
      problem = "unexpected exception of unknown type";
    }
    current = -1;
    if (!problem.empty()) {
      ++failed;
      std::error_code ec;
      fs::copy_file(file, saved, fs::copy_options::overwrite_existing, ec);
      std::fprintf(stderr, "fuzz_mtx: FAILED seed %llu case %lld (%s): %s\n%s\n(saved as %s)\n",
                   static_cast<unsigned long long>(seed), i, c.how.c_str(), problem.c_str(),
                   printable(c.text, 2000).c_str(), saved.string().c_str());
    }
  }
  finished = true;
  watchdog.join();
  std::error_code ec;
  fs::remove(file, ec);
  std::printf("fuzz_mtx: seed %llu, %lld cases: %lld loaded, %lld rejected with MatrixMarketError\n",
              static_cast<unsigned long long>(seed), cases, loaded, rejected);
  std::printf("fuzz_mtx: %lld passed, %lld failed\n", cases - failed, failed);
  return failed == 0 ? 0 : 1;
}
