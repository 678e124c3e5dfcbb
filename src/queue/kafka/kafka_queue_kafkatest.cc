// KafkaQueue against a broker: the queue conformance suite plus what only
// Kafka has (keys and partitions on the wire, offset commits, rebalances,
// max.poll.interval.ms, broker outages). The broker is agentflow-kafka-mock
// (librdkafka's mock cluster), one per test process (ctest runs each test in
// its own process); names are unique per test.
//
// Timing of the mock (librdkafka 2.0.2): a new group's first join takes 3 s
// (its group.initial.rebalance.delay), each later rebalance round
// session.timeout.ms - 1 s. The settings below keep those short; a session
// timeout under 3.x s would expire members during the first join.
#include <librdkafka/rdkafkacpp.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "common/ids.h"
#include "common/log.h"
#include "queue/kafka/kafka_queue.h"
#include "queue/messages.h"
#include "queue/queue_conformance.h"
#include "support/kafka_mock.h"

namespace af {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr int kPartitions = 4;  // the mock auto-creates topics with 4 partitions
constexpr auto kArrival = seconds(15);
constexpr auto kAbsence = seconds(5);

// One mock cluster per test process, started on first use (not while ctest
// lists the tests) and killed at exit.
KafkaMock& Mock() {
  static std::unique_ptr<KafkaMock> mock = [] {
    log::InitFromEnv();  // LOG_LEVEL=DEBUG shows librdkafka's log (with AF_KAFKA_DEBUG=cgrp,...)
    auto m = KafkaMock::Start();
    if (!m.ok()) {
      ADD_FAILURE() << m.status().ToString();
      std::abort();
    }
    return std::move(m).value();
  }();
  return *mock;
}

// Low-latency settings for the mock; production keeps librdkafka's defaults.
QueueOptions TestOptions(const std::string& brokers) {
  QueueOptions o;
  o.kafka_brokers = brokers;
  o.client_id = "af-kafkatest";
  o.kafka_properties = {
      {"fetch.wait.max.ms", "5"},        // the mock answers a fetch only when this expires
      {"session.timeout.ms", "4000"},    // rebalance rounds take session - 1 s on the mock
      {"heartbeat.interval.ms", "500"},
      {"reconnect.backoff.max.ms", "500"},
  };
  if (const char* d = std::getenv("AF_KAFKA_DEBUG")) o.kafka_properties["debug"] = d;
  return o;
}

class KafkaEnv final : public QueueTestEnv {
 public:
  Result<std::unique_ptr<Queue>> Open() override { return OpenKafkaQueue(TestOptions(Mock().brokers())); }
};

QueueBackend KafkaBackend() {
  QueueCapabilities caps;
  caps.durable = true;                // the cluster keeps messages and offsets across a client restart
  caps.total_order = false;           // order per partition (key) only
  caps.exact_redelivery = false;      // commits are positions: acked messages behind an unacked one return
  caps.per_message_sharing = false;   // a group shares partitions, not messages
  caps.arrival_timeout = kArrival;    // a join (3 s) plus a few rebalance rounds (3 s each)
  caps.absence_wait = kAbsence;       // longer than a join: a new member must have had its chance
  return QueueBackend{"Kafka", [] { return std::make_unique<KafkaEnv>(); }, caps};
}

INSTANTIATE_TEST_SUITE_P(Kafka, QueueConformanceTest, ::testing::Values(KafkaBackend()), QueueBackendName);

// --- Kafka-specific ----------------------------------------------------------

// Java's (and librdkafka's murmur2_random) key hash, to check partitioning.
uint32_t Murmur2(const std::string& key) {
  const uint32_t m = 0x5bd1e995;
  const size_t len = key.size();
  uint32_t h = 0x9747b28c ^ static_cast<uint32_t>(len);
  auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(key[i])); };
  size_t i = 0;
  for (; i + 4 <= len; i += 4) {
    uint32_t k = byte(i) | byte(i + 1) << 8 | byte(i + 2) << 16 | byte(i + 3) << 24;
    k *= m;
    k ^= k >> 24;
    k *= m;
    h *= m;
    h ^= k;
  }
  switch (len % 4) {
    case 3:
      h ^= byte(i + 2) << 16;
      [[fallthrough]];
    case 2:
      h ^= byte(i + 1) << 8;
      [[fallthrough]];
    case 1:
      h ^= byte(i);
      h *= m;
  }
  h ^= h >> 13;
  h *= m;
  h ^= h >> 15;
  return h;
}

