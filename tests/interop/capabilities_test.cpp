// Capability rules ([capabilities]) enforced by the audit hook: for each rule
// an allowed case works, a denied case raises gilkeeper.CapabilityDenied in
// Python (catchable) and reaches the host as capability_denied naming the
// rule; the usual bypasses fail; multiprocessing works with fork denied.
#include "../support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <dirent.h>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

using namespace gk;

namespace {

std::string str(const Expected<Value>& r) {
  if (!r)
    return "error: " + r.error().to_string();
  return r->is_string() ? r->as_string() : std::string("<not a string>");
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Checks the host's view of a denial: code, rule, Python type and message.
void check_denied(const Expected<Value>& r, const std::string& where, const std::string& message_part) {
  REQUIRE_FALSE(r.has_value());
  const Error& e = r.error();
  INFO(e.to_string());
  CHECK(e.code == ErrorCode::capability_denied);
  CHECK(e.where == where);
  CHECK(e.type == "gilkeeper.CapabilityDenied");
  CHECK(contains(e.message, message_part));
  CHECK(contains(e.traceback, "CapabilityDenied"));
}

// Runs Python statements in __main__ that append to `results`, and returns them.
std::vector<std::string> run_attempts(Runtime& rt, const std::string& code) {
  REQUIRE(rt.exec("results = []\n"
                  "import gilkeeper\n"
                  "def attempt(label, fn):\n"
                  "    try:\n"
                  "        fn()\n"
                  "        results.append(label + ': allowed')\n"
                  "    except gilkeeper.CapabilityDenied as e:\n"
                  "        results.append(label + ': denied: ' + str(e))\n")
              .has_value());
  auto ran = rt.exec(code);
  INFO((ran ? std::string() : ran.error().to_string()));
  REQUIRE(ran.has_value());
  auto v = rt.eval("results");
  REQUIRE(v.has_value());
  std::vector<std::string> out;
  for (auto& item : v->as_list())
    out.push_back(item.as_string());
  return out;
}

// Child processes of this process, as "pid comm".
std::vector<std::string> child_processes() {
  std::vector<std::string> out;
  const std::string me = std::to_string(getpid());
  DIR* d = opendir("/proc");
  if (!d)
    return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9')
      continue;
    std::ifstream stat(std::string("/proc/") + e->d_name + "/stat");
    std::string line;
    std::getline(stat, line);
    auto close = line.rfind(')');
    if (close == std::string::npos)
      continue;
    char state = 0;
    long ppid = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %ld", &state, &ppid) == 2 && std::to_string(ppid) == me)
      out.push_back(std::string(e->d_name) + " " + line.substr(0, close + 1) + " " + state);
  }
  closedir(d);
  return out;
}

} // namespace

TEST_CASE("capabilities: the default config denies os.fork and says so clearly", "[capabilities][fork]") {
  Runtime rt(test::test_config());
  REQUIRE_FALSE(rt.config().capabilities.configured);

  auto caught = str(rt.call("gk_capmod:try_fork"));
  CHECK(contains(caught, "denied: capability denied by capabilities.fork: os.fork()"));
  CHECK(contains(caught, "fork is denied by default"));
  CHECK(contains(caught, "fork = \"allow\""));

  auto r = rt.call("gk_capmod:fork");
  check_denied(r, "capabilities.fork: os.fork", "capability denied by capabilities.fork: os.fork()");
  CHECK(contains(r.error().traceback, "gk_capmod.py"));

  // Everything else is allowed by default.
  CHECK(str(rt.call("gk_capmod:try_subprocess")) == "ok: 0");
  CHECK(str(rt.call("gk_capmod:try_import", {"ctypes"})) == "ok: ctypes");
  CHECK(rt.stats().capability_denials == 2);
}

TEST_CASE("capabilities: fork = \"allow\" lets os.fork run", "[capabilities][fork]") {
  Runtime rt(test::test_config("[capabilities]\nfork = \"allow\"\n"));
  auto r = str(rt.call("gk_capmod:try_fork"));
  CHECK(contains(r, "ok: "));
  CHECK_FALSE(contains(r, "ok: 0"));
  CHECK(rt.stats().capability_denials == 0);
}

TEST_CASE("capabilities: multiprocessing.Pool works with fork denied, on the configured interpreter, and "
          "leaves no process behind",
          "[capabilities][fork][multiprocessing]") {
  auto opts = RequestOptions::with_deadline(Deadline::after(std::chrono::seconds(60)));
  {
    Runtime rt(test::test_config());
    CHECK(rt.eval("'multiprocessing' in __import__('sys').modules")->as_bool() == false);
    auto r = rt.call("gk_capmod:pool_map", {5}, {}, opts);
    INFO(str(r));
    REQUIRE(r.has_value());
    CHECK(r->find("start_method")->as_string() == "spawn");
    CHECK(r->find("executable")->as_string() == "/usr/bin/python3");
    auto& squares = r->find("squares")->as_list();
    REQUIRE(squares.size() == 5);
    CHECK(squares[4].as_int() == 16);
    auto exes = rt.call("gk_capmod:pool_executables", {}, {}, opts);
    REQUIRE(exes.has_value());
    REQUIRE(exes->as_list().size() == 1);
    CHECK(exes->as_list()[0].as_string().rfind("/usr/bin/python3", 0) == 0);
    // A start method chosen explicitly still works (the default is only a default).
    CHECK(rt.eval("__import__('multiprocessing').get_context('forkserver').get_start_method()")->as_string()
          == "forkserver");
    CHECK(rt.stats().capability_denials == 0);
  }
  // The resource tracker that spawned pools start is stopped with the
  // interpreter: no child outlives the runtime.
  CHECK(child_processes().empty());
  for (auto& p : child_processes())
    WARN(p);
}

