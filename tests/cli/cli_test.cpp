// The command line: `gilkeeper run` over JSONL (results, errors file, summary,
// deadlines, JSON edges), `gilkeeper check`, `--version`, exit statuses.
// Each test runs the built CLI as a subprocess in a fresh temporary directory.
#include "../support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;

namespace {

const std::string kData = std::string(GK_TEST_DATA_DIR) + "/cli/";

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

struct CliResult {
  int status = -1;
  std::string out;
  std::string err;
  double seconds = 0;
};

// Runs `gilkeeper <args>` in `dir` (stdin from `stdin_file` when given).
CliResult run_cli(const std::string& dir, const std::string& args, const std::string& stdin_file = "") {
  std::string cmd = "cd " + shell_quote(dir) + " && PYTHONDONTWRITEBYTECODE=1 " + shell_quote(GK_CLI_PATH) + " "
                    + args + (stdin_file.empty() ? " < /dev/null" : " < " + shell_quote(stdin_file))
                    + " > cli.stdout 2> cli.stderr";
  CliResult r;
  auto t0 = std::chrono::steady_clock::now();
  r.status = gk::test::run_command(cmd);
  r.seconds = gk::test::ms_since(t0) / 1000.0;
  r.out = gk::test::read_file(dir + "/cli.stdout");
  r.err = gk::test::read_file(dir + "/cli.stderr");
  return r;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Every line of a JSONL text, parsed (an unparsable line fails the test).
std::vector<Json> jsonl(const std::string& text) {
  std::vector<Json> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    INFO("line: " << line);
    REQUIRE_NOTHROW(lines.push_back(Json::parse(line)));
  }
  return lines;
}

Json error_record(int line, Json input, const std::string& code, const std::string& phase,
                  const std::string& stage, const std::string& type, const std::string& message,
                  const std::string& traceback = "") {
  return Json{{"line", line},
              {"input", std::move(input)},
              {"error",
               {{"code", code},
                {"phase", phase},
                {"stage", stage},
                {"type", type},
                {"message", message},
                {"traceback", traceback}}}};
}

// The pipeline sample: good lines, a blank line, a malformed line, and
// record 13, which makes the second stage raise.
const char* kSample = "{\"id\": 1, \"text\": \"the quick brown fox\"}\n"
                      "{\"id\": 2, \"text\": \"jumps\"}\n"
                      "\n"
                      "{\"id\": 3, \"text\": oops}\n"
                      "{\"id\": 13, \"text\": \"unlucky thirteen\"}\n"
                      "   \n"
                      "{\"id\": 4, \"text\": \"\"}";  // no final newline

} // namespace

TEST_CASE("a run writes good records to the output and bad ones to the errors file, in input order, and exits 3", "[cli]") {
  auto dir = gk::test::temp_dir();
  write_file(dir + "/in.jsonl", kSample);
  auto r = run_cli(dir, "run " + shell_quote(kData + "pipeline.toml") + " --input in.jsonl --output out.jsonl");
  INFO("stderr: " << r.err);
  CHECK(r.status == 3);
  CHECK(r.out.empty());

  auto out = jsonl(gk::test::read_file(dir + "/out.jsonl"));
  std::vector<Json> expected_out = {
      Json{{"line", 1}, {"value", {{"id", 1}, {"count", 4}}}},
      Json{{"line", 2}, {"value", {{"id", 2}, {"count", 1}}}},
      Json{{"line", 7}, {"value", {{"id", 4}, {"count", 0}}}},
  };
  CHECK(out == expected_out);

  auto errors = jsonl(gk::test::read_file(dir + "/out.jsonl.errors.jsonl"));
  REQUIRE(errors.size() == 2);
  CHECK(errors[0]
        == error_record(4, "{\"id\": 3, \"text\": oops}", "bad_input", "", "", "",
                        "not JSON: parse error at column 19: syntax error while parsing value - "
                        "invalid literal; last read: '\"text\": o'"));
  // The traceback is Python's; check that it names the function.
  std::string traceback = errors[1]["error"]["traceback"].get<std::string>();
  CHECK(traceback.find("in count_words") != std::string::npos);
  CHECK(traceback.find("ValueError: unlucky record 13") != std::string::npos);
  CHECK(errors[1]
        == error_record(5, Json{{"id", 13}, {"text", "unlucky thirteen"}}, "python_exception", "", "count",
                        "ValueError", "unlucky record 13", traceback));

  // The human summary.
  CHECK(r.err.find("5 records") != std::string::npos);
  CHECK(r.err.find("3 ok, 2 failed") != std::string::npos);
  CHECK(r.err.find("bad_input 1, python_exception 1") != std::string::npos);
  CHECK(r.err.find("stage \"tokenize\"") != std::string::npos);
  CHECK(r.err.find("out.jsonl.errors.jsonl") != std::string::npos);
}

