// spawn_workers: a pool of worker actors that mix C++ work with Python calls, without blocking threads.
#include <gilkeeper/gilkeeper.hpp>
#include <gilkeeper/runtime/workers.hpp>

#include <iostream>
#include <string>
#include <thread>
#include <vector>

int main() {
  // 1. A runtime. Python code lives in examples/python (slow.py, textstats.py).
  gk::Config config = gk::parse_config(std::string("[python]\npath = [\"") + GK_EXAMPLES_DIR + "/python\"]\n");
  gk::Runtime rt(config);

  // 2. A pool of 8 workers behind one handle. Each input is a sentence:
  //    the worker counts words in C++, asks Python for a score, and packs
  //    the answer in C++ again. While Python runs, the worker's thread is
  //    free to serve others: the call is an asynchronous request.
  auto pool = gk::spawn_worker_pool(rt, 8, [](const gk::Value& input) {
    const std::string& text = input.as_string();
    std::int64_t words = 0;
    bool in_word = false;
    for (char ch : text) {
      bool letter = ch != ' ';
      words += letter && !in_word;
      in_word = letter;
    }
    return gk::WorkerReply::python(gk::CallRequest{"textstats:score", {text}})
        .then([words](gk::Expected<gk::Value> score) -> gk::WorkerReply {
          if (!score)
            return score.error();  // errors travel as values
          return gk::Value::dict({{"words", words}, {"score", *score}});
        });
  });

  // 3. Plain threads ask the pool and wait for the answers.
  std::vector<std::string> sentences = {"the quick brown fox", "jumps over", "the lazy dog",
                                        "actors share nothing", "deadlines always fire"};
  std::vector<gk::Expected<gk::Value>> answers(sentences.size());
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < sentences.size(); ++i)
    threads.emplace_back([&, i] { answers[i] = gk::ask(rt, pool, sentences[i]); });
  for (auto& t : threads)
    t.join();

  bool ok = true;
  for (std::size_t i = 0; i < sentences.size(); ++i) {
    if (answers[i])
      std::cout << '"' << sentences[i] << "\" -> " << answers[i]->repr() << "\n";
    else
      std::cout << '"' << sentences[i] << "\" -> " << answers[i].error().to_string() << "\n";
    ok = ok && answers[i].has_value();
  }
  return ok ? 0 : 1;
}