int32_t JavaPartition(const std::string& key, int partitions) {
  return static_cast<int32_t>((Murmur2(key) & 0x7fffffff) % static_cast<uint32_t>(partitions));
}

std::vector<std::string> Payloads(const std::vector<QueueMessage>& ms) {
  std::vector<std::string> out;
  for (const auto& m : ms) out.push_back(m.payload);
  return out;
}

std::multiset<std::string> PayloadSet(const std::vector<QueueMessage>& ms) {
  std::multiset<std::string> out;
  for (const auto& m : ms) out.insert(m.payload);
  return out;
}

class KafkaQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    prefix_ = "afk-" + NewUuid();
    queue_ = Open(TestOptions(Mock().brokers()));
    ASSERT_NE(queue_, nullptr);
  }

  static std::unique_ptr<Queue> Open(const QueueOptions& o) {
    auto q = OpenKafkaQueue(o);
    EXPECT_TRUE(q.ok()) << q.status().ToString();
    return q.ok() ? std::move(q).value() : nullptr;
  }
  std::string Name(const std::string& suffix) const { return prefix_ + "-" + suffix; }
  std::unique_ptr<QueueConsumer> Sub(Queue& q, const std::vector<std::string>& topics, const std::string& group) {
    auto c = q.Subscribe(topics, group);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }
  void Publish(const std::string& topic, const std::string& key, const std::string& payload) {
    Status s = queue_->Publish(topic, key, payload);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  // Polls until n messages arrived or kArrival passed.
  static std::vector<QueueMessage> PollN(QueueConsumer& c, size_t n) {
    std::vector<QueueMessage> got;
    auto deadline = Clock::now() + kArrival;
    while (got.size() < n && Clock::now() < deadline) {
      auto r = c.Poll(n - got.size(), milliseconds(200));
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      if (!r.ok()) break;
      for (auto& m : *r) got.push_back(std::move(m));
    }
    return got;
  }
  static std::vector<QueueMessage> PollQuiet(QueueConsumer& c) {
    std::vector<QueueMessage> got;
    auto deadline = Clock::now() + kAbsence;
    while (Clock::now() < deadline) {
      auto r = c.Poll(100, milliseconds(200));
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      if (!r.ok()) break;
      for (auto& m : *r) got.push_back(std::move(m));
    }
    return got;
  }

  std::string prefix_;
  std::unique_ptr<Queue> queue_;
};

TEST(KafkaTestHelpers, Murmur2MatchesJava) {
  // Values from Kafka's own UtilsTest (signed in Java).
  EXPECT_EQ(static_cast<int32_t>(Murmur2("21")), -973932308);
  EXPECT_EQ(static_cast<int32_t>(Murmur2("foobar")), -790332482);
  EXPECT_EQ(static_cast<int32_t>(Murmur2("a-little-bit-long-string")), -985981536);
  EXPECT_EQ(static_cast<int32_t>(Murmur2("a-little-bit-longer-string")), -1486304829);
  EXPECT_EQ(static_cast<int32_t>(Murmur2("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8")), -58897971);
  EXPECT_EQ(static_cast<int32_t>(Murmur2("abc")), 479470107);
}