TEST_CASE("an all-good run exits 0, leaves an empty errors file and writes the summary JSON", "[cli]") {
  auto dir = gk::test::temp_dir();
  write_file(dir + "/in.jsonl", "{\"id\": 1, \"text\": \"a b\"}\n\n{\"id\": 2, \"text\": \"c\"}\n");
  auto r = run_cli(dir, "run " + shell_quote(kData + "pipeline.toml")
                            + " --input in.jsonl --output out.jsonl --errors bad.jsonl --summary-json summary.json");
  INFO("stderr: " << r.err);
  CHECK(r.status == 0);
  CHECK(fs::exists(dir + "/bad.jsonl"));
  CHECK(fs::file_size(dir + "/bad.jsonl") == 0);
  CHECK(jsonl(gk::test::read_file(dir + "/out.jsonl")).size() == 2);

  Json summary = Json::parse(gk::test::read_file(dir + "/summary.json"));
  std::vector<std::string> keys;
  for (auto& [k, v] : summary.items())
    keys.push_back(k);
  // The contract's keys, in order, and the documented additions.
  CHECK(keys == std::vector<std::string>{"records", "ok", "failed", "by_code", "elapsed_s", "workers_restarted",
                                         "workers_restarted_by_cause", "deadline_misses", "interrupted",
                                         "capability_denials", "stages", "nodes", "not_written", "resumed"});
  CHECK(summary["records"] == 2);
  CHECK(summary["ok"] == 2);
  CHECK(summary["failed"] == 0);
  CHECK(summary["by_code"] == Json::object());
  CHECK(summary["elapsed_s"].is_number());
  CHECK(summary["elapsed_s"].get<double>() >= 0.0);
  CHECK(summary["workers_restarted"] == 0);
  REQUIRE(summary["stages"].size() == 2);
  for (const char* stage : {"tokenize", "count"}) {
    auto& s = summary["stages"][stage];
    CHECK(s["calls"] == 2);
    CHECK(s["p50_ms"].get<double>() > 0.0);
    CHECK(s["p99_ms"].get<double>() >= s["p50_ms"].get<double>());
  }
}

TEST_CASE("the summary JSON counts failures by code", "[cli]") {
  auto dir = gk::test::temp_dir();
  write_file(dir + "/in.jsonl", kSample);
  auto r = run_cli(dir, "run " + shell_quote(kData + "pipeline.toml")
                            + " --input in.jsonl --output out.jsonl --summary-json s.json");
  CHECK(r.status == 3);
  Json summary = Json::parse(gk::test::read_file(dir + "/s.json"));
  CHECK(summary["records"] == 5);
  CHECK(summary["ok"] == 3);
  CHECK(summary["failed"] == 2);
  CHECK(summary["by_code"] == Json{{"bad_input", 1}, {"python_exception", 1}});
  CHECK(summary["stages"]["tokenize"]["calls"] == 4);
  CHECK(summary["stages"]["count"]["calls"] == 4);
}

