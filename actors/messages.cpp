#include "gilkeeper/actors/messages.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace gk {

caf::error to_caf_error(Error e) {
  auto code = static_cast<std::uint8_t>(e.code);
  return caf::error(code, error_category, caf::make_message(std::move(e)));
}

Error from_caf_error(const caf::error& e) {
  if (!e)
    return Error();
  if (e.category() == error_category) {
    if (e.context().match_elements<Error>())
      return e.context().get_as<Error>(0);
    return Error(static_cast<ErrorCode>(e.code()), "gilkeeper error without details");
  }
  if (e.category() == caf::atom("system")) {
    auto s = static_cast<caf::sec>(e.code());
    if (s == caf::sec::request_timeout)
      return Error::deadline(DeadlinePhase::soft, "the request timed out in the actor system");
    if (s == caf::sec::request_receiver_down)
      return Error(ErrorCode::runtime_stopped, "the runtime actor is gone");
  }
  if (e.category() == caf::atom("exit"))
    return Error(ErrorCode::runtime_stopped, "the runtime actor exited");
  return Error(ErrorCode::internal, "actor system error: code " + std::to_string(e.code()));
}

void announce_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<Value>("gk::Value");
  cfg.add_message_type<Error>("gk::Error");
  cfg.add_message_type<ImportRequest>("gk::ImportRequest");
  cfg.add_message_type<CallRequest>("gk::CallRequest");
  cfg.add_message_type<EvalRequest>("gk::EvalRequest");
  cfg.add_message_type<ExecRequest>("gk::ExecRequest");
  cfg.add_message_type<GetattrRequest>("gk::GetattrRequest");
  cfg.add_message_type<ReleaseRequest>("gk::ReleaseRequest");
  cfg.add_message_type<BatchRequest>("gk::BatchRequest");
  cfg.add_message_type<BatchReply>("gk::BatchReply");
  cfg.add_message_type<StatsRequest>("gk::StatsRequest");
  cfg.add_message_type<Stats>("gk::Stats");
  cfg.add_message_type<ShutdownRequest>("gk::ShutdownRequest");
  cfg.add_message_type<ShutdownReport>("gk::ShutdownReport");
  cfg.add_message_type<NodeInfoRequest>("gk::NodeInfoRequest");
  cfg.add_message_type<NodeInfo>("gk::NodeInfo");
  cfg.add_message_type<HostCallMessage>("gk::HostCallMessage");
}

void register_error_category(caf::actor_system_config& cfg) {
  cfg.add_error_category(error_category, [](std::uint8_t code, caf::atom_value, const caf::message& ctx) {
    if (ctx.match_elements<Error>())
      return ctx.get_as<Error>(0).to_string();
    return std::string("gilkeeper error: ") + to_string(static_cast<ErrorCode>(code));
  });
}

} // namespace gk
