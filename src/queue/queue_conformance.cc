#include "queue/queue_conformance.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "common/ids.h"

namespace af {

void PrintTo(const QueueBackend& backend, std::ostream* os) { *os << "QueueBackend{" << backend.name << "}"; }

std::string QueueBackendName(const ::testing::TestParamInfo<QueueBackend>& info) { return info.param.name; }

void QueueConformanceTest::SetUp() {
  prefix_ = "aft-" + NewUuid();
  env_ = GetParam().new_env();
  ASSERT_NE(env_, nullptr);
  auto q = env_->Open();
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  queue_ = std::move(q).value();
}

void QueueConformanceTest::TearDown() {
  queue_.reset();
  env_.reset();
}

void QueueConformanceTest::Reopen() {
  queue_.reset();
  auto q = env_->Open();
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  queue_ = std::move(q).value();
}

std::string QueueConformanceTest::Topic(const std::string& suffix) const { return prefix_ + "-t-" + suffix; }
std::string QueueConformanceTest::Group(const std::string& suffix) const { return prefix_ + "-g-" + suffix; }

std::unique_ptr<QueueConsumer> QueueConformanceTest::Subscribe(const std::vector<std::string>& topics,
                                                               const std::string& group) {
  auto c = queue_->Subscribe(topics, group);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(c).value() : nullptr;
}

void QueueConformanceTest::Publish(const std::string& topic, const std::string& key, const std::string& payload) {
  Status s = queue_->Publish(topic, key, payload);
  ASSERT_TRUE(s.ok()) << s.ToString();
}

std::vector<QueueMessage> QueueConformanceTest::PollN(QueueConsumer& c, size_t n, size_t max_per_poll) {
  std::vector<QueueMessage> got;
  auto deadline = std::chrono::steady_clock::now() + caps().arrival_timeout;
  while (got.size() < n) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    auto r = c.Poll(std::min(max_per_poll, n - got.size()), left);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) break;
    for (auto& m : *r) got.push_back(std::move(m));
  }
  return got;
}

std::vector<QueueMessage> QueueConformanceTest::PollQuiet(QueueConsumer& c) {
  std::vector<QueueMessage> got;
  auto deadline = std::chrono::steady_clock::now() + caps().absence_wait;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    auto r = c.Poll(1000, std::max(left, std::chrono::milliseconds(0)));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) break;
    for (auto& m : *r) got.push_back(std::move(m));
    if (left.count() <= 0) break;
  }
  return got;
}

void QueueConformanceTest::AckAll(QueueConsumer& c, const std::vector<QueueMessage>& ms) {
  for (const auto& m : ms) {
    Status s = c.Ack(m);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
}

namespace {

std::vector<std::string> Payloads(const std::vector<QueueMessage>& ms) {
  std::vector<std::string> out;
  for (const auto& m : ms) out.push_back(m.payload);
  return out;
}

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

std::vector<std::string> Numbered(const std::string& prefix, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

// True if `got` holds each of `want` and nothing else (as multisets).
::testing::AssertionResult SameMessages(const std::vector<std::string>& got, const std::vector<std::string>& want) {
  if (Sorted(got) == Sorted(want)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got " << got.size() << " messages, want " << want.size()
                                       << " (different contents)";
}

bool HasDuplicates(const std::vector<std::string>& v) {
  std::set<std::string> seen(v.begin(), v.end());
  return seen.size() != v.size();
}

}  // namespace

// --- Delivery: order, contents, topics -------------------------------------

TEST_P(QueueConformanceTest, PublishedBeforeSubscribeArriveInPublishOrder) {
  const std::string topic = Topic("a");
  auto want = Numbered("m", 20);
  for (const auto& p : want) Publish(topic, "run-1", p);
  auto c = Subscribe({topic}, Group("g"));
  ASSERT_NE(c, nullptr);
  auto got = PollN(*c, want.size());
  EXPECT_EQ(Payloads(got), want);  // same key: ordered on every backend
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].topic, topic);
    EXPECT_EQ(got[i].key, "run-1");
    if (i > 0) {
      EXPECT_EQ(got[i].partition, got[0].partition);
      EXPECT_GT(got[i].offset, got[i - 1].offset);
    }
  }
  EXPECT_TRUE(PollQuiet(*c).empty());
}