TEST_CASE("a job file with an unknown key exits 2 and names file, line and column", "[cli]") {
  auto dir = gk::test::temp_dir();
  auto job = kData + "bad_key.toml";
  auto r = run_cli(dir, "run " + shell_quote(job));
  CHECK(r.status == 2);
  CHECK(r.err.find("gilkeeper: " + job + ":8:1: stage[0].tmeout: unknown key \"tmeout\"") != std::string::npos);
  CHECK_FALSE(fs::exists(dir + "/errors.jsonl"));

  auto c = run_cli(dir, "check " + shell_quote(job));
  CHECK(c.status == 2);
  CHECK(c.err.find(job + ":8:1:") != std::string::npos);
}

TEST_CASE("a job without stages is a config error naming the file", "[cli]") {
  auto dir = gk::test::temp_dir();
  auto job = kData + "no_stages.toml";
  auto r = run_cli(dir, "run " + shell_quote(job));
  CHECK(r.status == 2);
  CHECK(r.err.find("gilkeeper: " + job + ": a job needs at least one [[stage]]") != std::string::npos);
  CHECK(run_cli(dir, "check " + shell_quote(job)).status == 2);
}

TEST_CASE("check accepts a good job and rejects one whose stage function does not exist, naming the stage", "[cli]") {
  auto dir = gk::test::temp_dir();
  auto good = run_cli(dir, "check " + shell_quote(kData + "pipeline.toml"));
  INFO("stdout: " << good.out << "\nstderr: " << good.err);
  CHECK(good.status == 0);
  CHECK(good.out.find("stage \"tokenize\" (gk_cli_stages:tokenize): ok") != std::string::npos);
  CHECK(good.out.find("stage \"count\" (gk_cli_stages:count_words): ok") != std::string::npos);

  auto bad = run_cli(dir, "check " + shell_quote(kData + "missing_function.toml"));
  INFO("stdout: " << bad.out << "\nstderr: " << bad.err);
  CHECK(bad.status == 2);
  CHECK(bad.out.find("stage \"tokenize\" (gk_cli_stages:tokenize): ok") != std::string::npos);
  CHECK(bad.out.find("stage \"vanished\" (gk_cli_stages:no_such_function): AttributeError") != std::string::npos);
  CHECK(bad.out.find("stage \"constant\" (gk_cli_stages:NOT_CALLABLE): bad_request: "
                     "gk_cli_stages:NOT_CALLABLE is not callable (its type is int)")
        != std::string::npos);
}

TEST_CASE("run refuses a job whose stage does not resolve before reading any record", "[cli]") {
  auto dir = gk::test::temp_dir();
  write_file(dir + "/in.jsonl", "{\"id\": 1, \"text\": \"a\"}\n");
  auto r = run_cli(dir, "run " + shell_quote(kData + "missing_function.toml") + " --input in.jsonl");
  CHECK(r.status == 2);
  CHECK(r.err.find("stage \"vanished\"") != std::string::npos);
  CHECK(r.out.empty());
  CHECK_FALSE(fs::exists(dir + "/errors.jsonl"));
}

TEST_CASE("gilkeeper --version prints the project version", "[cli]") {
  // The version is the one in the top-level CMakeLists.txt.
  std::string cmake = gk::test::read_file(std::string(GK_SOURCE_DIR) + "/CMakeLists.txt");
  std::smatch m;
  REQUIRE(std::regex_search(cmake, m, std::regex(R"(project\(gilkeeper VERSION ([0-9.]+))")));
  auto r = run_cli(gk::test::temp_dir(), "--version");
  CHECK(r.status == 0);
  CHECK(r.out == "gilkeeper " + m[1].str() + "\n");
}

TEST_CASE("usage errors exit 2", "[cli]") {
  auto dir = gk::test::temp_dir();
  CHECK(run_cli(dir, "").status == 2);
  CHECK(run_cli(dir, "run").status == 2);
  CHECK(run_cli(dir, "run " + shell_quote(kData + "pipeline.toml") + " --no-such-flag").status == 2);
  auto missing = run_cli(dir, "run " + shell_quote(kData + "pipeline.toml") + " --input no_such.jsonl");
  CHECK(missing.status == 2);
  CHECK(missing.err.find("no_such.jsonl") != std::string::npos);
  CHECK(run_cli(dir, "frobnicate").status == 2);
}

