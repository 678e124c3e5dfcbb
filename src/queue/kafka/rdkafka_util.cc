#include "queue/kafka/rdkafka_util.h"

#include "common/log.h"
#include "common/redact.h"

namespace af::kafka {
namespace {

// The same librdkafka complaint is logged at most this often.
constexpr std::chrono::seconds kLogEvery{10};

}  // namespace

Result<std::unique_ptr<RdKafka::Conf>> MakeConf(const Properties& props) {
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  std::string err;
  for (const auto& [k, v] : props) {
    if (conf->set(k, v, err) != RdKafka::Conf::CONF_OK) {
      // The value of a secret setting (sasl.password, ...) never reaches a message.
      return Status::InvalidArgument("Kafka property " + k + "=" + RedactSetting(k, v) + ": " + err +
                                     ". Hint: see librdkafka's CONFIGURATION.md for the valid properties and "
                                     "values (--kafka-property KEY=VALUE).");
    }
  }
  return conf;
}

void EventLogger::event_cb(RdKafka::Event& e) {
  switch (e.type()) {
    case RdKafka::Event::EVENT_ERROR:
      if (e.fatal()) {
        log::Error("Kafka " + who_ + ": fatal error: " + RdKafka::err2str(e.err()) + ": " + e.str());
      } else {
        Throttled("err" + std::to_string(static_cast<int>(e.err())), RdKafka::err2str(e.err()) + ": " + e.str());
      }
      break;
    case RdKafka::Event::EVENT_LOG:
      // Problems also arrive as error events (above); the log lines only
      // add detail, for LOG_LEVEL=DEBUG (with debug=... for librdkafka's).
      if (log::Enabled(log::Level::kDebug)) log::Debug("Kafka " + who_ + ": " + e.fac() + ": " + e.str());
      break;
    default:
      break;
  }
}

void EventLogger::Throttled(const std::string& kind, const std::string& msg) {
  size_t suppressed = 0;
  {
    std::lock_guard lk(mu_);
    auto now = Clock::now();
    auto& [last, count] = seen_[kind];
    if (last != Clock::time_point{} && now - last < kLogEvery) {
      ++count;
      return;
    }
    last = now;
    suppressed = count;
    count = 0;
  }
  std::string line = "Kafka " + who_ + ": " + msg;
  if (suppressed > 0) line += " (" + std::to_string(suppressed) + " similar suppressed)";
  log::Warn(line);
}

std::string BrokerHint(const std::string& brokers) {
  return ". Hint: check that the Kafka brokers " + brokers + " (KAFKA_BROKERS) are up and reachable from this host.";
}

}  // namespace af::kafka