TEST_P(QueueConformanceTest, KeysTopicsAndPayloadsArePreserved) {
  const std::string topic = Topic("a");
  const std::vector<std::pair<std::string, std::string>> sent = {
      {"run-1", R"({"run_id":"run-1","message_type":"execution_request"})"},
      {"run-2", "{\"reason\":\"caf\xc3\xa9 \xe2\x9c\x93\"}"},
      {"run-3", std::string("bin\0ary\xff\x01", 10)},
      {"k:with.odd_chars-9", "x"},
  };
  for (const auto& [k, p] : sent) Publish(topic, k, p);
  auto c = Subscribe({topic}, Group("g"));
  ASSERT_NE(c, nullptr);
  auto got = PollN(*c, sent.size());
  ASSERT_EQ(got.size(), sent.size());
  std::vector<std::pair<std::string, std::string>> received;
  for (const auto& m : got) {
    EXPECT_EQ(m.topic, topic);
    received.emplace_back(m.key, m.payload);
  }
  if (!caps().total_order) std::sort(received.begin(), received.end());
  auto want = sent;
  if (!caps().total_order) std::sort(want.begin(), want.end());
  EXPECT_EQ(received, want);
}

TEST_P(QueueConformanceTest, OneSubscriptionToSeveralTopics) {
  const std::string a = Topic("a"), b = Topic("b"), other = Topic("other");
  std::vector<std::pair<std::string, std::string>> want;  // (topic, payload) in publish order
  for (int i = 0; i < 10; ++i) {
    const std::string& t = i % 3 == 0 ? b : a;
    Publish(t, "run-" + std::to_string(i), "p" + std::to_string(i));
    want.emplace_back(t, "p" + std::to_string(i));
    Publish(other, "run-x", "not for this consumer");
  }
  auto c = Subscribe({a, b}, Group("g"));
  ASSERT_NE(c, nullptr);
  auto got = PollN(*c, want.size());
  std::vector<std::pair<std::string, std::string>> received;
  for (const auto& m : got) received.emplace_back(m.topic, m.payload);
  if (!caps().total_order) {
    std::sort(received.begin(), received.end());
    std::sort(want.begin(), want.end());
  }
  EXPECT_EQ(received, want);
  EXPECT_TRUE(PollQuiet(*c).empty());
}

TEST_P(QueueConformanceTest, PublishAsyncReportsEachMessageOnceAndDeliversIt) {
  const std::string topic = Topic("a");
  const auto want = Numbered("m", 20);
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, std::vector<Status>> reports;  // payload -> completions
  for (const auto& p : want) {
    queue().PublishAsync(topic, "run-" + p, p, [&, p](Status s) {
      std::lock_guard lk(mu);
      reports[p].push_back(std::move(s));
      cv.notify_all();
    });
  }
  {
    std::unique_lock lk(mu);
    ASSERT_TRUE(cv.wait_for(lk, caps().arrival_timeout, [&] { return reports.size() == want.size(); }))
        << reports.size() << " of " << want.size() << " publishes reported";
  }
  auto c = Subscribe({topic}, Group("g"));
  ASSERT_NE(c, nullptr);
  auto got = PollN(*c, want.size());
  EXPECT_TRUE(SameMessages(Payloads(got), want));
  std::lock_guard lk(mu);
  for (const auto& [p, statuses] : reports) {
    ASSERT_EQ(statuses.size(), 1u) << p << " reported more than once";
    EXPECT_TRUE(statuses[0].ok()) << statuses[0].ToString();
  }
}

TEST_P(QueueConformanceTest, PublishAsyncToAnEmptyTopicReportsAnError) {
  std::optional<Status> reported;
  std::mutex mu;
  std::condition_variable cv;
  queue().PublishAsync("", "k", "p", [&](Status s) {
    std::lock_guard lk(mu);
    reported = std::move(s);
    cv.notify_all();
  });
  std::unique_lock lk(mu);
  ASSERT_TRUE(cv.wait_for(lk, caps().arrival_timeout, [&] { return reported.has_value(); }));
  EXPECT_EQ(reported->code(), Code::kInvalidArgument) << reported->ToString();
}

TEST_P(QueueConformanceTest, BlockedPollReturnsMessagePublishedMeanwhile) {
  const std::string topic = Topic("a");
  auto c = Subscribe({topic}, Group("g"));
  ASSERT_NE(c, nullptr);
  std::vector<QueueMessage> got;
  std::thread poller([&] { got = PollN(*c, 1); });
  Publish(topic, "run-1", "late");
  poller.join();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, "late");
}

