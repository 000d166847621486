// The CLI's pipeline settings: batch_size, parallelism with workers,
// --workers, --progress.
#include "../support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>

using Json = nlohmann::json;

namespace {

const std::string kData = std::string(GK_TEST_DATA_DIR) + "/cli/";

std::string job(const std::string& runtime, const std::string& stage_extra) {
  return "[python]\npath = [\"" + kData + "\"]\n" + runtime +
         "\n[[stage]]\nname = \"tok\"\ncall = \"gk_cli_stages:identity\"\n" + stage_extra;
}

struct Run {
  int status;
  std::string out, err;
};

Run run(const std::string& job_text, const std::string& flags, int records = 60) {
  auto dir = gk::test::temp_dir();
  std::ofstream(dir + "/job.toml") << job_text;
  std::ofstream in(dir + "/in.jsonl");
  for (int i = 1; i <= records; ++i)
    in << "{\"id\": " << i << "}\n";
  in.close();
  std::string errfile = dir + "/stderr.txt";
  int status = gk::test::run_command(std::string(GK_CLI_PATH) + " run " + dir + "/job.toml --input " + dir +
                                         "/in.jsonl --output " + dir + "/out.jsonl " + flags + " 2> " + errfile,
                                     nullptr);
  return {status, gk::test::read_file(dir + "/out.jsonl"), gk::test::read_file(errfile)};
}

std::vector<Json> lines(const std::string& text) {
  std::vector<Json> out;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    out.push_back(Json::parse(text.substr(start, end - start)));
    start = end == std::string::npos ? text.size() : end + 1;
  }
  return out;
}

} // namespace

TEST_CASE("batch_size and parallelism give the same output, in input order", "[cli][pipeline]") {
  auto plain = run(job("", ""), "--progress never");
  REQUIRE(plain.status == 0);
  auto batched = run(job("", "batch_size = 8\nparallelism = 2\n"), "--progress never");
  INFO(batched.err);
  REQUIRE(batched.status == 0);
  CHECK(lines(batched.out) == lines(plain.out));
  REQUIRE(lines(plain.out).size() == 60);
  CHECK(lines(plain.out)[59]["line"] == 60);
}

TEST_CASE("the workers flag runs several worker processes and needs process isolation", "[cli][pipeline][process]") {
  auto ok = run(job("[runtime]\nisolation = \"process\"\n", "parallelism = 2\n"), "--workers 2 --progress never");
  INFO(ok.err);
  CHECK(ok.status == 0);
  CHECK(lines(ok.out).size() == 60);
  auto refused = run(job("", ""), "--workers 2 --progress never");
  CHECK(refused.status == 2);
  CHECK(refused.err.find("needs isolation = \"process\"") != std::string::npos);
}

TEST_CASE("progress always prints progress lines and never prints none", "[cli][progress]") {
  auto always = run(job("", ""), "--progress always");
  CHECK(always.status == 0);
  CHECK(always.err.find("gilkeeper: progress: 60/60") != std::string::npos);
  auto never = run(job("", ""), "--progress never");
  CHECK(never.err.find("progress:") == std::string::npos);
}
