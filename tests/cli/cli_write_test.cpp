// What `gilkeeper run` counts when its files cannot take more (a full disk,
// a file size limit), and when it makes them durable (--sync).
#include "cli_child.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <map>

using Json = nlohmann::json;
using namespace gk::test::cli;
using gk::test::read_file;

namespace {

int count_of(const std::string& text, const std::string& word) {
  int n = 0;
  for (auto at = text.find(word); at != std::string::npos; at = text.find(word, at + 1))
    ++n;
  return n;
}

} // namespace

TEST_CASE("with the output on a full disk no record counts as ok, the summary says how many were not written, and "
          "the run exits 1",
          "[cli][write]") {
  auto dir = gk::test::temp_dir();
  std::string job = write_nap_job(dir);
  write_file(dir + "/in.jsonl", mixed_input(400, "0"));
  std::string errors = dir + "/errors.jsonl", summary = dir + "/s.json";
  int status = run_cli({"run", job, "--input", dir + "/in.jsonl", "--output", "/dev/full", "--errors", errors,
                        "--summary-json", summary, "--progress", "never"},
                       dir + "/stderr.txt");
  std::string log = read_file(dir + "/stderr.txt");
  INFO(log);
  CHECK(status == 1);
  CHECK(log.find("writing the output file /dev/full failed: No space left on device") != std::string::npos);
  Json s = Json::parse(read_file(summary));
  CHECK(s["ok"] == 0);
  std::uint64_t not_written = s["not_written"];
  CHECK(not_written > 0);
  CHECK(s["records"].get<std::uint64_t>() == s["failed"].get<std::uint64_t>() + not_written);
  CHECK(lines_of(read_file(errors)).size() == s["failed"].get<std::size_t>());
  CHECK(log.find(std::to_string(not_written) + " not written") != std::string::npos);
}

TEST_CASE("a file size limit stops the run with whole lines and an ok count equal to the output's lines, and "
          "--resume then completes it",
          "[cli][write][resume]") {
  auto dir = gk::test::temp_dir();
  std::string job = write_nap_job(dir);
  // About 100 kB of results, few (short) errors.
  std::string input;
  for (int i = 1; i <= 4000; ++i)
    input += i % 1000 == 0 ? "not json\n" : "{\"id\": " + std::to_string(i) + "}\n";
  write_file(dir + "/in.jsonl", input);
  std::string in = dir + "/in.jsonl", out = dir + "/out.jsonl", summary = dir + "/s.json";
  REQUIRE(run_cli({"run", job, "--input", in, "--output", dir + "/base.jsonl", "--progress", "never"},
                  dir + "/base.stderr")
          == 3);

  // A limit of 32768 bytes per file (the errors and the summary stay below
  // it); the CLI ignores SIGXFSZ itself, so a write past it fails (EFBIG).
  int status = gk::test::run_command("prlimit --fsize=32768 " + std::string(GK_CLI_PATH) + " run " + job
                                     + " --input " + in + " --output " + out + " --summary-json " + summary
                                     + " --progress never 2> " + dir + "/limited.stderr");
  std::string log = read_file(dir + "/limited.stderr");
  INFO(log);
  CHECK(status == 1);
  CHECK(log.find("writing the output file " + out + " failed: File too large") != std::string::npos);
  std::string written = read_file(out);
  CHECK(written.size() <= 32768);
  REQUIRE(!written.empty());
  CHECK(written.back() == '\n');  // no torn line
  Json s = Json::parse(read_file(summary));
  CHECK(s["ok"].get<std::size_t>() == lines_of(written).size());
  CHECK(s["failed"].get<std::size_t>() == lines_of(read_file(out + ".errors.jsonl")).size());
  CHECK(s["not_written"].get<std::uint64_t>() > 0);
  CHECK(s["records"] == s["ok"].get<std::uint64_t>() + s["failed"].get<std::uint64_t>()
                           + s["not_written"].get<std::uint64_t>());

  // With room again, the rest.
  status = run_cli({"run", job, "--input", in, "--output", out, "--summary-json", summary, "--progress", "never",
                    "--resume"},
                   dir + "/resumed.stderr");
  INFO(read_file(dir + "/resumed.stderr"));
  CHECK(status == 3);
  CHECK(read_file(out) == read_file(dir + "/base.jsonl"));
  CHECK(read_file(out + ".errors.jsonl") == read_file(dir + "/base.jsonl.errors.jsonl"));
  Json all = Json::parse(read_file(summary));
  CHECK(all["records"] == 4000);
  CHECK(all["not_written"] == 0);
}

TEST_CASE("sync every:N, interval and off make the files durable on their cadence and write the same files",
          "[cli][write][sync]") {
  auto dir = gk::test::temp_dir();
  std::string job = write_nap_job(dir);
  write_file(dir + "/in.jsonl", mixed_input(500, "0"));  // 496 records
  // fdatasync calls counted with strace, when it can trace here.
  bool traced = gk::test::run_command("strace -o /dev/null true 2>/dev/null") == 0;
  if (!traced)
    WARN("strace cannot run here: the sync cadence is not counted, only the files compared");
  std::map<std::string, int> syncs;
  std::string first;
  for (std::string policy : {"every:100", "interval:1h", "off"}) {
    std::string out = dir + "/" + policy.substr(0, policy.find(':')) + ".jsonl";
    std::string cmd = std::string(traced ? "strace -f -qq -e trace=fdatasync -o " + out + ".trace " : "")
                      + GK_CLI_PATH + " run " + job + " --input " + dir + "/in.jsonl --output " + out
                      + " --progress never --sync " + policy + " 2> " + out + ".stderr";
    int status = gk::test::run_command(cmd);
    INFO(policy << ": " << read_file(out + ".stderr"));
    CHECK(status == 3);
    std::string files = read_file(out) + read_file(out + ".errors.jsonl");
    if (first.empty())
      first = files;
    CHECK(files == first);
    syncs[policy] = count_of(read_file(out + ".trace"), "fdatasync(");
  }
  if (traced) {
    INFO("fdatasync calls: every:100 " << syncs["every:100"] << ", interval:1h " << syncs["interval:1h"]
                                       << ", off " << syncs["off"]);
    // 496 lines: 4 syncs every 100 lines and one at the end, two files each.
    CHECK(syncs["every:100"] == 10);
    CHECK(syncs["interval:1h"] == 2);  // the end only
    CHECK(syncs["off"] == 0);
  }
}

TEST_CASE("a sync policy that does not parse is a usage error", "[cli][write][sync]") {
  auto dir = gk::test::temp_dir();
  std::string job = write_nap_job(dir);
  for (std::string bad : {"sometimes", "every:0", "every:x", "interval:5", "interval:-1s", "interval:0s"}) {
    INFO(bad);
    int status = run_cli({"run", job, "--input", "/dev/null", "--output", dir + "/out.jsonl", "--sync", bad},
                         dir + "/stderr.txt");
    CHECK(status == 2);
    CHECK(read_file(dir + "/stderr.txt").find("--sync") != std::string::npos);
  }
}
