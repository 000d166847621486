// Capability rules ([capabilities]) enforced by the audit hook: for each rule
// an allowed case works, a denied case raises a gilkeeper.CapabilityDenied in
// Python (catchable: an ImportDenied for a load, a PermissionDenied for
// anything else) and reaches the host as capability_denied naming the rule;
// the usual bypasses fail; multiprocessing works with fork denied.
#include "../support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <dirent.h>
#include <fstream>
#include <sched.h>
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
// Loading a module or extension is denied with an ImportDenied, anything
// else with a PermissionDenied.
void check_denied(const Expected<Value>& r, const std::string& where, const std::string& message_part) {
  REQUIRE_FALSE(r.has_value());
  const Error& e = r.error();
  INFO(e.to_string());
  const bool load = where.rfind("capabilities.deny_modules:", 0) == 0
                    || where.rfind("capabilities.allow_modules:", 0) == 0
                    || where.rfind("capabilities.native_extensions:", 0) == 0;
  const std::string type = load ? "ImportDenied" : "PermissionDenied";
  CHECK(e.code == ErrorCode::capability_denied);
  CHECK(e.where == where);
  CHECK(e.type == "gilkeeper." + type);
  CHECK(contains(e.message, message_part));
  CHECK(contains(e.traceback, type));
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

  // In any Python thread, and through multiprocessing's "fork" method.
  auto results = run_attempts(rt, R"PY(
import os, threading, multiprocessing
def in_thread():
    errors = []
    def body():
        try:
            os.fork()
        except PermissionError as e:
            errors.append(e)
    t = threading.Thread(target=body)
    t.start()
    t.join()
    raise errors[0]
attempt('thread', in_thread)
attempt('multiprocessing fork', lambda: multiprocessing.get_context('fork').Process(target=print).start())
)PY");
  REQUIRE(results.size() == 2);
  CHECK(contains(results[0], "thread: denied: capability denied by capabilities.fork: os.fork()"));
  CHECK(contains(results[1], "multiprocessing fork: denied: capability denied by capabilities.fork: os.fork()"));

  // Everything else is allowed by default.
  CHECK(str(rt.call("gk_capmod:try_subprocess")) == "ok: 0");
  CHECK(str(rt.call("gk_capmod:try_import", {"ctypes"})) == "ok: ctypes");
  CHECK(rt.stats().capability_denials == 4);
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
    char* real = realpath("/usr/bin/python3", nullptr);
    REQUIRE(real != nullptr);
    CHECK(exes->as_list()[0].as_string() == std::string("/usr/bin/python3 ") + real);
    std::free(real);
    // A start method chosen explicitly still works (the default is only a
    // default); a forkserver forks in its own fresh process.
    auto fs = rt.call("gk_capmod:forkserver_pool_map", {3}, {}, opts);
    INFO(str(fs));
    REQUIRE(fs.has_value());
    CHECK(fs->as_list()[2].as_int() == 4);
    CHECK(rt.stats().capability_denials == 0);
    // The resource tracker that spawned pools start, and the forkserver, are
    // stopped with the interpreter: no child outlives the runtime.
    auto report = rt.shutdown();
    CHECK(report.finalized);
  }
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
  // A denied import is an ImportError (code that treats a module as optional
  // goes on without it) and a CapabilityDenied naming the rule.
  CHECK(str(rt.call("gk_capmod:optional_import", {"ctypes"}))
        == "ImportDenied: name=ctypes rule=capabilities.deny_modules: ctypes: capability denied by "
           "capabilities.deny_modules: import of \"ctypes\"");

  // Escaped: capability_denied at the host, naming the rule.
  check_denied(rt.import_module("ctypes"), "capabilities.deny_modules: ctypes",
               "capability denied by capabilities.deny_modules: import of \"ctypes\"");
  check_denied(rt.call("ctypes.util:find_library", {"c"}), "capabilities.deny_modules: ctypes",
               "import of \"ctypes.util\"");
  check_denied(rt.exec("import json"), "capabilities.deny_modules: json", "import of \"json\"");
  auto r = rt.exec("import _ctypes");
  check_denied(r, "capabilities.deny_modules: ctypes", "also denies \"_ctypes\"");
  CHECK(rt.stats().capability_denials == 9);
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

