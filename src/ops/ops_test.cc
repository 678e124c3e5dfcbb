// /healthz, /readyz, /metrics and the HTTP request metrics, on a real
// http::Server with controllable checks.
#include <atomic>
#include <future>

#include <gtest/gtest.h>

#include "http/http.h"
#include "ops/ops.h"
#include "support/prom_text.h"

namespace af::ops {
namespace {

namespace asio = boost::asio;

class OpsTest : public ::testing::Test {
 protected:
  void Start(EndpointsOptions options) {
    endpoints_ = std::make_unique<Endpoints>(&registry_, std::move(options));
    endpoints_->Register(router_);
    router_.Add("GET", "/api/things/{id}", [](http::Request& req) -> asio::awaitable<http::Response> {
      if (req.path_params["id"] == "missing") co_return http::JsonError(404, "NOT_FOUND", "no such thing");
      co_return http::JsonResponse(200, {{"id", req.path_params["id"]}});
    });
    router_.Add("POST", "/api/boom", [](http::Request&) -> asio::awaitable<http::Response> {
      throw std::runtime_error("boom");
      co_return http::Response{};
    });
    auto server = http::StartServer(http::ServerOptions{}, endpoints_->Instrument(router_.AsHandler()));
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }
  http::ClientResponse Get(const std::string& path, const std::string& method = "GET") {
    http::ClientRequest req;
    req.method = method;
    req.url = "http://127.0.0.1:" + std::to_string(server_->port()) + path;
    req.timeout = std::chrono::seconds(20);
    auto res = http::FetchSync(req);
    EXPECT_TRUE(res.ok()) << res.status().ToString();
    return res.ok() ? *res : http::ClientResponse{};
  }
  test::PromText Metrics() {
    http::ClientResponse res = Get("/metrics");
    EXPECT_EQ(res.status, 200);
    EXPECT_EQ(res.Header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    auto parsed = test::ParsePromText(res.body);
    EXPECT_TRUE(parsed.ok()) << parsed.status().ToString() << "\n" << res.body;
    return parsed.ok() ? *parsed : test::PromText{};
  }

  metrics::Registry registry_;
  http::Router router_;
  std::unique_ptr<Endpoints> endpoints_;  // before server_: outlives it
  std::unique_ptr<http::Server> server_;
};

TEST_F(OpsTest, ReadyzNamesWhatIsDownAndHealthzStaysOk) {
  std::atomic<bool> db_up{true};
  EndpointsOptions o;
  o.checks.push_back({"database", [&] { return db_up ? Status::Ok() : Status::Unavailable("connection refused"); }});
  o.checks.push_back({"kafka", [] { return Status::Ok(); }});
  o.health_details = [] { return nlohmann::json{{"active_runs", 3}, {"status", "ignored"}}; };
  Start(std::move(o));

  http::ClientResponse ready = Get("/readyz");
  EXPECT_EQ(ready.status, 200) << ready.body;
  auto body = nlohmann::json::parse(ready.body);
  EXPECT_EQ(body["status"], "ok");
  EXPECT_EQ(body["checks"], nlohmann::json({{"database", "ok"}, {"kafka", "ok"}}));
  EXPECT_EQ(body["down"], nlohmann::json::array());

  db_up = false;
  ready = Get("/readyz");
  EXPECT_EQ(ready.status, 503) << ready.body;
  body = nlohmann::json::parse(ready.body);
  EXPECT_EQ(body["status"], "unavailable");
  EXPECT_EQ(body["down"], nlohmann::json::array({"database"}));
  EXPECT_EQ(body["checks"]["database"], "connection refused");
  EXPECT_EQ(body["checks"]["kafka"], "ok");

  http::ClientResponse live = Get("/healthz");
  EXPECT_EQ(live.status, 200) << "liveness does not depend on the database";
  body = nlohmann::json::parse(live.body);
  EXPECT_EQ(body["status"], "ok");
  EXPECT_EQ(body["active_runs"], 3);

  db_up = true;
  EXPECT_EQ(Get("/readyz").status, 200);
}

TEST_F(OpsTest, ABlockedCheckDoesNotBlockTheServer) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> rounds{0};
  EndpointsOptions o;
  o.checks.push_back({"slow", [&, released] {
                        ++rounds;
                        released.wait();
                        return Status::Ok();
                      }});
  Start(std::move(o));
  auto pending = std::async(std::launch::async, [this] { return Get("/readyz").status; });
  // With the check blocked, the one io thread still answers.
  ASSERT_TRUE(http::FetchSync({"GET", "http://127.0.0.1:" + std::to_string(server_->port()) + "/healthz", {}, "",
                               std::chrono::seconds(10)})
                  .ok());
  EXPECT_EQ(Get("/api/things/1").status, 200);
  release.set_value();
  EXPECT_EQ(pending.get(), 200);
  EXPECT_GE(rounds.load(), 1);
}

TEST_F(OpsTest, AThrowingCheckCountsAsDown) {
  EndpointsOptions o;
  o.checks.push_back({"registry", []() -> Status { throw std::runtime_error("bad"); }});
  Start(std::move(o));
  http::ClientResponse r = Get("/readyz");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(nlohmann::json::parse(r.body)["down"], nlohmann::json::array({"registry"}));
}

TEST_F(OpsTest, RequestsAreMeasuredByRoutePatternAndStatus) {
  Start({});
  for (const char* id : {"a", "b", "c"}) EXPECT_EQ(Get(std::string("/api/things/") + id).status, 200);
  EXPECT_EQ(Get("/api/things/missing").status, 404);
  EXPECT_EQ(Get("/nowhere").status, 404);
  EXPECT_EQ(Get("/api/things/x", "DELETE").status, 405);
  EXPECT_EQ(Get("/api/boom", "POST").status, 500);
  test::PromText m = Metrics();
  const std::string h = "agentflow_http_request_duration_seconds_count";
  EXPECT_EQ(m.Value(h, {{"method", "GET"}, {"route", "/api/things/{id}"}, {"status", "200"}}), 3) << "not per raw path";
  EXPECT_EQ(m.Value(h, {{"method", "GET"}, {"route", "/api/things/{id}"}, {"status", "404"}}), 1);
  EXPECT_EQ(m.Value(h, {{"method", "GET"}, {"route", "unmatched"}, {"status", "404"}}), 1);
  EXPECT_EQ(m.Value(h, {{"method", "DELETE"}, {"route", "unmatched"}, {"status", "405"}}), 1);
  EXPECT_EQ(m.Value(h, {{"method", "POST"}, {"route", "/api/boom"}, {"status", "500"}}), 1);
  EXPECT_EQ(m.Sum(h, {{"route", "/api/things/a"}}), 0);
  // The scrape itself is counted from the next one on.
  EXPECT_EQ(Metrics().Value(h, {{"method", "GET"}, {"route", "/metrics"}, {"status", "200"}}), 1);
}

TEST(ReadinessTest, ToJsonListsEveryCheck) {
  Readiness r = RunChecks({{"database", [] { return Status::Ok(); }},
                           {"queue", [] { return Status::Unavailable("closed"); }},
                           {"none", nullptr}});
  EXPECT_FALSE(r.ready());
  EXPECT_EQ(r.http_status(), 503);
  nlohmann::json j = r.ToJson();
  EXPECT_EQ(j["down"], nlohmann::json::array({"queue", "none"}));
  EXPECT_EQ(j["checks"]["database"], "ok");
  EXPECT_EQ(j["checks"]["queue"], "closed");
}

}  // namespace
}  // namespace af::ops
