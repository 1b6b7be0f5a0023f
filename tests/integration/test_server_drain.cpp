// The socket server's drain timeout against work that answers its cancel at once, as a runner
// does when it sees the cancel before the server has answered: a real server on a real Unix
// socket, a real client.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "api/client/client.h"
#include "api/server/server.h"
#include "tests/integration/daemon_test_helpers.h"

namespace {

namespace v1 = sparkd::v1;
using sparkd::Status;
using sparkd::StatusCode;
using sparkd::api::Call;

// Never finishes a request by itself; a cancelled one is answered from the cancel hook, on
// the spot, with the plain reason a runner gives.
class AnswersCancelAtOnce : public sparkd::api::RequestHandler {
 public:
  void handle(const v1::Request& /*request*/, std::shared_ptr<Call> call) override {
    std::weak_ptr<Call> weak = call;
    call->on_cancel([weak] {
      if (auto c = weak.lock())
        c->fail(Status(StatusCode::kCancelled, "the request was cancelled"));
    });
    std::lock_guard<std::mutex> lock(mutex_);
    calls_.push_back(std::move(call));
    received_.notify_all();
  }

  bool wait_for_request() {
    std::unique_lock<std::mutex> lock(mutex_);
    return received_.wait_for(lock, std::chrono::seconds(30), [&] { return !calls_.empty(); });
  }

 private:
  std::mutex mutex_;
  std::condition_variable received_;
  std::vector<std::shared_ptr<Call>> calls_;
};

}  // namespace

TEST_CASE("server: at the drain timeout the caller hears the drain's reason, not the work's",
          "[server]") {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("sparkd-drain-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  sparkd::api::ServerOptions options;
  options.socket_path = (dir / "sparkd.sock").string();
  AnswersCancelAtOnce handler;
  auto server = sparkd::api::Server::create(options, handler);
  REQUIRE(server.has_value());
  std::thread loop([&] { (*server)->run(); });

  auto client = sparkd::api::Client::connect(options.socket_path);
  REQUIRE(client.has_value());
  v1::Request request = sparkd::testing::generate_request("gen", "keep going", 100, true);
  request.set_id(7);
  REQUIRE(client->send(request).is_ok());
  REQUIRE(handler.wait_for_request());
  (*server)->shutdown(std::chrono::milliseconds(0));

  auto response = client->receive(std::chrono::seconds(30));
  REQUIRE(response.has_value());
  CHECK(response->id() == 7);
  CHECK(response->final());
  CHECK(response->error().code() == v1::CANCELLED);
  CHECK(response->error().message() ==
        "sparkd is shutting down: the drain timeout (server.drain_timeout_s) ended this request "
        "before it finished");
  loop.join();
  server->reset();
  std::filesystem::remove_all(dir);
}