TEST_CASE("capabilities: deny_modules denies a module, its submodules and its native half", "[capabilities][modules]") {
  Runtime rt(test::test_config("[capabilities]\ndeny_modules = [\"ctypes\", \"json\", \"cffi\"]\n"));
  // Allowed: anything else.
  CHECK(str(rt.call("gk_capmod:try_import", {"csv"})) == "ok: csv");
  CHECK(rt.import_module("decimal").has_value());

  // Denied, caught in Python.
  CHECK(str(rt.call("gk_capmod:try_import", {"ctypes"}))
        == "denied: capability denied by capabilities.deny_modules: import of \"ctypes\"");
  CHECK(str(rt.call("gk_capmod:try_import", {"json.decoder"}))
        == "denied: capability denied by capabilities.deny_modules: import of \"json.decoder\"");
  CHECK(str(rt.call("gk_capmod:try_import", {"_ctypes"}))
        == "denied: capability denied by capabilities.deny_modules: import of \"_ctypes\" (denying \"ctypes\" "
           "also denies \"_ctypes\")");
  CHECK(contains(str(rt.call("gk_capmod:try_import", {"_cffi_backend"})),
                 "denied: capability denied by capabilities.deny_modules: import of \"_cffi_backend\""));
  // The exception is a PermissionError that Python code can name.
  CHECK(rt.eval("issubclass(__import__('gilkeeper').CapabilityDenied, PermissionError)")->as_bool());

  // Escaped: capability_denied at the host, naming the rule.
  check_denied(rt.import_module("ctypes"), "capabilities.deny_modules: ctypes",
               "capability denied by capabilities.deny_modules: import of \"ctypes\"");
  check_denied(rt.call("ctypes.util:find_library", {"c"}), "capabilities.deny_modules: ctypes",
               "import of \"ctypes.util\"");
  check_denied(rt.exec("import json"), "capabilities.deny_modules: json", "import of \"json\"");
  auto r = rt.exec("import _ctypes");
  check_denied(r, "capabilities.deny_modules: ctypes", "also denies \"_ctypes\"");
  CHECK(rt.stats().capability_denials == 8);
}

TEST_CASE("capabilities: the hook cannot be bypassed by the usual tricks", "[capabilities][modules][bypass]") {
  Runtime rt(test::test_config("[capabilities]\ndeny_modules = [\"ctypes\", \"json\"]\n"));
  const std::string so = rt.eval("__import__('sysconfig').get_config_var('EXT_SUFFIX')")->as_string();
  auto results = run_attempts(rt, "SO = '" + so + "'\n" + R"PY(
import sys, importlib, importlib.util, types

# A Python audit hook added later cannot remove, silence or outvote ours.
sys.addaudithook(lambda event, args: None)
attempt('addaudithook', lambda: __import__('ctypes'))

# Editing sys.modules: forget the module (and a stand-in), then import again.
sys.modules.pop('ctypes', None)
sys.modules.pop('json', None)
attempt('sys.modules pop', lambda: __import__('json'))
sys.modules['json'] = types.ModuleType('json')
del sys.modules['json']
attempt('sys.modules stand-in', lambda: __import__('json'))

# importlib.import_module and __import__ with a computed name.
attempt('import_module json', lambda: importlib.import_module('json'))
attempt('import_module ctypes', lambda: importlib.import_module('ct' + 'ypes'))
attempt('__import__ computed', lambda: __import__('ct' + 'ypes'))
attempt('__import__ submodule', lambda: __import__('json.' + 'decoder'))

# importlib.reload of a stand-in registered under the denied name.
def reload_json():
    stub = types.ModuleType('json')
    sys.modules['json'] = stub
    try:
        importlib.reload(stub)
    finally:
        sys.modules.pop('json', None)
attempt('reload', reload_json)

# Loading the files directly, under the real name and under another one.
import os
stdlib = os.path.dirname(os.__file__)
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
attempt('spec .so', lambda: load('_ctypes', stdlib + '/lib-dynload/_ctypes' + SO))
attempt('spec .so renamed', lambda: load('evil._ctypes', stdlib + '/lib-dynload/_ctypes' + SO))
attempt('spec .py renamed', lambda: load('not_json', stdlib + '/json/__init__.py'))
attempt('find_spec + module_from_spec', lambda: load('json', importlib.util.find_spec('json').origin))

# And the plain import still fails after all that.
attempt('after all that', lambda: __import__('ctypes'))
)PY");
  REQUIRE(results.size() == 13);
  for (auto& line : results) {
    INFO(line);
    CHECK(contains(line, ": denied: capability denied by capabilities.deny_modules: import of \""));
  }
  CHECK(contains(results[10], "(executing "));
  CHECK(contains(results[9], "(denying \"ctypes\" also denies \"_ctypes\")"));
  CHECK(rt.eval("'ctypes' in __import__('sys').modules or '_ctypes' in __import__('sys').modules")->as_bool()
        == false);
}
