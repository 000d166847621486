// Error::where names the target of the request, for every kind of error.
#include "../support.hpp"

#include <catch2/catch.hpp>

using namespace gk;
using namespace std::chrono_literals;

TEST_CASE("Error::where is the target of the request for Python errors, deadlines and batches", "[runtime][errors]") {
  Runtime rt(test::test_config());
  auto raised = rt.call("gk_testmod:raise_value_error", {"boom"});
  REQUIRE_FALSE(raised.has_value());
  CHECK(raised.error().where == "gk_testmod:raise_value_error");
  // The message names the request once, not "call call ...".
  CHECK(raised.error().to_string() == "python_exception: ValueError: boom");

  auto box = rt.call_ref("gk_testmod:make_box", {1});
  REQUIRE(box.has_value());
  auto missing = rt.call(*box, "nope");
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().where == "<gk_testmod.Box>.nope");

  auto import = rt.import_module("gk_no_such_module");
  REQUIRE_FALSE(import.has_value());
  CHECK(import.error().where == "gk_no_such_module");

  auto attr = rt.getattr("gk_testmod:no_such_attribute");
  REQUIRE_FALSE(attr.has_value());
  CHECK(attr.error().where == "gk_testmod:no_such_attribute");

  auto late = rt.call("gk_testmod:sleep_for", {1.0}, {}, RequestOptions::with_deadline(Deadline::after(50ms)));
  REQUIRE_FALSE(late.has_value());
  CHECK(late.error().code == ErrorCode::deadline_exceeded);
  CHECK(late.error().where == "gk_testmod:sleep_for");
  // The place is said once.
  CHECK(late.error().to_string().find("[gk_testmod:sleep_for]") == std::string::npos);

  auto queued = rt.call(*box, "add", {1}, {}, RequestOptions::with_deadline(Deadline::after(0ms)));
  REQUIRE_FALSE(queued.has_value());
  CHECK(queued.error().phase == DeadlinePhase::queued);
  CHECK(queued.error().where == "<gk_testmod.Box>.add");
  CHECK(queued.error().message.find("call call") == std::string::npos);

  auto batch = rt.batch({CallRequest{"gk_testmod:identity", {1}}, CallRequest{"gk_testmod:raise_value_error", {"x"}}});
  REQUIRE(batch.has_value());
  REQUIRE(batch->size() == 2);
  REQUIRE_FALSE((*batch)[1].has_value());
  CHECK((*batch)[1].error().where == "gk_testmod:raise_value_error");

  // A call on a Ref inside a batch that never starts names the object's
  // type and the method, once.
  CallRequest on_box("add", {1});
  on_box.self = *box;
  CallRequest late_call = on_box;
  late_call.deadline = Deadline::after(0ms);
  auto methods = rt.batch({on_box, late_call});
  REQUIRE(methods.has_value());
  REQUIRE(methods->size() == 2);
  REQUIRE_FALSE((*methods)[1].has_value());
  CHECK((*methods)[1].error().where == "<gk_testmod.Box>.add");
  CHECK((*methods)[1].error().message.rfind("call <gk_testmod.Box>.add:", 0) == 0);

  auto eval = rt.eval("1/0");
  REQUIRE_FALSE(eval.has_value());
  CHECK(eval.error().where.empty());
}