// What another Kafka client sees: read with a plain librdkafka consumer
// (manual assignment, no group join).
TEST_F(KafkaQueueTest, MessagesOnTheWireAreKeyedByRunIdWithTheExactPayload) {
  const std::string topic = Name("wire");
  ExecutionRequest req;
  req.run_id = "run-" + NewUuid();
  req.workflow_plan = json::parse(R"({"name":"w","steps":[{"id":"s1","agent":"echo","input":{"x":"caf\u00e9"}}]})");
  req.input_data = json{{"n", 1}};
  req.timestamp = 1764000000000;
  const std::string exec = SerializeExecutionRequest(req);
  CancellationRequest cancel{req.run_id, "user@example.com", "User requested cancellation", 1764000000001};
  const std::string cancel_payload = SerializeCancellationRequest(cancel);
  const std::string binary("\0\xff\x01payload", 10);
  std::vector<std::pair<std::string, std::string>> sent = {
      {req.run_id, exec}, {req.run_id, cancel_payload}, {"run-b", binary}, {"run-c", "x"}, {"run-b", "second"}};
  for (const auto& [k, p] : sent) Publish(topic, k, p);

  std::string err;
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  ASSERT_EQ(conf->set("bootstrap.servers", Mock().brokers(), err), RdKafka::Conf::CONF_OK) << err;
  ASSERT_EQ(conf->set("group.id", Name("reader"), err), RdKafka::Conf::CONF_OK) << err;
  ASSERT_EQ(conf->set("fetch.wait.max.ms", "5", err), RdKafka::Conf::CONF_OK) << err;
  std::unique_ptr<RdKafka::KafkaConsumer> reader(RdKafka::KafkaConsumer::create(conf.get(), err));
  ASSERT_NE(reader, nullptr) << err;
  std::vector<RdKafka::TopicPartition*> parts;
  for (int p = 0; p < kPartitions; ++p) {
    parts.push_back(RdKafka::TopicPartition::create(topic, p, RdKafka::Topic::OFFSET_BEGINNING));
  }
  ASSERT_EQ(reader->assign(parts), RdKafka::ERR_NO_ERROR);
  RdKafka::TopicPartition::destroy(parts);

  std::map<int32_t, std::vector<std::pair<std::string, std::string>>> by_partition;
  size_t received = 0;
  auto deadline = Clock::now() + kArrival;
  while (received < sent.size() && Clock::now() < deadline) {
    std::unique_ptr<RdKafka::Message> m(reader->consume(200));
    if (m->err() != RdKafka::ERR_NO_ERROR) continue;
    ASSERT_NE(m->key_pointer(), nullptr) << "message without a key";
    std::string key(static_cast<const char*>(m->key_pointer()), m->key_len());
    std::string payload(static_cast<const char*>(m->payload()), m->len());
    EXPECT_EQ(m->partition(), JavaPartition(key, kPartitions)) << "key " << key << " not partitioned as Java does";
    by_partition[m->partition()].emplace_back(key, payload);
    ++received;
  }
  reader->close();
  ASSERT_EQ(received, sent.size());
  // Per key, in publish order, byte for byte.
  std::map<std::string, std::vector<std::string>> got_by_key, want_by_key;
  for (const auto& [p, ms] : by_partition) {
    for (const auto& [k, payload] : ms) got_by_key[k].push_back(payload);
  }
  for (const auto& [k, p] : sent) want_by_key[k].push_back(p);
  EXPECT_EQ(got_by_key, want_by_key);
  // The payload is the seed's message format, unchanged.
  auto parsed = ParseQueueMessage(got_by_key[req.run_id].at(0));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(std::get<ExecutionRequest>(*parsed).run_id, req.run_id);
}