TEST_P(QueueConformanceTest, PollTimeoutOnEmptyTopicReturnsEmpty) {
  auto c = Subscribe({Topic("empty")}, Group("g"));
  ASSERT_NE(c, nullptr);
  auto r = c->Poll(10, std::chrono::milliseconds(50));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->empty());
  r = c->Poll(10, std::chrono::milliseconds(0));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->empty());
}

TEST_P(QueueConformanceTest, PollReturnsAtMostMax) {
  const std::string topic = Topic("a");
  for (const auto& p : Numbered("m", 10)) Publish(topic, "run-1", p);
  auto c = Subscribe({topic}, Group("g"));
  ASSERT_NE(c, nullptr);
  auto first = PollN(*c, 1, 1);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].payload, "m0");
  auto r = c->Poll(3, caps().arrival_timeout);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_LE(r->size(), 3u);
  EXPECT_GE(r->size(), 1u);
}

// --- Acks and redelivery ---------------------------------------------------

TEST_P(QueueConformanceTest, AckedMessagesAreNotDeliveredAgain) {
  const std::string topic = Topic("a"), group = Group("g");
  for (const auto& p : Numbered("m", 5)) Publish(topic, "run-1", p);
  {
    auto c = Subscribe({topic}, group);
    ASSERT_NE(c, nullptr);
    auto got = PollN(*c, 5);
    ASSERT_EQ(got.size(), 5u);
    AckAll(*c, got);
    c->Close();
  }
  auto c = Subscribe({topic}, group);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(PollQuiet(*c).empty());
}

TEST_P(QueueConformanceTest, UnackedMessagesAreRedeliveredAfterClose) {
  const std::string topic = Topic("a"), group = Group("g");
  auto all = Numbered("m", 5);
  for (const auto& p : all) Publish(topic, "run-1", p);
  {
    auto c = Subscribe({topic}, group);
    ASSERT_NE(c, nullptr);
    auto got = PollN(*c, 5);
    ASSERT_EQ(got.size(), 5u);
    AckAll(*c, {got[0], got[1]});
    c->Close();
  }
  auto c = Subscribe({topic}, group);
  ASSERT_NE(c, nullptr);
  auto again = Payloads(PollN(*c, 3));
  EXPECT_EQ(again, (std::vector<std::string>{"m2", "m3", "m4"}));
  EXPECT_TRUE(PollQuiet(*c).empty());
}

TEST_P(QueueConformanceTest, UnackedMessagesGoToAnotherLiveMemberAfterClose) {
  const std::string topic = Topic("a"), group = Group("g");
  auto a = Subscribe({topic}, group);
  auto b = Subscribe({topic}, group);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  auto all = Numbered("m", 6);
  for (const auto& p : all) Publish(topic, "run-1", p);
  // Whichever member gets messages first keeps them unacked, then closes.
  std::unique_ptr<QueueConsumer>* holder = &a;
  std::unique_ptr<QueueConsumer>* other = &b;
  auto got = PollN(**holder, 1);
  if (got.empty()) {
    std::swap(holder, other);
    got = PollN(**holder, 1);
  }
  ASSERT_FALSE(got.empty());
  (*holder)->Close();
  EXPECT_TRUE(SameMessages(Payloads(PollN(**other, all.size())), all));
}

TEST_P(QueueConformanceTest, InFlightMessageIsNotGivenToAnotherLiveMember) {
  const std::string topic = Topic("a"), group = Group("g");
  auto a = Subscribe({topic}, group);
  auto b = Subscribe({topic}, group);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  Publish(topic, "run-1", "only");
  // One of the two gets it; the other must not while the first is live.
  std::vector<QueueMessage> got = PollN(*a, 1);
  QueueConsumer* holder = a.get();
  QueueConsumer* other = b.get();
  if (got.empty()) {
    got = PollN(*b, 1);
    std::swap(holder, other);
  }
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(PollQuiet(*other).empty());
  EXPECT_TRUE(holder->Ack(got[0]).ok());
}

