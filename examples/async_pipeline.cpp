// async_pipeline: a three-stage pipeline (Python, C++, Python) with backpressure, retries and ordered output.
#include <gilkeeper/gilkeeper.hpp>
#include <gilkeeper/runtime/pipeline.hpp>

#include <chrono>
#include <iostream>
#include <string>

int main() {
  using namespace std::chrono_literals;
  gk::Runtime rt(gk::parse_config(std::string("[python]\npath = [\"") + GK_EXAMPLES_DIR + "/python\"]\n"));

  // Stage 1 (Python): normalise the record's text, in batches of 32.
  // Stage 2 (C++): reject empty texts.
  // Stage 3 (Python): score the text, at most 200 ms per record; a crashed
  //                   worker (with process isolation) is retried twice.
  gk::RetryPolicy retry;
  retry.attempts = 3;
  retry.on = {gk::ErrorCode::worker_crashed};
  gk::PipelineOptions options;
  options.max_in_flight = 64;  // a slow stage slows the source, memory stays flat
  gk::Pipeline pipeline(
      rt,
      {gk::Stage::python("normalise", "textstats:normalise").with_batch(32),
       gk::Stage::cpp("non_empty",
                      [](const gk::Value& rec) -> gk::Expected<gk::Value> {
                        auto text = rec.get<std::string>("text");  // a conversion error if absent or not a str
                        if (!text)
                          return text.error();
                        if (text->empty())
                          return gk::Error(gk::ErrorCode::bad_input, "empty text");
                        return rec;
                      }),
       gk::Stage::cpp("text", [](const gk::Value& rec) -> gk::Expected<gk::Value> { return rec.get("text"); }),
       gk::Stage::python("score", "textstats:score").with_timeout(gk::Timeout::after(200ms)).with_retry(retry)},
      options);

  std::size_t shown = 0;
  pipeline.on_output([&](gk::Output&& out) {
    if (shown++ < 5)
      std::cout << "record " << out.id << " -> score " << out.value.repr() << "\n";
  });
  pipeline.on_failure([](gk::Failure&& f) {
    std::cout << "record " << f.id << " failed at stage " << f.stage << ": " << f.error.to_string() << "\n";
  });

  // The source: push blocks whenever 64 records are in flight.
  for (std::uint64_t i = 0; i < 1000; ++i) {
    std::string text = i % 250 == 7 ? "   " : "Record number " + std::to_string(i) + " Says Hello";
    pipeline.push(i, gk::Value::dict({{"id", static_cast<std::int64_t>(i)}, {"text", text}}));
  }
  pipeline.close();
  gk::PipelineReport report = pipeline.wait();

  std::cout << report.ok << " ok, " << report.failed << " failed in " << report.elapsed_s << " s; at most "
            << report.max_in_flight_seen << " in flight\n";
  for (auto& s : report.stages)
    std::cout << "  " << s.name << ": " << s.calls << " calls, p50 " << s.p50_ms << " ms, p99 " << s.p99_ms
              << " ms\n";
  return report.ok == 996 && report.failed == 4 ? 0 : 1;
}
