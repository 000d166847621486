// `gilkeeper run --resume`: after a SIGKILL, an interruption, a torn line or
// a lagging errors file, the resumed run ends with the output and errors of
// an uninterrupted run; files that do not fit the input are refused.
#include "cli_child.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <random>

using Json = nlohmann::json;
using namespace gk::test::cli;
using gk::test::read_file;

namespace {

// A job, its input, and what an uninterrupted run writes.
struct Baseline {
  std::string dir, job, input, gate;
  std::string out, errors;
  Json summary;
  double seconds = 0;
};

// `gate_line`: a record that waits for the file `gate` (open during the
// baseline run, closed after it).
Baseline baseline(int lines, const std::string& sleep, const std::string& stage_extra = "", int gate_line = 0) {
  Baseline b;
  b.dir = gk::test::temp_dir();
  b.job = write_nap_job(b.dir, "", stage_extra);
  b.input = b.dir + "/in.jsonl";
  b.gate = b.dir + "/gate";
  write_file(b.input, mixed_input(lines, sleep, gate_line, b.gate));
  write_file(b.gate, "");
  auto t0 = std::chrono::steady_clock::now();
  int status = run_cli({"run", b.job, "--input", b.input, "--output", b.dir + "/base.jsonl", "--summary-json",
                        b.dir + "/base.json", "--progress", "never"},
                       b.dir + "/base.stderr");
  b.seconds = gk::test::ms_since(t0) / 1000.0;
  INFO(read_file(b.dir + "/base.stderr"));
  REQUIRE(status == 3);
  b.out = read_file(b.dir + "/base.jsonl");
  b.errors = read_file(b.dir + "/base.jsonl.errors.jsonl");
  b.summary = Json::parse(read_file(b.dir + "/base.json"));
  ::unlink(b.gate.c_str());
  return b;
}

std::vector<std::string> resume_args(const Baseline& b, const std::string& out) {
  return {"run", b.job, "--input", b.input, "--output", out, "--summary-json", out + ".summary.json",
          "--progress", "never", "--resume"};
}

// The whole lines of `text` are the first lines of `full`.
bool whole_lines_are_a_prefix(const std::string& text, const std::string& full) {
  auto part = lines_of(text, true), all = lines_of(full);
  return part.size() <= all.size() && std::equal(part.begin(), part.end(), all.begin());
}

void check_summary_covers_the_whole_run(const Json& s, const Json& base) {
  CHECK(s["records"] == base["records"]);
  CHECK(s["ok"] == base["ok"]);
  CHECK(s["failed"] == base["failed"]);
  CHECK(s["by_code"] == base["by_code"]);
  CHECK(s["not_written"] == 0);
  CHECK(s["interrupted"] == false);
}

std::vector<std::string> sorted_lines(const std::string& text) {
  auto lines = lines_of(text);
  std::sort(lines.begin(), lines.end());
  return lines;
}

} // namespace

TEST_CASE("ten SIGKILLs at random moments, each followed by --resume, end with the output and errors of an "
          "uninterrupted run, byte for byte",
          "[cli][resume]") {
  // About a second of work: 3000 lines, records sleeping 0.2 ms, with
  // Python exceptions, lines that are not JSON and blank lines.
  Baseline b = baseline(3000, "0.0002");
  const std::uint64_t total_bytes = b.out.size() + b.errors.size();
  const std::uint32_t seed = 20240611;
  std::mt19937 rng(seed);
  std::string out = b.dir + "/out.jsonl", errors = out + ".errors.jsonl";
  int killed_running = 0, killed_after_progress = 0;
  std::string story;
  for (int i = 0; i < 10; ++i) {
    std::uint64_t before = file_size(out) + file_size(errors);
    pid_t pid = spawn_cli(resume_args(b, out), b.dir + "/kill.stderr");
    // A third of the kills land within 150 ms of the start (start-up, the
    // resume scan, the first records), the others once the files have
    // grown by a random part of what is left to write.
    bool early = rng() % 3 == 0;
    std::uint64_t grow = 1 + rng() % std::max<std::uint64_t>(1, (total_bytes - std::min(before, total_bytes)) / 3);
    int status = 0;
    bool exited = false;
    if (early) {
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 150000));
    } else {
      auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (file_size(out) + file_size(errors) < before + grow && std::chrono::steady_clock::now() < until) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
          exited = true;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    if (!exited) {
      ::kill(pid, SIGKILL);
      status = wait_child(pid);
    }
    bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    killed_running += killed;
    std::uint64_t after = file_size(out) + file_size(errors);
    killed_after_progress += killed && after > before;
    story += (early ? "early" : "grown") + std::string(killed ? " kill" : " exit") + " at " + std::to_string(after)
             + " bytes; ";
    INFO("seed " << seed << ", kill " << i << ": " << story << "\n" << read_file(b.dir + "/kill.stderr"));
    // What a killed run leaves is always the start of what it would write.
    CHECK(whole_lines_are_a_prefix(read_file(out), b.out));
    CHECK(whole_lines_are_a_prefix(read_file(errors), b.errors));
  }
  int status = run_cli(resume_args(b, out), b.dir + "/last.stderr");
  INFO("seed " << seed << ": " << story << "\n" << read_file(b.dir + "/last.stderr"));
  CHECK(status == 3);
  CHECK(read_file(out) == b.out);
  CHECK(read_file(errors) == b.errors);
  check_summary_covers_the_whole_run(Json::parse(read_file(out + ".summary.json")), b.summary);
  // Kills land while the run works, after it wrote something (a kill may
  // also come after the end: the run then finished by itself).
  CHECK(killed_after_progress >= 3);
  WARN("resume under SIGKILL: seed " << seed << ", baseline " << b.seconds << " s, " << killed_running
                                     << " of 10 kills landed while running (" << killed_after_progress
                                     << " after new lines were written): " << story);
}