TEST_CASE("capabilities: allow_modules admits listed modules and what the standard library needs, nothing else",
          "[capabilities][modules]") {
  Runtime rt(test::test_config("[capabilities]\nallow_modules = [\"gk_capmod\", \"json\", \"decimal\", \"pickle\"]\n"));
  // Listed modules import, with the stdlib modules and extensions they use.
  CHECK(str(rt.call("gk_capmod:try_import", {"json"})) == "ok: json");
  CHECK(str(rt.call("gk_capmod:try_import", {"decimal"})) == "ok: decimal");
  CHECK(rt.eval("__import__('json').dumps({'a': [1, 2]})")->as_string() == "{\"a\": [1, 2]}");
  // Modules loaded during start-up stay importable.
  CHECK(rt.exec("import os, sys, signal, traceback, re, functools").has_value());

  // Not listed: denied, caught in Python...
  CHECK(str(rt.call("gk_capmod:try_import", {"csv"}))
        == "denied: capability denied by capabilities.allow_modules: import of \"csv\" (not in allow_modules; "
           "imported by gk_capmod (" GK_TEST_PYTHON_DIR "/gk_capmod.py))");
  // ...and at the host, whether the runtime or __main__ imports it.
  check_denied(rt.import_module("csv"), "capabilities.allow_modules: csv",
               "import of \"csv\" (not in allow_modules; imported by the runtime (a request's target))");
  check_denied(rt.call("csv:reader", {List{}}), "capabilities.allow_modules: csv", "import of \"csv\"");
  check_denied(rt.exec("import socket"), "capabilities.allow_modules: socket", "imported by __main__");

  // Helpers that import on their caller's behalf do not lend their trust.
  auto results = run_attempts(rt, R"PY(
import importlib, pickle
attempt('import_module', lambda: importlib.import_module('csv'))
attempt('C pickle', lambda: pickle.loads(b'ccsv\nreader\n.'))
attempt('Python pickle', lambda: pickle._loads(b'ccsv\nreader\n.'))
attempt('__import__ computed', lambda: __import__('c' + 'sv'))
)PY");
  REQUIRE(results.size() == 4);
  for (auto& line : results) {
    INFO(line);
    CHECK(contains(line, ": denied: capability denied by capabilities.allow_modules: import of \"csv\""));
    CHECK(contains(line, "imported by __main__"));
  }
  CHECK(rt.eval("'csv' in __import__('sys').modules")->as_bool() == false);
}

TEST_CASE("capabilities: native_extensions = \"deny\" stops compiled extensions but not the standard library's",
          "[capabilities][native]") {
  Runtime rt(test::test_config("[capabilities]\nnative_extensions = \"deny\"\n"));
  // The standard library's own extension modules are part of Python.
  CHECK(str(rt.call("gk_capmod:try_import", {"json"})) == "ok: json");
  CHECK(str(rt.call("gk_capmod:try_import", {"_decimal"})) == "ok: _decimal");

  auto caught = str(rt.call("gk_capmod:try_import", {"gk_testext"}));
  CHECK(contains(caught, "denied: capability denied by capabilities.native_extensions: loading the native "
                         "extension \"gk_testext\" from " GK_TEST_EXT_DIR "/gk_testext"));
  CHECK(contains(caught, "(native_extensions = \"deny\")"));
  check_denied(rt.import_module("gk_testext"), "capabilities.native_extensions: gk_testext",
               "loading the native extension \"gk_testext\"");
  // The FFI is native code whatever its directory.
  check_denied(rt.import_module("ctypes"), "capabilities.native_extensions: _ctypes",
               "loading the native extension \"_ctypes\"");
  // Loading the file under another name does not help.
  auto results = run_attempts(rt, R"PY(
import importlib.util, glob
path = glob.glob(')PY" GK_TEST_EXT_DIR R"PY(/gk_testext*.so')[0]
def load(name):
    spec = importlib.util.spec_from_file_location(name, path)
    importlib.util.module_from_spec(spec)
attempt('spec renamed', lambda: load('pkg.gk_testext'))
import sqlite3
attempt('sqlite extensions', lambda: sqlite3.connect(':memory:').enable_load_extension(True))
)PY");
  REQUIRE(results.size() == 2);
  CHECK(contains(results[0], "spec renamed: denied: capability denied by capabilities.native_extensions"));
  CHECK(contains(results[1], "sqlite extensions: denied: capability denied by capabilities.native_extensions: "
                             "sqlite3 enable_load_extension(True)"));
}