// Acks in any order commit only each partition's acked prefix: after a
// restart the group resumes at the first unacked offset of every partition.
TEST_F(KafkaQueueTest, OutOfOrderAcksCommitOnlyTheContiguousPrefixPerPartition) {
  const std::string topic = Name("acks"), group = Name("g");
  // Two keys on different partitions, 6 messages each.
  const std::string k1 = "run-a";
  std::string k2;
  for (int i = 0; k2.empty() || JavaPartition(k2, kPartitions) == JavaPartition(k1, kPartitions); ++i) {
    k2 = "run-" + std::to_string(i);
  }
  for (int i = 0; i < 6; ++i) {
    Publish(topic, k1, "a" + std::to_string(i));
    Publish(topic, k2, "b" + std::to_string(i));
  }
  std::vector<QueueMessage> lost_on_close;
  {
    auto c = Sub(*queue_, {topic}, group);
    ASSERT_NE(c, nullptr);
    c->SetRevokedHandler([&](const std::vector<QueueMessage>& lost) {
      lost_on_close.insert(lost_on_close.end(), lost.begin(), lost.end());
    });
    auto got = PollN(*c, 12);
    ASSERT_EQ(got.size(), 12u);
    std::map<std::string, QueueMessage> by_payload;
    for (const auto& m : got) by_payload[m.payload] = m;
    // Key a: 5, 3, 0, 1 acked -> position 2. Key b: 0..3 acked in reverse -> position 4.
    for (const char* p : {"a5", "a3", "a0", "a1", "b3", "b2", "b1", "b0"}) {
      EXPECT_TRUE(c->Ack(by_payload.at(p)).ok()) << p;
    }
    c->Close();
  }
  // Close handed the still unacked messages to the handler.
  EXPECT_EQ(PayloadSet(lost_on_close), (std::multiset<std::string>{"a2", "a4", "b4", "b5"}));

  auto c = Sub(*queue_, {topic}, group);
  ASSERT_NE(c, nullptr);
  auto again = PollN(*c, 6);
  for (const auto& m : PollQuiet(*c)) again.push_back(m);
  // Exactly from the first unacked offset on: a2..a5 (a3, a5 acked but
  // behind a2) and b4, b5.
  EXPECT_EQ(PayloadSet(again), (std::multiset<std::string>{"a2", "a3", "a4", "a5", "b4", "b5"}));
}

// A second member joins: the first gives up some partitions (cooperative
// rebalance) and its handler hears, before they go, exactly its unacked
// messages of those partitions; the new owner then gets exactly those.
TEST_F(KafkaQueueTest, RebalanceHandsUnackedMessagesOfMovedPartitionsToTheNewOwner) {
  const std::string topic = Name("rebalance"), group = Name("g");
  // Declared before `a`: a's destructor closes it, which hands its unacked
  // messages to the handler below one last time.
  std::vector<std::vector<QueueMessage>> revocations;
  auto a = Sub(*queue_, {topic}, group);
  ASSERT_NE(a, nullptr);
  a->SetRevokedHandler([&](const std::vector<QueueMessage>& lost) { revocations.push_back(lost); });

  // One key per partition, 4 messages each, the first 2 acked: each
  // partition's acked messages are a prefix, so what comes back is exactly
  // the unacked rest.
  std::map<int32_t, std::string> key_of_partition;
  for (int i = 0; key_of_partition.size() < static_cast<size_t>(kPartitions); ++i) {
    std::string k = "run-" + std::to_string(i);
    key_of_partition.try_emplace(JavaPartition(k, kPartitions), k);
  }
  size_t total = 0;
  for (const auto& [p, k] : key_of_partition) {
    for (int j = 0; j < 4; ++j) {
      Publish(topic, k, k + "/" + std::to_string(j));
      ++total;
    }
  }
  auto got = PollN(*a, total);
  ASSERT_EQ(got.size(), total);
  std::map<int32_t, std::set<std::string>> unacked_by_partition;
  for (const auto& m : got) {
    char j = m.payload.back();
    if (j == '0' || j == '1') {
      ASSERT_TRUE(a->Ack(m).ok());
    } else {
      unacked_by_partition[m.partition].insert(m.payload);
    }
  }
  ASSERT_EQ(unacked_by_partition.size(), static_cast<size_t>(kPartitions));
  // Let the acks' commit go out before the group changes.
  ASSERT_TRUE(a->Poll(0, milliseconds(300)).ok());
  EXPECT_TRUE(revocations.empty());

  auto b = Sub(*queue_, {topic}, group);
  ASSERT_NE(b, nullptr);
  std::vector<QueueMessage> got_b;
  std::multiset<std::string> lost;
  auto deadline = Clock::now() + 2 * kArrival;
  while (Clock::now() < deadline) {
    // The first member's executor is "full": it keeps its membership with
    // Poll(0) and takes nothing.
    auto ra = a->Poll(0, milliseconds(100));
    ASSERT_TRUE(ra.ok()) << ra.status().ToString();
    EXPECT_TRUE(ra->empty());
    auto rb = b->Poll(100, milliseconds(100));
    ASSERT_TRUE(rb.ok()) << rb.status().ToString();
    for (auto& m : *rb) got_b.push_back(std::move(m));
    lost.clear();
    for (const auto& r : revocations) {
      for (const auto& m : r) lost.insert(m.payload);
    }
    if (!lost.empty() && got_b.size() >= lost.size()) break;
  }
  ASSERT_FALSE(revocations.empty()) << "the first member gave up no partition";
  // The handler got whole partitions' unacked messages, nothing acked.
  std::set<int32_t> moved;
  for (const auto& r : revocations) {
    for (const auto& m : r) moved.insert(m.partition);
  }
  std::multiset<std::string> want_lost;
  for (int32_t p : moved) want_lost.insert(unacked_by_partition[p].begin(), unacked_by_partition[p].end());
  EXPECT_EQ(lost, want_lost);
  EXPECT_LT(moved.size(), static_cast<size_t>(kPartitions)) << "cooperative: the first member keeps some";
  // The new owner gets exactly those (acked prefixes stay consumed).
  for (const auto& m : PollQuiet(*b)) got_b.push_back(m);
  EXPECT_EQ(PayloadSet(got_b), want_lost);
  for (const auto& m : got_b) EXPECT_EQ(moved.count(m.partition), 1u);
  // A late ack of a revoked message is accepted and ignored.
  for (const auto& r : revocations) {
    for (const auto& m : r) EXPECT_TRUE(a->Ack(m).ok());
  }
  // The first member kept the rest: its unacked messages of kept
  // partitions were not handed over and are not delivered to it again.
  auto more_a = a->Poll(100, milliseconds(500));
  ASSERT_TRUE(more_a.ok());
  EXPECT_TRUE(more_a->empty());
}

