// Getting a job ready, for `run` and `check`: loading its file, starting its
// runtime, checking that each stage's callable resolves (never calling it).

#include "cli/job_setup.hpp"
#include "cli/say.hpp"

namespace gk::cli {

bool load_job(const std::string& path, Config& job) {
  try {
    job = load_config_file(path);
  } catch (const ConfigError& e) {
    say(e.what());
    return false;
  }
  if (job.stages.empty()) {
    say(path + ": a job needs at least one [[stage]]; this file has none");
    return false;
  }
  return true;
}

void apply_log_options(Config& config, const std::string& file, const std::string& format) {
  if (file.empty() && format.empty())
    return;
  config.log.configured = true;
  if (!file.empty())
    config.log.file = file;
  if (!format.empty())
    config.log.format = format == "json" ? LogFormat::json : LogFormat::text;
}

std::unique_ptr<Runtime> start_runtime(const Config& job) {
  try {
    return std::make_unique<Runtime>(job);
  } catch (const RuntimeStartError& e) {
    say("cannot start the Python runtime: " + e.error().to_string());
  } catch (const ConfigError& e) {
    say(e.what());
  }
  return nullptr;
}

namespace {

std::string describe(const Error& e) {
  if (e.code == ErrorCode::python_exception && !e.type.empty())
    return e.type + ": " + e.message;
  return std::string(to_string(e.code)) + ": " + e.message;
}

// Imports a stage's module and resolves its callable, without calling it.
Error resolve_stage(Runtime& rt, const StageConfig& stage) {
  std::string module = stage.call.substr(0, stage.call.find(':'));
  if (auto imported = rt.import_module(module); !imported)
    return imported.error();
  RequestOptions as_ref;
  as_ref.want_ref = true;
  auto object = rt.getattr(stage.call, as_ref);
  if (!object)
    return object.error();
  List args;
  args.push_back(*object);
  auto callable = rt.call("builtins:callable", std::move(args));
  if (!callable)
    return callable.error();
  if (!callable->is_bool() || !callable->as_bool()) {
    std::string type = object->is_ref() ? object->as_ref().type_name() : "?";
    Error e(ErrorCode::bad_request, stage.call + " is not callable (its type is " + type + ")");
    e.where = stage.call;
    return e;
  }
  return {};
}

} // namespace

bool check_stages(Runtime& rt, const Config& job, std::FILE* out, bool print_ok) {
  bool all_ok = true;
  for (auto& stage : job.stages) {
    Error e = resolve_stage(rt, stage);
    std::string head = "stage \"" + stage.name + "\" (" + stage.call + "): ";
    if (e || print_ok)
      std::fprintf(out, "%s%s\n", head.c_str(), e ? describe(e).c_str() : "ok");
    all_ok = all_ok && !e;
  }
  return all_ok;
}

} // namespace gk::cli