TEST_P(QueueConformanceTest, LagCountsTheGroupsUnackedMessagesPerTopic) {
  const std::string topic = Topic("lag"), other = Topic("quiet"), group = Group("g");
  for (const auto& p : Numbered("m", 4)) Publish(topic, "run-1", p);
  auto c = Subscribe({topic, other}, group);
  ASSERT_NE(c, nullptr);
  auto lag_of = [&](const std::string& t) -> int64_t {
    for (const auto& l : c->Lag()) {
      if (l.topic == t) return l.messages;
    }
    return -1;
  };
  // Lag may trail by a refresh (Kafka: every second, by Poll): keep polling
  // without taking anything until it shows `want`.
  auto wait_lag = [&](int64_t want) {
    auto deadline = std::chrono::steady_clock::now() + 3 * caps().arrival_timeout;
    while (lag_of(topic) != want && std::chrono::steady_clock::now() < deadline) {
      auto r = c->Poll(0, std::chrono::milliseconds(50));
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return lag_of(topic);
  };
  auto first = PollN(*c, 1, 1);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(wait_lag(4), 4) << "3 waiting + 1 delivered, not acked";
  EXPECT_EQ(lag_of(other), 0) << "every subscribed topic is listed";
  AckAll(*c, first);
  EXPECT_EQ(wait_lag(3), 3);
  auto rest = PollN(*c, 3);
  ASSERT_EQ(rest.size(), 3u);
  AckAll(*c, rest);
  EXPECT_EQ(wait_lag(0), 0);
}

TEST_P(QueueConformanceTest, DuplicateAckIsHarmless) {
  const std::string topic = Topic("a");
  Publish(topic, "run-1", "m0");
  Publish(topic, "run-1", "m1");
  auto g1 = Subscribe({topic}, Group("g1"));
  auto g2 = Subscribe({topic}, Group("g2"));
  ASSERT_NE(g1, nullptr);
  ASSERT_NE(g2, nullptr);
  auto got = PollN(*g1, 2);
  ASSERT_EQ(got.size(), 2u);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(g1->Ack(got[0]).ok());
  // g1's repeated acks must not count as g2's.
  EXPECT_EQ(Payloads(PollN(*g2, 2)), (std::vector<std::string>{"m0", "m1"}));
}

TEST_P(QueueConformanceTest, AcksFromOtherThreadsWhilePolling) {
  const std::string topic = Topic("a"), group = Group("g");
  const int n = 500;
  for (const auto& p : Numbered("m", n)) Publish(topic, "run-" + std::to_string(0), p);
  {
    auto c = Subscribe({topic}, group);
    ASSERT_NE(c, nullptr);
    std::mutex mu;
    std::condition_variable cv;
    std::deque<QueueMessage> to_ack;
    bool done = false;
    std::vector<std::thread> ackers;
    for (int t = 0; t < 3; ++t) {
      ackers.emplace_back([&] {
        std::unique_lock lk(mu);
        while (true) {
          cv.wait(lk, [&] { return done || !to_ack.empty(); });
          if (to_ack.empty()) return;
          QueueMessage m = std::move(to_ack.front());
          to_ack.pop_front();
          lk.unlock();
          Status s = c->Ack(m);
          EXPECT_TRUE(s.ok()) << s.ToString();
          lk.lock();
        }
      });
    }
    size_t received = 0;
    auto deadline = std::chrono::steady_clock::now() + caps().arrival_timeout;
    while (received < static_cast<size_t>(n) && std::chrono::steady_clock::now() < deadline) {
      auto r = c->Poll(7, std::chrono::milliseconds(100));  // Polls run while other threads ack
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      if (!r.ok()) break;  // (no ASSERT: the ackers must be joined)
      received += r->size();
      {
        std::lock_guard lk(mu);
        for (auto& m : *r) to_ack.push_back(std::move(m));
      }
      cv.notify_all();
    }
    {
      std::lock_guard lk(mu);
      done = true;
    }
    cv.notify_all();
    for (auto& t : ackers) t.join();
    EXPECT_EQ(received, static_cast<size_t>(n));
    c->Close();
  }
  auto c = Subscribe({topic}, group);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(PollQuiet(*c).empty());
}

TEST_P(QueueConformanceTest, OutOfOrderAcks) {
  const std::string topic = Topic("a"), group = Group("g");
  auto all = Numbered("m", 6);
  for (const auto& p : all) Publish(topic, "run-1", p);
  {
    auto c = Subscribe({topic}, group);
    ASSERT_NE(c, nullptr);
    auto got = PollN(*c, all.size());
    ASSERT_EQ(got.size(), all.size());
    AckAll(*c, {got[5], got[3], got[0]});
    c->Close();
  }
  auto c = Subscribe({topic}, group);
  ASSERT_NE(c, nullptr);
  auto again = Payloads(PollN(*c, 3));
  if (caps().exact_redelivery) {
    EXPECT_EQ(again, (std::vector<std::string>{"m1", "m2", "m4"}));
    EXPECT_TRUE(PollQuiet(*c).empty());
  } else {
    for (const auto& m : PollQuiet(*c)) again.push_back(m.payload);
    for (const char* want : {"m1", "m2", "m4"}) {
      EXPECT_NE(std::find(again.begin(), again.end(), want), again.end()) << want << " was not redelivered";
    }
    EXPECT_EQ(std::find(again.begin(), again.end(), "m0"), again.end()) << "m0 precedes every unacked message";
  }
}

TEST_P(QueueConformanceTest, PollAndAckAfterCloseFail) {
  const std::string topic = Topic("a");
  Publish(topic, "run-1", "m0");
  auto c = Subscribe({topic}, Group("g"));
  ASSERT_NE(c, nullptr);
  auto got = PollN(*c, 1);
  ASSERT_EQ(got.size(), 1u);
  c->Close();
  c->Close();  // idempotent
  EXPECT_EQ(c->Ack(got[0]).code(), Code::kFailedPrecondition);
  EXPECT_EQ(c->Poll(1, std::chrono::milliseconds(0)).status().code(), Code::kFailedPrecondition);
  // The failed ack left the message unacked.
  auto d = Subscribe({topic}, Group("g"));
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(Payloads(PollN(*d, 1)), std::vector<std::string>{"m0"});
}

TEST_P(QueueConformanceTest, CloseFromAnotherThreadWakesBlockedPoll) {
  auto c = Subscribe({Topic("empty")}, Group("g"));
  ASSERT_NE(c, nullptr);
  bool returned_ok = false;
  std::thread poller([&] {
    // Only Close can end this Poll in a reasonable time: if Close does not
    // wake it, the test hangs until the test runner's timeout.
    auto r = c->Poll(10, std::chrono::hours(1));
    returned_ok = r.ok() && r->empty();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // usually lets the Poll block first
  c->Close();
  poller.join();
  EXPECT_TRUE(returned_ok);
}

// --- Groups ----------------------------------------------------------------

TEST_P(QueueConformanceTest, TwoGroupsEachGetEveryMessage) {
  const std::string topic = Topic("a");
  auto g1 = Subscribe({topic}, Group("g1"));
  auto g2 = Subscribe({topic}, Group("g2"));
  ASSERT_NE(g1, nullptr);
  ASSERT_NE(g2, nullptr);
  auto all = Numbered("m", 50);
  for (const auto& p : all) Publish(topic, "run-1", p);
  auto got1 = PollN(*g1, all.size());
  EXPECT_EQ(Payloads(got1), all);
  AckAll(*g1, got1);
  auto got2 = PollN(*g2, all.size());
  EXPECT_EQ(Payloads(got2), all);  // g1's acks do not consume g2's copies
  AckAll(*g2, got2);
  EXPECT_TRUE(PollQuiet(*g1).empty());
  EXPECT_TRUE(PollQuiet(*g2).empty());
}

TEST_P(QueueConformanceTest, TwoConsumersInOneGroupSplitWithoutDuplicates) {
  const std::string topic = Topic("a"), group = Group("g");
  auto a = Subscribe({topic}, group);
  auto b = Subscribe({topic}, group);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const int n = 40;
  auto all = Numbered("m", n);
  for (int i = 0; i < n; ++i) Publish(topic, "run-" + std::to_string(i % 8), all[i]);
  std::vector<std::string> got_a, got_b;
  auto deadline = std::chrono::steady_clock::now() + caps().arrival_timeout;
  while (got_a.size() + got_b.size() < all.size() && std::chrono::steady_clock::now() < deadline) {
    for (auto [c, sink] : {std::pair{a.get(), &got_a}, std::pair{b.get(), &got_b}}) {
      auto r = c->Poll(3, std::chrono::milliseconds(20));
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      for (const auto& m : *r) {
        sink->push_back(m.payload);
        EXPECT_TRUE(c->Ack(m).ok());
      }
    }
  }
  std::vector<std::string> both = got_a;
  both.insert(both.end(), got_b.begin(), got_b.end());
  EXPECT_FALSE(HasDuplicates(both));
  EXPECT_TRUE(SameMessages(both, all));
  if (caps().per_message_sharing) {
    EXPECT_FALSE(got_a.empty());
    EXPECT_FALSE(got_b.empty());
  }
}

// --- Size and volume -------------------------------------------------------

TEST_P(QueueConformanceTest, LargePayloads) {
  const std::string topic = Topic("a");
  std::vector<std::string> want;
  for (int i = 0; i < 3; ++i) {
    std::string p(1 << 20, '\0');
    for (size_t j = 0; j < p.size(); ++j) p[j] = static_cast<char>((j * 31 + static_cast<size_t>(i)) & 0xff);
    want.push_back(std::move(p));
  }
  for (const auto& p : want) Publish(topic, "run-1", p);
  auto c = Subscribe({topic}, Group("g"));
  ASSERT_NE(c, nullptr);
  auto got = PollN(*c, want.size());
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_TRUE(got[i].payload == want[i]) << "payload " << i << " differs";
  AckAll(*c, got);
}

TEST_P(QueueConformanceTest, TenThousandMessagesNoneLost) {
  const std::string topic = Topic("a"), group = Group("g");
  const int n = 10000, keys = 7;
  for (int i = 0; i < n; ++i) Publish(topic, "run-" + std::to_string(i % keys), std::to_string(i));
  auto c = Subscribe({topic}, group);
  ASSERT_NE(c, nullptr);
  auto got = PollN(*c, n, 500);
  ASSERT_EQ(got.size(), static_cast<size_t>(n));
  std::map<std::string, int> last_per_key;
  std::set<int> seen;
  int last = -1;
  for (const auto& m : got) {
    int v = std::stoi(m.payload);
    EXPECT_TRUE(seen.insert(v).second) << "duplicate " << v;
    EXPECT_EQ(m.key, "run-" + std::to_string(v % keys));
    auto [it, fresh] = last_per_key.try_emplace(m.key, v);
    if (!fresh) {
      EXPECT_GT(v, it->second) << "out of order within key " << m.key;
      it->second = v;
    }
    if (caps().total_order) {
      EXPECT_EQ(v, last + 1);
    }
    last = v;
  }
  AckAll(*c, got);
  c->Close();
  c = Subscribe({topic}, group);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(PollQuiet(*c).empty());
}

// --- Durability (restart) ----------------------------------------------------

TEST_P(QueueConformanceTest, UnackedMessagesSurviveReopen) {
  if (!caps().durable) GTEST_SKIP() << GetParam().name << " is not durable across reopen";
  const std::string topic = Topic("a"), group = Group("g");
  auto all = Numbered("m", 10);
  for (const auto& p : all) Publish(topic, "run-1", p);
  {
    auto c = Subscribe({topic}, group);
    ASSERT_NE(c, nullptr);
    auto got = PollN(*c, all.size());
    ASSERT_EQ(got.size(), all.size());
    AckAll(*c, {got.begin(), got.begin() + 4});
  }
  Reopen();
  {
    auto c = Subscribe({topic}, group);
    ASSERT_NE(c, nullptr);
    auto got = PollN(*c, 6);
    std::vector<std::string> again = Payloads(got);
    if (caps().exact_redelivery) {
      EXPECT_EQ(again, std::vector<std::string>(all.begin() + 4, all.end()));
    } else {
      for (const auto& m : PollQuiet(*c)) again.push_back(m.payload);
      for (size_t i = 4; i < all.size(); ++i) {
        EXPECT_NE(std::find(again.begin(), again.end(), all[i]), again.end()) << all[i] << " lost";
      }
    }
    AckAll(*c, got);
  }
  Reopen();
  auto c = Subscribe({topic}, group);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(PollQuiet(*c).empty());
}

TEST_P(QueueConformanceTest, MessagesPublishedBeforeRestartAreDeliveredAfterIt) {
  if (!caps().durable) GTEST_SKIP() << GetParam().name << " is not durable across reopen";
  const std::string topic = Topic("a");
  auto all = Numbered("m", 5);
  for (const auto& p : all) Publish(topic, "run-1", p);
  Reopen();
  auto c = Subscribe({topic}, Group("g"));
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(Payloads(PollN(*c, all.size())), all);
}

// --- Arguments and health ----------------------------------------------------

TEST_P(QueueConformanceTest, RejectsEmptyNames) {
  EXPECT_EQ(queue().Publish("", "k", "p").code(), Code::kInvalidArgument);
  EXPECT_EQ(queue().Subscribe({}, Group("g")).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(queue().Subscribe({""}, Group("g")).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(queue().Subscribe({Topic("a")}, "").status().code(), Code::kInvalidArgument);
}

TEST_P(QueueConformanceTest, PingIsOk) { EXPECT_TRUE(queue().Ping().ok()); }

}  // namespace af
