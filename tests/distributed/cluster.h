// The seed's topology for tests: PostgreSQL, the Kafka test broker
// (librdkafka's mock cluster), `agentflow api`, `agentflow consumer`
// processes and the demo agents, each a real process on loopback.
// Shared by the distributed test programs (tests/distributed).
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "e2e/harness.h"
#include "support/kafka_mock.h"
#include "support/pg_server.h"

namespace af::e2e {

using namespace std::chrono_literals;
using test::PgServer;

// Settings that make the mock broker fast and group changes quick; with
// AGENTFLOW_TEST_KAFKA_DEBUG set (e.g. "cgrp"), librdkafka's debug contexts
// too, in each process's log.
inline std::vector<std::string> KafkaTestProps() {
  std::vector<std::string> props = {
      "--kafka-property", "fetch.wait.max.ms=5",       "--kafka-property", "session.timeout.ms=6000",
      "--kafka-property", "heartbeat.interval.ms=500", "--kafka-property", "linger.ms=0"};
  const char* debug = std::getenv("AGENTFLOW_TEST_KAFKA_DEBUG");
  if (debug != nullptr && *debug != '\0') {
    props.push_back("--kafka-property");
    props.push_back(std::string("debug=") + debug);
  }
  return props;
}
inline const std::vector<std::string> kKafkaTestProps = KafkaTestProps();

// The tail of every log file in `dir`, for failure reports.
inline std::string LogsIn(const std::filesystem::path& dir) {
  std::string out;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    out += "---- " + entry.path().filename().string() + "\n" + Tail(entry.path().string(), 3000);
  }
  return out;
}

// PostgreSQL + broker + api + N consumers + demo agents.
class Cluster {
 public:
  struct Options {
    int consumers = 1;
    std::vector<std::string> api_args;       // appended to `agentflow api`
    std::vector<std::string> consumer_args;  // appended to each `agentflow consumer`
  };
  explicit Cluster(PgServer* pg, int consumers = 1) : Cluster(pg, Options{consumers, {}, {}}) {}
  Cluster(PgServer* pg, Options options) : pg_(pg), options_(std::move(options)) {
    const int consumers = options_.consumers;
    auto db = pg_->NewDatabase();
    Require(db.ok(), "database: " + db.status().ToString());
    db_url_ = *db;
    db_name_ = db_url_.substr(db_url_.rfind('/') + 1);
    auto kafka = KafkaMock::Start();
    Require(kafka.ok(), "kafka mock: " + kafka.status().ToString());
    kafka_ = std::move(kafka).value();
    group_ = UniqueName("group");

    Server::Options api;
    api.log_dir = dir_.path().string();
    api.name = "api";
    api.command = {"api"};
    api.command.insert(api.command.end(), kKafkaTestProps.begin(), kKafkaTestProps.end());
    api.command.insert(api.command.end(), options_.api_args.begin(), options_.api_args.end());
    api.env = Env();
    api_ = std::make_unique<Server>(api);
    api_->Start();
    agents_ = std::make_unique<DemoAgents>(dir_.path().string());
    agents_->Start(api_->url());
    for (int i = 0; i < consumers; ++i) AddConsumer();
  }

  ~Cluster() {
    consumers_.clear();
    if (agents_) agents_->Stop();
    if (api_ && api_->running()) api_->Stop();
  }

  EnvOverrides Env() const {
    EnvOverrides env = {{"DATABASE_URL", db_url_}, {"KAFKA_BROKERS", kafka_->brokers()}, {"KAFKA_GROUP_ID", group_}};
    const char* debug = std::getenv("AGENTFLOW_TEST_KAFKA_DEBUG");
    if (debug != nullptr && *debug != '\0') env["LOG_LEVEL"] = "DEBUG";  // librdkafka's lines are debug lines
    return env;
  }

  // Starts one more consumer in the group; returns its index.
  size_t AddConsumer() {
    Server::Options c;
    c.log_dir = dir_.path().string();
    c.name = "consumer" + std::to_string(consumers_.size());
    c.command = {"consumer", "--grace-period", "5"};
    c.command.insert(c.command.end(), kKafkaTestProps.begin(), kKafkaTestProps.end());
    c.command.insert(c.command.end(), options_.consumer_args.begin(), options_.consumer_args.end());
    c.env = Env();
    consumers_.push_back(std::make_unique<Server>(c));
    consumers_.back()->Start();
    return consumers_.size() - 1;
  }

  Server& api() { return *api_; }
  Server& consumer(size_t i) { return *consumers_.at(i); }
  KafkaMock& kafka() { return *kafka_; }
  const std::string& db_url() const { return db_url_; }

  // Rows of a query against this cluster's database.
  std::vector<std::vector<std::string>> Query(const std::string& sql) {
    auto rows = pg_->Query(db_name_, sql);
    Require(rows.ok(), "query failed: " + rows.status().ToString() + "\n" + sql);
    return *rows;
  }
  std::string RunStatus(const std::string& run_id) {
    auto rows = Query("SELECT status FROM workflow_runs WHERE id = '" + run_id + "'");
    return rows.empty() ? "" : rows[0][0];
  }

  std::string Logs() const { return LogsIn(dir_.path()); }

 private:
  PgServer* pg_;
  Options options_;
  TempDir dir_;
  std::string db_url_, db_name_, group_;
  std::unique_ptr<KafkaMock> kafka_;
  std::unique_ptr<Server> api_;
  std::unique_ptr<DemoAgents> agents_;
  std::vector<std::unique_ptr<Server>> consumers_;
};

inline PgServer* SharedPg() {
  auto pg = PgServer::Shared();
  Require(pg.ok(), "PostgreSQL: " + pg.status().ToString());
  return *pg;
}


inline json Plan(const std::string& name, const json& steps) { return json{{"name", name}, {"steps", steps}}; }

// Waits until every run in `ids` is terminal in the database.
inline void WaitAllTerminal(Cluster& c, const std::vector<std::string>& ids, std::chrono::seconds timeout) {
  std::string list;
  for (const auto& id : ids) list += (list.empty() ? "'" : ",'") + id + "'";
  bool done = WaitUntil(
      [&] {
        auto rows = c.Query("SELECT count(*) FROM workflow_runs WHERE id IN (" + list +
                            ") AND status IN ('COMPLETED','FAILED','CANCELLED')");
        return std::stoul(rows[0][0]) == ids.size();
      },
      timeout, 100ms);
  Require(done, "runs did not all end within the timeout");
}

}  // namespace af::e2e