TEST_CASE("capabilities: native_extensions = \"allowlist\" loads only the listed extensions",
          "[capabilities][native]") {
  Runtime rt(test::test_config("[capabilities]\nnative_extensions = \"allowlist\"\nallow_native = [\"gk_testext\"]\n"));
  CHECK(str(rt.call("gk_capmod:try_import", {"gk_testext"})) == "ok: gk_testext");
  CHECK(str(rt.call("gk_capmod:try_import", {"json"})) == "ok: json");
  auto caught = str(rt.call("gk_capmod:try_import", {"_ctypes"}));
  CHECK(contains(caught, "denied: capability denied by capabilities.native_extensions: loading the native "
                         "extension \"_ctypes\""));
  CHECK(contains(caught, "(not in allow_native)"));
  check_denied(rt.import_module("ctypes"), "capabilities.native_extensions: _ctypes", "(not in allow_native)");
}

TEST_CASE("capabilities: allow_native admits a package's extensions from its own directory only",
          "[capabilities][native]") {
  Runtime rt(test::test_config("[capabilities]\nnative_extensions = \"allowlist\"\nallow_native = [\"gk_testext\"]\n"));
  const std::string so = rt.eval("__import__('sysconfig').get_config_var('EXT_SUFFIX')")->as_string();
  // The FFI, loaded under a name inside an allowlisted package.
  auto results = run_attempts(rt, "SO = '" + so + "'\n" + R"PY(
import importlib.util, os
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    importlib.util.module_from_spec(spec)
attempt('renamed into the package', lambda: load('gk_testext._ctypes', os.path.dirname(os.__file__) + '/lib-dynload/_ctypes' + SO))
)PY");
  REQUIRE(results.size() == 1);
  CHECK(contains(results[0], "renamed into the package: denied: capability denied by capabilities.native_extensions: "
                             "loading the native extension \"gk_testext._ctypes\" from "));
  CHECK(contains(results[0], "(allow_native admits \"gk_testext\"'s extensions from its own directory on sys.path only)"));
  CHECK(rt.eval("'_ctypes' in __import__('sys').modules")->as_bool() == false);
}