TEST_CASE("a record that outlives its stage timeout fails with deadline_exceeded soft while its neighbours succeed", "[cli][deadline]") {
  auto dir = gk::test::temp_dir();
  write_file(dir + "/in.jsonl", "{\"id\": 1}\n{\"id\": 2, \"sleep\": 5}\n{\"id\": 3}\n{\"id\": 4, \"sleep\": 0.01}\n");
  auto r = run_cli(dir, "run " + shell_quote(kData + "sleepy.toml") + " --input in.jsonl --output out.jsonl");
  INFO("stderr: " << r.err);
  CHECK(r.status == 3);
  CHECK(r.seconds < 2.5);
  std::vector<Json> expected_out = {Json{{"line", 1}, {"value", 1}}, Json{{"line", 3}, {"value", 3}},
                                    Json{{"line", 4}, {"value", 4}}};
  CHECK(jsonl(gk::test::read_file(dir + "/out.jsonl")) == expected_out);
  auto errors = jsonl(gk::test::read_file(dir + "/out.jsonl.errors.jsonl"));
  REQUIRE(errors.size() == 1);
  CHECK(errors[0]["line"] == 2);
  CHECK(errors[0]["input"] == Json{{"id", 2}, {"sleep", 5}});
  CHECK(errors[0]["error"]["code"] == "deadline_exceeded");
  CHECK(errors[0]["error"]["phase"] == "soft");
  CHECK(errors[0]["error"]["stage"] == "nap");
  CHECK(r.err.find("deadline misses: queued 0, soft 1, hard 0") != std::string::npos);
}

TEST_CASE("the errors file defaults to <output>.errors.jsonl, or ./errors.jsonl when the output is stdout", "[cli]") {
  auto dir = gk::test::temp_dir();
  write_file(dir + "/in.jsonl", "{\"id\": 1, \"text\": \"a\"}\nnot json\n");

  SECTION("output to a file") {
    auto r = run_cli(dir, "run " + shell_quote(kData + "pipeline.toml") + " --input in.jsonl --output res.jsonl");
    CHECK(r.status == 3);
    CHECK(jsonl(gk::test::read_file(dir + "/res.jsonl")).size() == 1);
    auto errors = jsonl(gk::test::read_file(dir + "/res.jsonl.errors.jsonl"));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0]["line"] == 2);
    CHECK(errors[0]["input"] == "not json");
    CHECK_FALSE(fs::exists(dir + "/errors.jsonl"));
  }
  SECTION("output to stdout, records from stdin") {
    auto r = run_cli(dir, "run " + shell_quote(kData + "pipeline.toml"), dir + "/in.jsonl");
    CHECK(r.status == 3);
    CHECK(jsonl(r.out) == std::vector<Json>{Json{{"line", 1}, {"value", {{"id", 1}, {"count", 1}}}}});
    auto errors = jsonl(gk::test::read_file(dir + "/errors.jsonl"));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0]["error"]["code"] == "bad_input");
    CHECK(r.err.find(dir + "/errors.jsonl") != std::string::npos);
  }
  SECTION("an explicit --errors wins") {
    auto r = run_cli(dir, "run " + shell_quote(kData + "pipeline.toml")
                              + " --input - --output - --errors mine.jsonl", dir + "/in.jsonl");
    CHECK(r.status == 3);
    CHECK(jsonl(gk::test::read_file(dir + "/mine.jsonl")).size() == 1);
    CHECK_FALSE(fs::exists(dir + "/errors.jsonl"));
  }
}