// A member whose executor is full (Poll(0): its partitions are paused) gives
// partitions up in a rebalance, takes again (its remaining partitions are
// resumed), and later gets the given-up partitions back: they are fetched.
// librdkafka keeps a partition's application pause across an unassign and
// assign, so a partition revoked while paused came back paused for good and
// its requests sat there unread (the consumer saw no lag: lag counts what is
// fetched).
TEST_F(KafkaQueueTest, PartitionsGivenUpWhilePausedAreFetchedWhenAssignedAgain) {
  const std::string topic = Name("repause"), group = Name("g");
  std::map<int32_t, std::string> key_of_partition;
  for (int i = 0; key_of_partition.size() < static_cast<size_t>(kPartitions); ++i) {
    std::string k = "run-" + std::to_string(i);
    key_of_partition.try_emplace(JavaPartition(k, kPartitions), k);
  }
  std::vector<std::vector<QueueMessage>> revocations;  // before `a`, which calls the handler at close
  auto a = Sub(*queue_, {topic}, group);
  ASSERT_NE(a, nullptr);
  a->SetRevokedHandler([&](const std::vector<QueueMessage>& lost) { revocations.push_back(lost); });
  // One unacked message per partition: a revocation reports what moved.
  for (const auto& [p, k] : key_of_partition) Publish(topic, k, k + "/before");
  ASSERT_EQ(PollN(*a, kPartitions).size(), static_cast<size_t>(kPartitions));

  // Full: `a` only keeps its membership while `b` joins and takes some.
  auto b = Sub(*queue_, {topic}, group);
  ASSERT_NE(b, nullptr);
  auto deadline = Clock::now() + 2 * kArrival;
  while (revocations.empty() && Clock::now() < deadline) {
    auto ra = a->Poll(0, milliseconds(100));
    ASSERT_TRUE(ra.ok()) << ra.status().ToString();
    auto rb = b->Poll(100, milliseconds(100));
    ASSERT_TRUE(rb.ok()) << rb.status().ToString();
    for (const auto& m : *rb) ASSERT_TRUE(b->Ack(m).ok());
  }
  ASSERT_FALSE(revocations.empty()) << "the first member gave up no partition";
  // `b` owns the given-up partitions once it has their unacked messages.
  size_t moved = 0;
  for (const auto& r : revocations) moved += r.size();
  size_t got_b = 0;
  while (got_b < moved && Clock::now() < deadline) {
    ASSERT_TRUE(a->Poll(0, milliseconds(50)).ok());
    auto rb = b->Poll(100, milliseconds(100));
    ASSERT_TRUE(rb.ok()) << rb.status().ToString();
    for (const auto& m : *rb) {
      ASSERT_TRUE(b->Ack(m).ok());
      ++got_b;
    }
  }
  ASSERT_EQ(got_b, moved) << "the new owner did not get the given-up partitions' messages";
  // `a` takes again, then `b` leaves and its partitions come back to `a`.
  ASSERT_TRUE(a->Poll(100, milliseconds(100)).ok());
  b->Close();
  b.reset();
  for (const auto& [p, k] : key_of_partition) Publish(topic, k, k + "/after");
  std::set<int32_t> after;
  deadline = Clock::now() + 2 * kArrival;
  while (after.size() < static_cast<size_t>(kPartitions) && Clock::now() < deadline) {
    auto r = a->Poll(100, milliseconds(200));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    for (const auto& m : *r) {
      if (m.payload.ends_with("/after")) after.insert(m.partition);
    }
  }
  EXPECT_EQ(after.size(), static_cast<size_t>(kPartitions))
      << "a partition given up while paused was not fetched after it came back";
}