TEST_CASE("resume cuts a torn last line and the lines past a gap between output and errors, and ends equal to an "
          "uninterrupted run",
          "[cli][resume]") {
  Baseline b = baseline(600, "0");
  auto out_lines = lines_of(b.out), error_lines = lines_of(b.errors);
  REQUIRE(out_lines.size() > 400);
  REQUIRE(error_lines.size() > 40);
  std::string out = b.dir + "/out.jsonl", errors = out + ".errors.jsonl";
  // The output got further than the errors (its buffer reached the file
  // first), then a crash tore its last line; the errors file ends with a
  // block of zeros, as a power loss can leave.
  std::string torn_out;
  for (std::size_t i = 0; i < 400; ++i)
    torn_out += out_lines[i] + "\n";
  torn_out += out_lines[400].substr(0, out_lines[400].size() / 2);
  std::string lagging_errors;
  for (std::size_t i = 0; i < 10; ++i)
    lagging_errors += error_lines[i] + "\n";
  lagging_errors += std::string(700, '\0');
  write_file(out, torn_out);
  write_file(errors, lagging_errors);

  int status = run_cli(resume_args(b, out), b.dir + "/resume.stderr");
  std::string log = read_file(b.dir + "/resume.stderr");
  INFO(log);
  CHECK(status == 3);
  CHECK(read_file(out) == b.out);
  CHECK(read_file(errors) == b.errors);
  CHECK(log.find("cut the last") != std::string::npos);
  CHECK(log.find("to keep the input order") != std::string::npos);
  Json s = Json::parse(read_file(out + ".summary.json"));
  check_summary_covers_the_whole_run(s, b.summary);
  // Done before: the records up to the first failure that was not in the
  // errors file (the eleventh).
  std::uint64_t eleventh_failure = Json::parse(error_lines[10])["line"];
  std::uint64_t done = 0;
  for (auto& l : out_lines)
    done += Json::parse(l)["line"].get<std::uint64_t>() < eleventh_failure;
  CHECK(s["resumed"] == done + 10);
}