TEST_CASE("NaN and inf results are conversion errors naming where they sit, bytes become base64", "[cli][json]") {
  auto dir = gk::test::temp_dir();
  write_file(dir + "/in.jsonl", "{\"kind\": \"nan\"}\n"
                                "{\"kind\": \"bytes\"}\n"
                                "{\"kind\": \"inf\"}\n"
                                "{\"kind\": \"object\"}\n"
                                "{\"kind\": 2.5}\n");
  auto r = run_cli(dir, "run " + shell_quote(kData + "special.toml") + " --input in.jsonl --output out.jsonl");
  CHECK(r.status == 3);
  std::vector<Json> expected_out = {
      Json{{"line", 2}, {"value", {{"raw", {{"__bytes__", "aGkA/w=="}}}}}},
      Json{{"line", 5}, {"value", 2.5}},
  };
  CHECK(jsonl(gk::test::read_file(dir + "/out.jsonl")) == expected_out);
  auto errors = jsonl(gk::test::read_file(dir + "/out.jsonl.errors.jsonl"));
  REQUIRE(errors.size() == 3);
  CHECK(errors[0] == error_record(1, Json{{"kind", "nan"}}, "conversion", "", "special", "",
                                  "result[\"score\"]: NaN has no JSON form"));
  CHECK(errors[1] == error_record(3, Json{{"kind", "inf"}}, "conversion", "", "special", "",
                                  "result[1]: -inf has no JSON form"));
  CHECK(errors[2]["line"] == 4);
  CHECK(errors[2]["error"]["code"] == "conversion");
  CHECK(errors[2]["error"]["stage"] == "special");
}

TEST_CASE("input the runtime cannot take is bad_input, shown verbatim in the errors file", "[cli][json]") {
  auto dir = gk::test::temp_dir();
  write_file(dir + "/in.jsonl", "[1, 18446744073709551615]\n"
                                "{\"a\": 123456789012345678901234567890}\n"
                                "{\"x\": 1e400}\n"
                                "{\"kind\": \"x\", \"kind\": \"last wins\"}\n");
  auto r = run_cli(dir, "run " + shell_quote(kData + "special.toml") + " --input in.jsonl --output out.jsonl");
  CHECK(r.status == 3);
  CHECK(jsonl(gk::test::read_file(dir + "/out.jsonl"))
        == std::vector<Json>{Json{{"line", 4}, {"value", "last wins"}}});
  std::string errors_text = gk::test::read_file(dir + "/out.jsonl.errors.jsonl");
  // Verbatim: the big integers keep every digit.
  CHECK(errors_text.find("\"input\":[1, 18446744073709551615]") != std::string::npos);
  CHECK(errors_text.find("\"input\":{\"a\": 123456789012345678901234567890}") != std::string::npos);
  auto errors = jsonl(errors_text);
  REQUIRE(errors.size() == 3);
  CHECK(errors[0]["error"]["code"] == "bad_input");
  CHECK(errors[0]["error"]["message"] == "input[1]: integer 18446744073709551615 is beyond int64");
  CHECK(errors[1]["error"]["message"] == "input[\"a\"]: integer 123456789012345678901234567890 is beyond int64");
  CHECK(errors[2]["input"] == "{\"x\": 1e400}");
  CHECK(errors[2]["error"]["message"] == "not JSON: number overflow parsing '1e400' (at column 11)");
}

TEST_CASE("what Python prints goes to stderr, never among the results", "[cli]") {
  auto dir = gk::test::temp_dir();
  write_file(dir + "/in.jsonl", "{\"id\": 1}\n");
  auto r = run_cli(dir, "run " + shell_quote(kData + "printing.toml"), dir + "/in.jsonl");
  CHECK(r.status == 0);
  CHECK(jsonl(r.out) == std::vector<Json>{Json{{"line", 1}, {"value", {{"id", 1}}}}});
  CHECK(r.err.find("hello from Python") != std::string::npos);
}

TEST_CASE("an empty input is a successful run with empty output and errors files", "[cli]") {
  auto dir = gk::test::temp_dir();
  write_file(dir + "/in.jsonl", "\n\n");
  auto r = run_cli(dir, "run " + shell_quote(kData + "pipeline.toml") + " --input in.jsonl --output out.jsonl");
  CHECK(r.status == 0);
  CHECK(fs::exists(dir + "/out.jsonl"));
  CHECK(fs::file_size(dir + "/out.jsonl") == 0);
  CHECK(fs::exists(dir + "/out.jsonl.errors.jsonl"));
  CHECK(fs::file_size(dir + "/out.jsonl.errors.jsonl") == 0);
  CHECK(r.err.find("0 records") != std::string::npos);
}