TEST_CASE("capabilities: every denial is a CapabilityDenied, an ImportError for a load and a PermissionError "
          "otherwise",
          "[capabilities][exceptions]") {
  Runtime rt(test::test_config("[capabilities]\ndeny_modules = [\"ctypes\"]\n"));
  auto hierarchy = rt.eval(
      "(lambda g: [issubclass(g.ImportDenied, g.CapabilityDenied) and issubclass(g.ImportDenied, ImportError),"
      " issubclass(g.PermissionDenied, g.CapabilityDenied) and issubclass(g.PermissionDenied, PermissionError),"
      " issubclass(g.CapabilityDenied, (ImportError, OSError)),"
      " issubclass(g.ImportDenied, OSError), issubclass(g.PermissionDenied, ImportError)])(__import__('gilkeeper'))");
  REQUIRE(hierarchy.has_value());
  const auto& h = hierarchy->as_list();
  REQUIRE(h.size() == 5);
  CHECK(h[0].as_bool());
  CHECK(h[1].as_bool());
  CHECK_FALSE(h[2].as_bool());  // CapabilityDenied itself is neither
  CHECK_FALSE(h[3].as_bool());
  CHECK_FALSE(h[4].as_bool());

  // Each is caught where code expects its builtin kind, and by CapabilityDenied.
  auto ran = rt.exec(R"PY(
import gilkeeper, os
caught = []
try:
    import ctypes
except ImportError as e:
    caught.append(type(e).__name__ + ' ' + e.name)
try:
    os.fork()
except PermissionError as e:
    caught.append(type(e).__name__ + ' ' + e.rule)
try:
    import _ctypes
except gilkeeper.CapabilityDenied as e:
    caught.append(e.key)
)PY");
  INFO((ran ? std::string() : ran.error().to_string()));
  REQUIRE(ran.has_value());
  auto caught = rt.eval("caught");
  REQUIRE(caught.has_value());
  const auto& c = caught->as_list();
  REQUIRE(c.size() == 3);
  CHECK(c[0].as_string() == "ImportDenied ctypes");
  CHECK(c[1].as_string() == "PermissionDenied capabilities.fork: os.fork");
  CHECK(c[2].as_string() == "capabilities.deny_modules");
  CHECK(rt.stats().capability_denials == 3);
}

TEST_CASE("capabilities: a native extension that is not allowlisted is an ImportError, so PyYAML falls back to "
          "pure Python",
          "[capabilities][native][stack]") {
  Runtime rt(test::test_config("[capabilities]\nnative_extensions = \"allowlist\"\n"));
  // PyYAML imports its libyaml binding inside `try: ... except ImportError`.
  REQUIRE(rt.exec("import yaml").has_value());
  CHECK(rt.eval("yaml.__with_libyaml__")->as_bool() == false);
  CHECK(rt.eval("yaml.safe_load('a: [1, 2]')['a'][1]")->as_int() == 2);
  CHECK(rt.stats().capability_denials >= 1);
  // Uncaught, the denial names the rule and the extension, also through
  // `from package import submodule` (which ignores a ModuleNotFoundError).
  check_denied(rt.exec("import yaml._yaml"), "capabilities.native_extensions: yaml._yaml",
               "loading the native extension \"yaml._yaml\" from ");
  check_denied(rt.exec("from yaml import _yaml"), "capabilities.native_extensions: yaml._yaml",
               "loading the native extension \"yaml._yaml\" from ");
}

TEST_CASE("capabilities: subprocess = \"deny\" stops Popen, os.system, posix_spawn, exec and multiprocessing",
          "[capabilities][subprocess]") {
  Runtime rt(test::test_config("[capabilities]\nsubprocess = \"deny\"\n"));
  CHECK(str(rt.call("gk_capmod:try_subprocess"))
        == "denied: capability denied by capabilities.subprocess: subprocess.Popen of \"/bin/true\"");
  check_denied(rt.call("gk_capmod:system_true"), "capabilities.subprocess: os.system",
               "capability denied by capabilities.subprocess: os.system of \"true\"");
  auto results = run_attempts(rt, R"PY(
import os
attempt('posix_spawn', lambda: os.posix_spawn('/bin/true', ['true'], {}))
attempt('posix_spawnp', lambda: os.posix_spawnp('true', ['true'], {}))
attempt('execv', lambda: os.execv('/bin/true', ['true']))
attempt('popen', lambda: os.popen('true').read())
)PY");
  REQUIRE(results.size() == 4);
  for (auto& line : results) {
    INFO(line);
    CHECK(contains(line, ": denied: capability denied by capabilities.subprocess: "));
  }
  // multiprocessing starts its processes without an audit event of its own;
  // gilkeeper's default makes that visible to the rule.
  check_denied(rt.call("gk_capmod:pool_map", {2}), "capabilities.subprocess: subprocess.Popen",
               "capability denied by capabilities.subprocess: subprocess.Popen of \"/usr/bin/python3\"");
  CHECK(child_processes().empty());
}