class KafkaPollIntervalTest : public KafkaQueueTest {
 protected:
  // librdkafka requires max.poll.interval.ms >= session.timeout.ms (4 s here).
  static constexpr int kMaxPollMs = 4000;
  void SetUp() override {
    KafkaQueueTest::SetUp();
    QueueOptions o = TestOptions(Mock().brokers());
    o.kafka_properties["max.poll.interval.ms"] = std::to_string(kMaxPollMs);
    short_queue_ = Open(o);
    ASSERT_NE(short_queue_, nullptr);
  }
  std::unique_ptr<Queue> short_queue_;
};

// A consumer whose executor is full calls Poll(0) for longer than
// max.poll.interval.ms: it stays in the group (no revocation, its in-flight
// message stays its own), takes nothing meanwhile, and gets the waiting
// messages once it takes again.
TEST_F(KafkaPollIntervalTest, PollZeroKeepsMembershipBeyondMaxPollInterval) {
  const std::string topic = Name("busy"), group = Name("g");
  Publish(topic, "run-1", "first");
  int revoked = 0;  // before `c`: c's destructor may still call the handler
  auto c = Sub(*short_queue_, {topic}, group);
  ASSERT_NE(c, nullptr);
  c->SetRevokedHandler([&](const std::vector<QueueMessage>&) { ++revoked; });
  auto first = PollN(*c, 1);
  ASSERT_EQ(first.size(), 1u);

  for (int i = 0; i < 5; ++i) Publish(topic, "run-1", "later" + std::to_string(i));
  auto until = Clock::now() + milliseconds(kMaxPollMs * 5 / 2);
  while (Clock::now() < until) {
    auto r = c->Poll(0, milliseconds(100));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(r->empty()) << "Poll(0) took a message";
  }
  EXPECT_EQ(revoked, 0) << "the consumer lost its membership while calling Poll(0)";
  // Still the owner: it takes the waiting messages, the first is not redelivered.
  auto later = PollN(*c, 5);
  EXPECT_EQ(Payloads(later), (std::vector<std::string>{"later0", "later1", "later2", "later3", "later4"}));
  EXPECT_TRUE(c->Ack(first[0]).ok());
  EXPECT_EQ(revoked, 0);
}