TEST_CASE("the example enrichment job runs: malformed lines and raising records go to the errors file", "[cli][examples]") {
  auto dir = gk::test::temp_dir();
  std::string jobs = std::string(GK_SOURCE_DIR) + "/examples/jobs/";
  CHECK(run_cli(dir, "check " + shell_quote(jobs + "enrich.toml")).status == 0);
  auto r = run_cli(dir, "run " + shell_quote(jobs + "enrich.toml") + " --input " + shell_quote(jobs + "records.jsonl")
                            + " --output enriched.jsonl --summary-json summary.json");
  INFO("stderr: " << r.err);
  CHECK(r.status == 3);
  Json summary = Json::parse(gk::test::read_file(dir + "/summary.json"));
  CHECK(summary["records"] == 200);
  CHECK(summary["ok"] == 195);
  CHECK(summary["by_code"] == Json{{"bad_input", 3}, {"python_exception", 2}});
  auto out = jsonl(gk::test::read_file(dir + "/enriched.jsonl"));
  REQUIRE(out.size() == 195);
  CHECK(out[0]["value"].contains("sentiment"));
  auto errors = jsonl(gk::test::read_file(dir + "/enriched.jsonl.errors.jsonl"));
  REQUIRE(errors.size() == 5);
  CHECK(errors[1]["error"]["type"] == "enrich.InvalidReview");
  CHECK(errors[1]["error"]["stage"] == "parse");
}

TEST_CASE("with process isolation a record stuck in native code or crashing fails alone, its neighbours succeed", "[cli][deadline][process][native]") {
  auto dir = gk::test::temp_dir();
  write_file(dir + "/job.toml", std::string("[python]\npath = [\"") + kData + "\", \"" + GK_TEST_EXT_DIR
                                    + "\"]\n[runtime]\nisolation = \"process\"\n[timeouts]\ngrace = \"300ms\"\n"
                                      "[[stage]]\nname = \"native\"\ncall = \"gk_cli_stages:native\"\ntimeout = \"200ms\"\n");
  write_file(dir + "/in.jsonl", "{\"id\": 1}\n{\"id\": 2, \"spin\": 5}\n{\"id\": 3}\n{\"id\": 4, \"crash\": true}\n{\"id\": 5}\n");
  auto r = run_cli(dir, "run job.toml --input in.jsonl --output out.jsonl --summary-json s.json");
  INFO("stderr: " << r.err);
  CHECK(r.status == 3);
  CHECK(r.seconds < 4.0);
  // Record 3 ran on the warm spare as soon as the stuck call's deadline
  // passed, without waiting for the stuck worker to be killed.
  std::vector<Json> expected_out = {Json{{"line", 1}, {"value", 1}}, Json{{"line", 3}, {"value", 3}},
                                    Json{{"line", 5}, {"value", 5}}};
  CHECK(jsonl(gk::test::read_file(dir + "/out.jsonl")) == expected_out);
  auto errors = jsonl(gk::test::read_file(dir + "/out.jsonl.errors.jsonl"));
  REQUIRE(errors.size() == 2);
  CHECK(errors[0]["line"] == 2);
  CHECK(errors[0]["error"]["code"] == "deadline_exceeded");
  CHECK(errors[0]["error"]["phase"] != "");
  CHECK(errors[1]["line"] == 4);
  CHECK(errors[1]["error"]["code"] == "worker_crashed");
  CHECK(errors[1]["error"]["stage"] == "native");
  Json summary = Json::parse(gk::test::read_file(dir + "/s.json"));
  CHECK(summary["workers_restarted"].get<int>() >= 1);  // the crash (the kill may come after the run)
}
