// One conformance suite for every Queue backend ("same suite, different
// store"): the embedded queue runs it in embedded/embedded_queue_test.cc and
// Kafka will run it the same way, so the backends cannot drift.
//
// A backend's test file instantiates it:
//
//   INSTANTIATE_TEST_SUITE_P(Embedded, QueueConformanceTest,
//                            ::testing::Values(QueueBackend{"file", MakeEnv, {}}),
//                            QueueBackendName);
//
// Every test uses topic and group names unique to the test (so backends
// whose tests share one broker need no cleanup). Tests never assert on time:
// `arrival_timeout` only bounds waits for messages that must arrive, and
// `absence_wait` is how long a test watches for messages that must not.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include <gtest/gtest.h>

#include "queue/queue.h"

namespace af {

// What a backend promises beyond the common contract in queue.h. The tests of
// a promise a backend does not make are skipped or weakened.
struct QueueCapabilities {
  // A queue re-opened after the previous one was destroyed (a restart) still
  // holds every unacked message. False for in-memory queues.
  bool durable = true;
  // One consumer sees messages in publish order across keys and topics.
  // Kafka orders only within a partition, i.e. per key.
  bool total_order = true;
  // After Close/restart exactly the unacked messages come back. Kafka (commit
  // offsets) may also redeliver acked messages that follow an unacked one.
  bool exact_redelivery = true;
  // Consumers of one group share the messages of a single topic and key one
  // by one. Kafka shares by partition only.
  bool per_message_sharing = true;
  // Upper bound on waiting for messages that must arrive.
  std::chrono::milliseconds arrival_timeout{10000};
  // How long to watch before concluding that no (more) messages arrive.
  std::chrono::milliseconds absence_wait{100};
};

// Opens queues for one test; a new env is made for every test.
class QueueTestEnv {
 public:
  virtual ~QueueTestEnv() = default;
  // Opens the queue. Called again after the previous queue (and its
  // consumers) was destroyed: a durable backend then re-opens the same queue,
  // as a restarted process would.
  virtual Result<std::unique_ptr<Queue>> Open() = 0;
};

struct QueueBackend {
  std::string name;  // the test name suffix: [A-Za-z0-9_]
  std::function<std::unique_ptr<QueueTestEnv>()> new_env;
  QueueCapabilities caps;
};

// Shows the backend's name in gtest's failure messages.
void PrintTo(const QueueBackend& backend, std::ostream* os);
// For INSTANTIATE_TEST_SUITE_P's name generator argument.
std::string QueueBackendName(const ::testing::TestParamInfo<QueueBackend>& info);

// Thread-safety: a gtest fixture; helpers run on the test's thread.
class QueueConformanceTest : public ::testing::TestWithParam<QueueBackend> {
 protected:
  void SetUp() override;
  void TearDown() override;

  const QueueCapabilities& caps() const { return GetParam().caps; }
  Queue& queue() { return *queue_; }
  // Destroys the queue and opens it again through the env (a restart).
  // Consumers must be destroyed first.
  void Reopen();
  // A topic or group name unique to this test run: "aft-<uuid>-<suffix>".
  std::string Topic(const std::string& suffix) const;
  std::string Group(const std::string& suffix) const;
  std::unique_ptr<QueueConsumer> Subscribe(const std::vector<std::string>& topics, const std::string& group);
  void Publish(const std::string& topic, const std::string& key, const std::string& payload);
  // Polls (at most `max_per_poll` at a time) until `n` messages arrived or
  // arrival_timeout passed; returns what arrived, acking nothing.
  std::vector<QueueMessage> PollN(QueueConsumer& c, size_t n, size_t max_per_poll = 1000);
  // Polls for absence_wait and returns whatever arrived (expected: nothing).
  std::vector<QueueMessage> PollQuiet(QueueConsumer& c);
  void AckAll(QueueConsumer& c, const std::vector<QueueMessage>& ms);

  std::unique_ptr<QueueTestEnv> env_;
  std::unique_ptr<Queue> queue_;
  std::string prefix_;
};

}  // namespace af