TEST_CASE("resume after SIGINT runs again the records the interruption stopped", "[cli][resume][signal]") {
  for (std::string order : {"ordered", "unordered"}) {
    DYNAMIC_SECTION(order) {
      // Line 700 waits at its gate until the run has been interrupted: the
      // records before it are done, those after it wait for the stage.
      Baseline b = baseline(2000, "0.0002", order == "ordered" ? "" : "ordered = false\n", 700);
      std::string out = b.dir + "/out.jsonl", errors = out + ".errors.jsonl";
      pid_t pid = spawn_cli(resume_args(b, out), b.dir + "/int.stderr");
      REQUIRE(wait_for_file(b.gate + ".reached"));
      ::kill(pid, SIGINT);
      // The gate opens once the run has taken the signal.
      auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (read_file(b.dir + "/int.stderr").find("interrupted (SIGINT)") == std::string::npos
             && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      write_file(b.gate, "");
      int status = wait_child(pid);
      INFO(read_file(b.dir + "/int.stderr"));
      REQUIRE(WIFEXITED(status));
      REQUIRE(WEXITSTATUS(status) == 130);
      Json interrupted = Json::parse(read_file(out + ".summary.json"));
      CHECK(interrupted["interrupted"] == true);
      CHECK(interrupted["by_code"]["runtime_stopped"].get<int>() > 0);
      INFO("the interrupted run: " << interrupted.dump());

      status = run_cli(resume_args(b, out), b.dir + "/resume.stderr");
      INFO(read_file(b.dir + "/resume.stderr"));
      CHECK(status == 3);
      if (order == "ordered") {
        CHECK(read_file(out) == b.out);
        CHECK(read_file(errors) == b.errors);
      } else {
        // Written as they finish: the same lines, in some order.
        CHECK(sorted_lines(read_file(out)) == sorted_lines(b.out));
        CHECK(sorted_lines(read_file(errors)) == sorted_lines(b.errors));
      }
      CHECK(read_file(errors).find("runtime_stopped") == std::string::npos);
      check_summary_covers_the_whole_run(Json::parse(read_file(out + ".summary.json")), b.summary);
    }
  }
}

TEST_CASE("resume of a finished run changes nothing and rewrites the summary over the whole run", "[cli][resume]") {
  Baseline b = baseline(300, "0");
  std::string out = b.dir + "/base.jsonl";
  auto args = resume_args(b, out);
  args[7] = b.dir + "/again.json";  // --summary-json
  int status = run_cli(args, b.dir + "/again.stderr");
  INFO(read_file(b.dir + "/again.stderr"));
  CHECK(status == 3);
  CHECK(read_file(out) == b.out);
  CHECK(read_file(out + ".errors.jsonl") == b.errors);
  Json s = Json::parse(read_file(b.dir + "/again.json"));
  check_summary_covers_the_whole_run(s, b.summary);
  CHECK(s["resumed"] == b.summary["records"]);
  CHECK(s["stages"]["nap"]["calls"] == 0);
}

TEST_CASE("resume refuses, changing nothing, files that do not fit the input or the command", "[cli][resume]") {
  Baseline b = baseline(300, "0");
  std::string out = b.dir + "/base.jsonl", errors = out + ".errors.jsonl";
  auto refused = [&](const std::vector<std::string>& args, const std::string& says) {
    int status = run_cli(args, b.dir + "/refused.stderr");
    std::string log = read_file(b.dir + "/refused.stderr");
    INFO(log);
    CHECK(status == 2);
    CHECK(log.find(says) != std::string::npos);
    CHECK(read_file(out) == b.out);
    CHECK(read_file(errors) == b.errors);
  };
  auto input_lines = lines_of(read_file(b.input));

  SECTION("an input shorter than the lines the files name") {
    std::string shorter;
    for (std::size_t i = 0; i < 200; ++i)
      shorter += input_lines[i] + "\n";
    write_file(b.input, shorter);
    refused(resume_args(b, out), "but " + b.input + " has 200 lines: is this the same input?");
  }
  SECTION("an errors line whose input is not that line of the input") {
    // Line 13 failed (no id); give it one.
    input_lines[12] = "{\"id\": 13, \"sleep\": 0, \"changed\": true}";
    std::string changed;
    for (auto& l : input_lines)
      changed += l + "\n";
    write_file(b.input, changed);
    refused(resume_args(b, out), "its input is not line 13 of " + b.input);
  }
  SECTION("a record in both files") {
    // The first errors line, renumbered to name the output's first record.
    std::string errors_line = lines_of(b.errors)[0];
    std::string failed_line = std::to_string(Json::parse(errors_line)["line"].get<std::uint64_t>());
    std::string ok_line = std::to_string(Json::parse(lines_of(b.out)[0])["line"].get<std::uint64_t>());
    errors_line.replace(errors_line.find(failed_line), failed_line.size(), ok_line);
    write_file(errors, errors_line + "\n");
    b.errors = errors_line + "\n";
    refused(resume_args(b, out), "input line " + ok_line + " is in both the output and the errors file");
  }
  SECTION("an errors line from a stage the job does not have") {
    std::string other_job = b.dir + "/other.toml";
    std::string text = read_file(b.job);
    text.replace(text.find("name = \"nap\""), 12, "name = \"doze\"");
    write_file(other_job, text);
    auto args = resume_args(b, out);
    args[1] = other_job;
    refused(args, "stage \"nap\" is not a stage of this job: is this the same job?");
  }
  SECTION("output to stdout") {
    auto args = resume_args(b, out);
    args[5] = "-";
    refused(args, "--resume needs --input FILE and --output FILE");
  }
}