TEST_CASE("capabilities: network = false allows AF_UNIX sockets only", "[capabilities][network]") {
  Runtime rt(test::test_config("[capabilities]\nnetwork = false\n"));
  CHECK(str(rt.call("gk_capmod:unix_socketpair")) == "hi");
  CHECK(str(rt.call("gk_capmod:try_connect", {"127.0.0.1", 9}))
        == "denied: capability denied by capabilities.network: creating a socket of AF_INET (network = false)");
  check_denied(rt.call("gk_capmod:connect", {"127.0.0.1", 9}), "capabilities.network: socket(AF_INET)",
               "creating a socket of AF_INET");
  check_denied(rt.eval("__import__('socket').getaddrinfo('localhost', 80)"), "capabilities.network: localhost",
               "socket.getaddrinfo of \"localhost\" (network = false)");
}

TEST_CASE("capabilities: network = \"loopback\" reaches 127.0.0.0/8 and ::1 only", "[capabilities][network]") {
  Runtime rt(test::test_config("[capabilities]\nnetwork = \"loopback\"\n"));
  CHECK(str(rt.call("gk_capmod:loopback_echo")) == "ping");
  CHECK(str(rt.call("gk_capmod:try_connect", {"127.0.0.1", 9})) == "ok: network error: ConnectionRefusedError");
  CHECK(contains(str(rt.call("gk_capmod:try_connect", {"::1", 9})), "ok: network error: "));
  CHECK(str(rt.call("gk_capmod:try_connect", {"10.255.255.1", 9}))
        == "denied: capability denied by capabilities.network: socket.connect to ('10.255.255.1', 9) (network = "
           "\"loopback\": only 127.0.0.0/8, ::1 and localhost)");
  check_denied(rt.call("gk_capmod:connect", {"192.0.2.1", 80}), "capabilities.network: ('192.0.2.1', 80)",
               "socket.connect to ('192.0.2.1', 80)");
  auto results = run_attempts(rt, R"PY(
import socket
attempt('dns', lambda: socket.getaddrinfo('example.com', 80))
attempt('gethostbyname', lambda: socket.gethostbyname('example.com'))
def bind_all():
    with socket.socket() as s:
        s.bind(('', 0))
attempt('bind all interfaces', bind_all)
def udp():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b'x', ('8.8.8.8', 53))
attempt('udp sendto', udp)
attempt('raw packet socket', lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
def connect_ex():
    with socket.socket() as s:
        s.connect_ex(('192.0.2.1', 80))
attempt('connect_ex', connect_ex)
attempt('adopted descriptor', lambda: socket.socket(fileno=0))
attempt('loopback lookup', lambda: socket.getaddrinfo('localhost', 80))
)PY");
  REQUIRE(results.size() == 8);
  for (std::size_t i = 0; i < 7; ++i) {
    INFO(results[i]);
    CHECK(contains(results[i], ": denied: capability denied by capabilities.network: "));
  }
  CHECK(results[7] == "loopback lookup: allowed");
}

