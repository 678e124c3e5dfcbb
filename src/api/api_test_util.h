// Shared by the API's handler tests: the backends they run against, and
// two requests on one io thread while one of them is held in the store.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "http/http.h"
#include "queue/queue.h"
#include "storage/change_feed.h"
#include "storage/store.h"
#include "support/gate.h"

namespace af {

// An in-memory SQLite store behind a change feed, and an in-memory embedded
// queue (whose messages a test can read). Fails the test if either does
// not open.
inline void OpenInMemoryBackends(std::shared_ptr<ChangeFeed>& feed, std::unique_ptr<Store>& store,
                                 std::unique_ptr<Queue>& queue) {
  auto s = OpenStore(StoreOptions{":memory:"});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  feed = std::make_shared<ChangeFeed>();
  store = WithChangeFeed(std::move(s).value(), feed);
  auto q = OpenEmbeddedQueue(QueueOptions{""});
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  queue = std::move(q).value();
}

// A request as the HTTP server hands it to the router (before routing):
// `path` may carry a query string; a JSON Content-Type is added when `body`
// is not empty.
inline http::Request MakeRequest(const std::string& method, const std::string& path, const std::string& body = "",
                                 http::Headers headers = {}) {
  http::Request req;
  req.method = method;
  req.target = path;
  auto q = path.find('?');
  req.path = path.substr(0, q);
  if (q != std::string::npos) req.query = http::ParseQuery(path.substr(q + 1));
  req.body = body;
  req.headers = std::move(headers);
  if (!body.empty()) req.headers.emplace_back("Content-Type", "application/json");
  return req;
}

// Dispatches `held` and then `other` through `router` on one io thread (as
// a server's), with `gate` holding a store call of `held` until `other` has
// been answered. Fails the test if `held` never reaches the store or `other`
// waits for it (20 s each); both answers are set when it returns, the gate
// open.
inline void ExpectAnsweredWhileHeld(const http::Router& router, http::Request& held, http::Request& other,
                                    testing_support::Gate& gate, http::Response& held_answer,
                                    http::Response& other_answer) {
  std::promise<void> other_answered;
  boost::asio::io_context ioc;
  boost::asio::co_spawn(
      ioc, [&]() -> boost::asio::awaitable<void> { held_answer = co_await router.Dispatch(held); },
      boost::asio::detached);
  boost::asio::co_spawn(
      ioc,
      [&]() -> boost::asio::awaitable<void> {
        other_answer = co_await router.Dispatch(other);
        other_answered.set_value();
      },
      boost::asio::detached);
  std::thread io([&ioc] { ioc.run(); });
  EXPECT_TRUE(gate.WaitForCall(std::chrono::seconds(20))) << "the held request did not reach the store";
  EXPECT_EQ(other_answered.get_future().wait_for(std::chrono::seconds(20)), std::future_status::ready)
      << "the other request waited for the held one's database call";
  gate.Open();  // also on a failure: the held call ends, then the io thread
  io.join();
}

}  // namespace af
