// The [capabilities] recipes that docs/capabilities.md gives, read from the
// very files the docs quote (examples/capabilities/*.toml): a job on numpy,
// lxml, sqlite3 and PyYAML runs under them in thread and process isolation,
// while ctypes stays denied, as an ImportError that names the rule.
// numpy cannot be imported again by a second interpreter in one process: like
// every test, each of these runs in its own process (ctest), and the thread
// runtime comes before the process one.
#include "../support.hpp"

#include <catch2/catch.hpp>

using namespace gk;

namespace {

const std::string examples_dir = GK_SOURCE_DIR "/examples/capabilities/";

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string recipe(const std::string& file) {
  std::string toml = test::read_file(examples_dir + file);
  REQUIRE_FALSE(toml.empty());
  return toml;
}

Config with_isolation(const std::string& isolation, const std::string& capabilities_toml) {
  return test::test_config("[runtime]\nisolation = \"" + isolation + "\"\n" + capabilities_toml);
}

const char* const xml_text = "<data><v>1</v><v>2</v><v>3.5</v></data>";
const char* const yaml_text = "scale: 2\nseed: 7\n";

// Runs the stack's job and checks what it computed, with every native part in
// use (the packages' own extensions were allowlisted).
void check_stack_runs(Runtime& rt) {
  auto opts = RequestOptions::with_deadline(Deadline::after(std::chrono::seconds(60)));
  auto r = rt.call("gk_scistack:summarize", {xml_text, yaml_text}, {}, opts);
  INFO((r ? std::string() : r.error().to_string()));
  REQUIRE(r.has_value());
  CHECK(r->find("total")->as_number() == 13.0);
  CHECK(r->find("fft0")->as_number() == 13.0);
  CHECK(r->find("norm")->as_number() > 8.0);
  CHECK(r->find("noise_finite")->as_bool());
  CHECK(r->find("dumped")->as_string() == "total: 13.0");
  CHECK(r->find("libyaml")->as_bool());  // yaml._yaml, the libyaml binding
  CHECK(r->find("etree")->as_string() == "lxml.etree");
  // numpy imported ctypes as optional and went on without it.
  CHECK_FALSE(r->find("numpy_has_ctypes")->as_bool());
}

// `import ctypes` in the job's code: an ImportError when caught as such,
// capability_denied naming the rule when not.
void check_ctypes_denied(Runtime& rt) {
  auto caught = rt.call("gk_scistack:optional_ctypes");
  INFO((caught ? std::string() : caught.error().to_string()));
  REQUIRE(caught.has_value());
  REQUIRE(caught->is_dict());
  CHECK(caught->find("type")->as_string() == "gilkeeper.ImportDenied");
  CHECK(caught->find("message")->as_string()
        == "capability denied by capabilities.deny_modules: import of \"ctypes\"");
  CHECK(caught->find("rule")->as_string() == "capabilities.deny_modules: ctypes");
  CHECK(caught->find("name")->as_string() == "ctypes");
  CHECK(caught->find("capability_denied")->as_bool());
  CHECK_FALSE(caught->find("permission_error")->as_bool());

  auto r = rt.call("gk_scistack:import_ctypes");
  REQUIRE_FALSE(r.has_value());
  const Error& e = r.error();
  INFO(e.to_string());
  CHECK(e.code == ErrorCode::capability_denied);
  CHECK(e.where == "capabilities.deny_modules: ctypes");
  CHECK(e.type == "gilkeeper.ImportDenied");
  CHECK(e.message == "capability denied by capabilities.deny_modules: import of \"ctypes\"");
  CHECK(contains(e.traceback, "gk_scistack.py"));
  CHECK(rt.stats().capability_denials >= 2);
}

} // namespace

TEST_CASE("capabilities: capabilities.md quotes the example capability files verbatim", "[capabilities][docs]") {
  const std::string doc = test::read_file(GK_SOURCE_DIR "/docs/capabilities.md");
  REQUIRE_FALSE(doc.empty());
  for (const char* file : {"overview.toml", "scientific_stack.toml"}) {
    INFO(file);
    CHECK(contains(doc, "```toml\n" + recipe(file) + "```\n"));
    CHECK(contains(doc, std::string("examples/capabilities/") + file));
  }
}

TEST_CASE("capabilities: numpy, lxml, sqlite3 and PyYAML run under the example capabilities of capabilities.md, and ctypes is "
          "an ImportError naming the rule",
          "[capabilities][stack]") {
  const std::string isolation = GENERATE(as<std::string>{}, "thread", "process");
  CAPTURE(isolation);
  Runtime rt(with_isolation(isolation, recipe("overview.toml")));
  REQUIRE(rt.config().capabilities.native_extensions == NativePolicy::allowlist);
  check_stack_runs(rt);
  check_ctypes_denied(rt);
  // cffi is denied too (a plain import of it, not installed or not, is checked first).
  auto cffi = rt.exec("import cffi");
  REQUIRE_FALSE(cffi.has_value());
  CHECK(cffi.error().where == "capabilities.deny_modules: cffi");
}

TEST_CASE("capabilities: numpy, lxml, sqlite3 and PyYAML run under the strict scientific-stack recipe, which still denies "
          "ctypes, fork, processes, the network and writes",
          "[capabilities][stack][strict]") {
  const std::string isolation = GENERATE(as<std::string>{}, "thread", "process");
  CAPTURE(isolation);
  Runtime rt(with_isolation(isolation, recipe("scientific_stack.toml")));
  check_stack_runs(rt);
  check_ctypes_denied(rt);

  auto denied_by = [&](const std::string& target, List args) {
    auto r = rt.call(target, std::move(args));
    INFO((r ? std::string() : r.error().to_string()));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == ErrorCode::capability_denied);
    CHECK(r.error().type == "gilkeeper.PermissionDenied");
    return r.error().where;
  };
  CHECK(denied_by("gk_capmod:fork", {}) == "capabilities.fork: os.fork");
  CHECK(denied_by("gk_capmod:run_true", {}) == "capabilities.subprocess: subprocess.Popen");
  CHECK(denied_by("gk_capmod:system_true", {}) == "capabilities.subprocess: os.system");
  CHECK(denied_by("gk_capmod:connect", {"127.0.0.1", 9}) == "capabilities.network: socket(AF_INET)");
  const std::string file = test::temp_dir() + "/x";
  CHECK(denied_by("gk_capmod:write_file", {file}) == "capabilities.write_paths: " + file);
  CHECK(rt.call("gk_capmod:unix_socketpair")->as_string() == "hi");
  // Other native code stays out: the FFI and extensions not listed.
  auto ext = rt.import_module("gk_testext");
  REQUIRE_FALSE(ext.has_value());
  CHECK(ext.error().where == "capabilities.native_extensions: gk_testext");
  CHECK(ext.error().type == "gilkeeper.ImportDenied");
}