TEST_CASE("capabilities: write_paths confines writes to the listed directories", "[capabilities][write]") {
  const std::string inside = test::temp_dir();
  const std::string outside = test::temp_dir();
  std::ofstream(outside + "/existing") << "keep";
  REQUIRE(symlink(outside.c_str(), (inside + "/dirlink").c_str()) == 0);
  REQUIRE(symlink((outside + "/existing").c_str(), (inside + "/filelink").c_str()) == 0);
  REQUIRE(symlink((outside + "/created").c_str(), (inside + "/dangling").c_str()) == 0);

  Runtime rt(test::test_config("[capabilities]\nwrite_paths = [\"" + inside + "\"]\n"));
  CHECK(str(rt.call("gk_capmod:try_write", {inside + "/a.txt"})) == "ok: " + inside + "/a.txt");
  CHECK(str(rt.call("gk_capmod:read_file", {outside + "/existing"})) == "keep");
  CHECK(str(rt.call("gk_capmod:try_write", {"/dev/null"})) == "ok: /dev/null");
  CHECK(str(rt.call("gk_capmod:try_write", {outside + "/b.txt"}))
        == "denied: capability denied by capabilities.write_paths: open for writing of \"" + outside
               + "/b.txt\" (not under write_paths)");
  check_denied(rt.call("gk_capmod:write_file", {outside + "/b.txt"}), "capabilities.write_paths: " + outside + "/b.txt",
               "open for writing of \"" + outside + "/b.txt\"");

  auto results = run_attempts(rt, "INSIDE = '" + inside + "'\nOUTSIDE = '" + outside + "'\n" + R"PY(
import os, shutil, sqlite3, tempfile
def write(path, mode='w'):
    with open(path, mode) as f:
        f.write('x')
attempt('dot-dot', lambda: write(INSIDE + '/../' + os.path.basename(OUTSIDE) + '/c'))
attempt('symlinked dir', lambda: write(INSIDE + '/dirlink/c'))
attempt('symlinked file', lambda: write(INSIDE + '/filelink', 'a'))
attempt('dangling symlink', lambda: write(INSIDE + '/dangling'))
attempt('read-write open', lambda: open(OUTSIDE + '/existing', 'r+').close())
attempt('os.open', lambda: os.close(os.open(OUTSIDE + '/d', os.O_WRONLY | os.O_CREAT)))
attempt('remove', lambda: os.remove(OUTSIDE + '/existing'))
attempt('rename out', lambda: os.rename(INSIDE + '/a.txt', OUTSIDE + '/a.txt'))
attempt('link in', lambda: os.link(OUTSIDE + '/existing', INSIDE + '/hard'))
attempt('mkdir', lambda: os.mkdir(OUTSIDE + '/dir'))
attempt('chmod', lambda: os.chmod(OUTSIDE + '/existing', 0o777))
attempt('rmtree', lambda: shutil.rmtree(OUTSIDE))
attempt('sqlite', lambda: sqlite3.connect(OUTSIDE + '/db.sqlite'))
attempt('mkstemp', lambda: tempfile.mkstemp(dir=OUTSIDE))
def unlink_at():
    fd = os.open(OUTSIDE, os.O_RDONLY)
    try:
        os.unlink('existing', dir_fd=fd)
    finally:
        os.close(fd)
attempt('unlink with dir_fd', unlink_at)
def unix_bind():
    import socket
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(OUTSIDE + '/sock')
attempt('AF_UNIX bind', unix_bind)
# Allowed: inside, through any path that lands inside.
attempt('inside via dot-dot', lambda: write(INSIDE + '/../' + os.path.basename(INSIDE) + '/e'))
attempt('inside sqlite', lambda: sqlite3.connect(INSIDE + '/db.sqlite').close())
attempt('inside mkdir and rmtree', lambda: (os.mkdir(INSIDE + '/sub'), shutil.rmtree(INSIDE + '/sub')))
attempt('inside rename', lambda: os.rename(INSIDE + '/a.txt', INSIDE + '/moved.txt'))
)PY");
  REQUIRE(results.size() == 20);
  for (std::size_t i = 0; i < 16; ++i) {
    INFO(results[i]);
    CHECK(contains(results[i], ": denied: capability denied by capabilities.write_paths: "));
  }
  for (std::size_t i = 16; i < 20; ++i)
    CHECK(contains(results[i], ": allowed"));
  CHECK(test::read_file(outside + "/existing") == "keep");
  struct stat st;
  CHECK(stat((outside + "/created").c_str(), &st) != 0);
}

