// librdkafka helpers shared by agentflow's Kafka clients (the KafkaQueue
// here, the Kafka agent transport in src/agent/kafka/): building a
// configuration from kafka_config.h's property lists, setting callbacks, and
// routing librdkafka's events to agentflow's log. Backend-internal: only
// code that already uses librdkafka includes this header.
#pragma once

#include <librdkafka/rdkafkacpp.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "common/status.h"
#include "queue/kafka/kafka_config.h"

namespace af::kafka {

// A global configuration with `props` applied in order. InvalidArgument
// (naming the property, with a hint) if librdkafka rejects one.
Result<std::unique_ptr<RdKafka::Conf>> MakeConf(const Properties& props);

// Sets a callback object; librdkafka keeps the raw pointer, so `cb` must
// outlive the client.
template <typename Cb>
Status SetCallback(RdKafka::Conf& conf, const char* name, Cb* cb) {
  std::string err;
  if (conf.set(name, cb, err) != RdKafka::Conf::CONF_OK) return Status::Internal(std::string(name) + ": " + err);
  return Status::Ok();
}

// Routes librdkafka's error events to agentflow's log as warnings, at most
// one line per kind every 10 s (a broker outage otherwise logs every
// reconnect attempt), and its log lines as debug. `who` names the client in
// each line ("producer", "consumer (group g)").
// Thread-safety: safe from any thread (librdkafka's threads call it).
class EventLogger final : public RdKafka::EventCb {
 public:
  explicit EventLogger(std::string who) : who_(std::move(who)) {}

  void event_cb(RdKafka::Event& e) override;

  // Logs "Kafka <who>: <msg>" as a warning unless a message of this `kind`
  // was logged in the last 10 s (those are counted and reported with the
  // next one that is logged).
  void Throttled(const std::string& kind, const std::string& msg);

 private:
  using Clock = std::chrono::steady_clock;
  const std::string who_;
  std::mutex mu_;
  std::map<std::string, std::pair<Clock::time_point, size_t>> seen_;  // guarded by mu_
};

// ". Hint: check that the Kafka brokers <brokers> (KAFKA_BROKERS) are up and
// reachable from this host."
std::string BrokerHint(const std::string& brokers);

}  // namespace af::kafka