// The control for the test above: a consumer that does not poll at all for
// longer than max.poll.interval.ms is dropped from the group; its next Poll
// reports the in-flight message as revoked.
TEST_F(KafkaPollIntervalTest, NotPollingBeyondMaxPollIntervalLosesTheMessages) {
  const std::string topic = Name("stalled"), group = Name("g");
  Publish(topic, "run-1", "first");
  std::vector<QueueMessage> lost;  // before `c`: c's destructor may still call the handler
  auto c = Sub(*short_queue_, {topic}, group);
  ASSERT_NE(c, nullptr);
  c->SetRevokedHandler([&](const std::vector<QueueMessage>& l) { lost.insert(lost.end(), l.begin(), l.end()); });
  auto first = PollN(*c, 1);
  ASSERT_EQ(first.size(), 1u);
  std::this_thread::sleep_for(milliseconds(kMaxPollMs + 2000));
  auto deadline = Clock::now() + kArrival;
  while (lost.empty() && Clock::now() < deadline) ASSERT_TRUE(c->Poll(0, milliseconds(100)).ok());
  EXPECT_EQ(Payloads(lost), std::vector<std::string>{"first"});
}

// A broker outage (the mock process stopped: connections stay open, nothing
// answers): Publish fails with Unavailable within message.timeout.ms (plus
// Publish's grace), Ping fails, and both work again after the broker comes
// back.
TEST(KafkaOutageTest, PublishFailsWhileTheBrokerIsDownAndRecovers) {
  auto mock = KafkaMock::Start();
  ASSERT_TRUE(mock.ok()) << mock.status().ToString();
  QueueOptions o = TestOptions((*mock)->brokers());
  o.kafka_properties["message.timeout.ms"] = "1500";
  auto q = OpenKafkaQueue(o);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  Queue& queue = **q;
  const std::string topic = "afk-" + NewUuid() + "-outage";
  ASSERT_TRUE(queue.Publish(topic, "run-1", "before").ok());
  ASSERT_TRUE(queue.Ping().ok());

  (*mock)->Pause();
  auto start = Clock::now();
  Status s = queue.Publish(topic, "run-1", "during");
  auto took = Clock::now() - start;
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
  EXPECT_TRUE(s.IsRetryable());
  EXPECT_NE(s.message().find("Hint:"), std::string::npos) << s.message();
  // Bounded by message.timeout.ms (1.5 s) + 2 s grace; generous slack.
  EXPECT_LT(took, seconds(10));
  EXPECT_EQ(queue.Ping().code(), Code::kUnavailable);
  (*mock)->Resume();

  Status after = queue.Publish(topic, "run-1", "after");
  for (int i = 0; i < 5 && !after.ok(); ++i) after = queue.Publish(topic, "run-1", "after");
  ASSERT_TRUE(after.ok()) << after.ToString();
  EXPECT_TRUE(queue.Ping().ok());
  // "before" and "after" are on the partition, in order ("during" may or
  // may not be: its outcome was unknown).
  auto c = queue.Subscribe({topic}, "afk-" + NewUuid() + "-g");
  ASSERT_TRUE(c.ok());
  std::vector<std::string> got;
  auto deadline = Clock::now() + kArrival;
  while (std::find(got.begin(), got.end(), "after") == got.end() && Clock::now() < deadline) {
    auto r = (*c)->Poll(10, milliseconds(200));
    ASSERT_TRUE(r.ok());
    for (const auto& m : *r) got.push_back(m.payload);
  }
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.front(), "before");
  EXPECT_EQ(got.back(), "after");
}

TEST(KafkaOptionsTest, RejectsBadSettings) {
  QueueOptions o;
  EXPECT_EQ(OpenKafkaQueue(o).status().code(), Code::kInvalidArgument);  // no brokers
  o.kafka_brokers = "127.0.0.1:1";
  o.kafka_properties["no.such.property"] = "1";
  auto q = OpenKafkaQueue(o);
  EXPECT_EQ(q.status().code(), Code::kInvalidArgument);
  EXPECT_NE(q.status().message().find("no.such.property"), std::string::npos);
}

TEST(KafkaOptionsTest, OpenQueueDispatchesOnBrokers) {
  QueueOptions o;
  o.kafka_brokers = "127.0.0.1:1";  // nothing listens: opening does not connect
  auto q = OpenQueue(o);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ((*q)->Ping().code(), Code::kUnavailable);
}

}  // namespace
}  // namespace af