TEST_CASE("capabilities: the strict profile denies everything that is not listed", "[capabilities][strict]") {
  Runtime rt(test::test_config("[capabilities]\nprofile = \"strict\"\n"));
  // Plain Python and the standard library work.
  CHECK(rt.call("gk_testmod:add", {2, 3})->as_int() == 5);
  CHECK(str(rt.call("gk_capmod:try_import", {"json"})) == "ok: json");
  CHECK(contains(str(rt.call("gk_capmod:try_fork")), "denied: capability denied by capabilities.fork"));
  CHECK(contains(str(rt.call("gk_capmod:try_subprocess")), "denied: capability denied by capabilities.subprocess"));
  CHECK(contains(str(rt.call("gk_capmod:try_connect", {"127.0.0.1", 9})),
                 "denied: capability denied by capabilities.network"));
  CHECK(str(rt.call("gk_capmod:try_write", {test::temp_dir() + "/x"})).rfind(
            "denied: capability denied by capabilities.write_paths: ", 0) == 0);
  CHECK(contains(str(rt.call("gk_capmod:try_write", {"/tmp/x"})), "(write_paths = []: no writes anywhere)"));
  CHECK(contains(str(rt.call("gk_capmod:try_import", {"gk_testext"})),
                 "denied: capability denied by capabilities.native_extensions"));
  CHECK(contains(str(rt.call("gk_capmod:try_import", {"ctypes"})),
                 "denied: capability denied by capabilities.native_extensions"));
  CHECK(rt.stats().capability_denials == 7);
}

TEST_CASE("capabilities: the cost of the audit hook per call, with and without rules", "[capabilities][cost]") {
  // Pinned to one CPU, so that every case pays the same hand-off (FACTS.md).
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  const bool pinned = sched_setaffinity(0, sizeof one, &one) == 0;
  const std::string data = test::temp_dir();
  std::ofstream(data + "/f") << "x";
  struct Case {
    std::string name;
    std::string toml;
  };
  const std::vector<Case> cases = {
      {"no hook (fork = \"allow\", nothing else)", "[capabilities]\nfork = \"allow\"\n"},
      {"default config (hook: fork denied)", ""},
      {"every rule", "[capabilities]\nallow_modules = [\"gk_capmod\"]\ndeny_modules = [\"ctypes\"]\n"
                     "native_extensions = \"deny\"\nsubprocess = \"deny\"\nnetwork = \"loopback\"\n"
                     "write_paths = [\"" + data + "\"]\n"},
      {"no hook again", "[capabilities]\nfork = \"allow\"\n"},
  };
  const int calls = 10000;
  for (auto& c : cases) {
    Runtime rt(test::test_config(c.toml));
    for (int i = 0; i < 2000; ++i)
      REQUIRE(rt.call("gk_capmod:noop").has_value());
    std::vector<double> us;
    us.reserve(calls);
    for (int i = 0; i < calls; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      auto r = rt.call("gk_capmod:noop");
      us.push_back(test::ms_since(t0) * 1000.0);
      REQUIRE(r.has_value());
    }
    std::sort(us.begin(), us.end());
    auto open_ns = rt.call("gk_capmod:time_opens", {data + "/f", 20000});
    auto event_ns = rt.call("gk_capmod:time_audit_events", {200000});
    REQUIRE(open_ns.has_value());
    REQUIRE(event_ns.has_value());
    char line[320];
    std::snprintf(line, sizeof line,
                  "%-40s call median %.2f us, p90 %.2f us; open() for reading %.0f ns; an unwatched "
                  "audit event %.0f ns%s",
                  c.name.c_str(), us[us.size() / 2], us[us.size() * 9 / 10], open_ns->as_number(),
                  event_ns->as_number(), pinned ? " (pinned to CPU 0)" : "");
    WARN(line);
    CHECK(rt.stats().capability_denials == 0);
  }
}
