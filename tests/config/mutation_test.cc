// Robustness: thousands of mutated copies of the example policies must each
// end in either a snapshot or a list of positioned errors - never a crash,
// an escaping exception, or an error without a place and a message.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "config/loader.h"
#include "tests/config/test_util.h"

namespace btnsd::config {
namespace {

namespace fs = std::filesystem;

std::string Mutate(const std::string& text, std::mt19937& rng) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  if (lines.empty()) lines.push_back("");
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  static const std::string kChars = ":-[]{}'\"#&*!|>,? \t0aZ/.@";
  int edits = 1 + static_cast<int>(pick(3));
  for (int e = 0; e < edits; ++e) {
    size_t i = pick(lines.size());
    switch (pick(6)) {
      case 0: lines.erase(lines.begin() + i); if (lines.empty()) lines.push_back(""); break;
      case 1: lines.insert(lines.begin() + i, lines[i]); break;
      case 2:
        if (!lines[i].empty()) lines[i][pick(lines[i].size())] = kChars[pick(kChars.size())];
        break;
      case 3: lines[i] = "  " + lines[i]; break;
      case 4: lines[i] = lines[i].substr(0, lines[i].empty() ? 0 : pick(lines[i].size())); break;
      case 5: std::swap(lines[i], lines[pick(lines.size())]); break;
    }
  }
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

TEST(MutationTest, MutatedExamplesNeverCrashAndAlwaysExplain) {
  testing::ScratchDir dir("mutation");
  fs::path src = fs::path(std::getenv("TEST_SRCDIR")) /
                 std::getenv("TEST_WORKSPACE") / "config/examples";
  fs::path ex = fs::path(dir.path()) / "examples";
  fs::copy(src, ex, fs::copy_options::recursive);
  for (auto& f : fs::recursive_directory_iterator(ex))
    fs::permissions(f.path(), fs::perms::owner_write, fs::perm_options::add);
  fs::permissions(ex / "psk.secrets", fs::perms::owner_read | fs::perms::owner_write);

  std::mt19937 rng(5386);
  int runs = 0, accepted = 0, rejected = 0;
  auto start = std::chrono::steady_clock::now();
  for (auto& f : fs::directory_iterator(ex)) {
    if (f.path().extension() != ".yaml") continue;
    std::ifstream in(f.path());
    std::string original((std::istreambuf_iterator<char>(in)), {});
    for (int i = 0; i < 400; ++i) {
      std::string mutant = Mutate(original, rng);
      fs::path p = ex / "mutant.yaml";
      std::ofstream(p, std::ios::trunc) << mutant;
      LoadResult r = LoadConfigFile(p.string());
      ++runs;
      if (r.ok()) {
        ++accepted;
        EXPECT_TRUE(r.errors.empty());
        continue;
      }
      ++rejected;
      ASSERT_FALSE(r.errors.empty()) << mutant;
      for (const auto& e : r.errors) {
        EXPECT_FALSE(e.file.empty()) << mutant;
        EXPECT_FALSE(e.message.empty()) << mutant;
        EXPECT_EQ(e.message.find("internal error"), std::string::npos)
            << e.ToString() << "\n" << mutant;
        EXPECT_GE(e.line, 0);
      }
    }
  }
  double seconds = std::chrono::duration<double>(
                       std::chrono::steady_clock::now() - start).count();
  std::printf("mutation runs: %d (accepted %d, rejected %d) in %.2f s\n", runs,
              accepted, rejected, seconds);
  EXPECT_EQ(runs, 6 * 400);
  EXPECT_GT(rejected, 0);
  EXPECT_GT(accepted, 0);
}

}  // namespace
}  // namespace btnsd::config
