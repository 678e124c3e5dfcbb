#include "executor/consumer.h"

#include <algorithm>

#include "common/ids.h"
#include "common/json_text.h"
#include "common/log.h"
#include "common/time.h"

namespace af {

ExecutionConsumer::ExecutionConsumer(Queue* queue, Engine* engine, ConsumerOptions options)
    : queue_(queue), engine_(engine), options_(std::move(options)) {}

ExecutionConsumer::~ExecutionConsumer() { Stop(); }

Status ExecutionConsumer::Start() {
  auto sub = queue_->Subscribe({options_.execution_topic, options_.cancellation_topic}, options_.group);
  if (!sub.ok()) return sub.status();
  consumer_ = std::shared_ptr<QueueConsumer>(std::move(sub).value());
  // A rebalance moved partitions elsewhere: stop the runs whose requests
  // came from them, so each run is driven by one consumer at a time.
  consumer_->SetRevokedHandler([this](const std::vector<QueueMessage>& lost) {
    std::vector<std::string> run_ids;
    for (const QueueMessage& m : lost) {
      if (m.topic == options_.execution_topic) run_ids.push_back(m.key);
    }
    if (!run_ids.empty()) engine_->Abandon(run_ids);
  });
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void ExecutionConsumer::StopTaking() {
  if (!thread_.joinable()) return;
  stop_ = true;
  thread_.join();
}

void ExecutionConsumer::Stop() {
  if (thread_.joinable()) {
    stop_ = true;
    consumer_->Close();  // wakes a blocked Poll
    thread_.join();
  } else if (consumer_) {
    consumer_->Close();
  }
}

void ExecutionConsumer::Loop() {
  while (!stop_) {
    // Back-pressure: while the engine is full, leave requests on the queue
    // (Poll(0, ...) keeps the group membership alive without taking any).
    size_t active = std::max(engine_->ActiveRuns(), submitted_.load());
    size_t room = active < options_.max_active_runs ? options_.max_active_runs - active : 0;
    auto polled = consumer_->Poll(std::min(room, options_.poll_batch),
                                  room == 0 ? std::chrono::milliseconds(100) : std::chrono::milliseconds(500));
    if (!polled.ok()) {
      log::Warn("queue poll failed: " + polled.status().ToString());
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    for (const QueueMessage& m : *polled) Handle(m);
  }
}

void ExecutionConsumer::Handle(const QueueMessage& m) {
  ++handled_;
  auto parsed = ParseQueueMessage(m.payload, options_.max_message_bytes);
  // ---- limits: an oversized execution request runs from the store (the
  // engine reads the plan of the run's workflow version when the request
  // carries none; the run's input always comes from the store).
  if (!parsed.ok() && parsed.status().code() == Code::kTooLarge && m.topic == options_.execution_topic &&
      IsValidId(m.key)) {
    log::Warn(parsed.status().message() + " (--max-message-bytes); the run's plan and input are read from the "
                                          "database instead",
              {m.key});
    ExecutionRequest from_store;
    from_store.run_id = m.key;
    parsed = QueueRequest(std::move(from_store));
  }
  // ---- end of limits
  if (!parsed.ok()) {
    ++rejected_;
    log::Error("malformed message on " + m.topic + " set aside: " + parsed.status().message(), {m.key});
    DeadLetter(m, parsed.status().message());
    return;
  }
  if (auto* cancel = std::get_if<CancellationRequest>(&*parsed)) {
    engine_->Cancel(cancel->run_id, cancel->cancelled_by, cancel->reason, cancel->timestamp);
    Status s = consumer_->Ack(m);
    if (!s.ok()) log::Warn("ack failed: " + s.ToString(), {cancel->run_id});
    return;
  }
  auto& request = std::get<ExecutionRequest>(*parsed);
  std::string run_id = request.run_id;
  std::weak_ptr<QueueConsumer> weak = consumer_;
  ++submitted_;
  engine_->Submit(std::move(request), [this, weak, m](const RunOutcome& outcome) {
    --submitted_;
    if (outcome.kind == RunOutcome::Kind::kDropped) {
      DeadLetter(m, "no run with id '" + outcome.run_id + "' exists");
      return;
    }
    if (outcome.kind != RunOutcome::Kind::kAbandoned) {
      if (auto c = weak.lock()) {
        Status s = c->Ack(m);
        if (!s.ok()) log::Warn("ack failed: " + s.ToString(), {outcome.run_id});
      }
    }
  });
}

void ExecutionConsumer::DeadLetter(const QueueMessage& m, const std::string& reason) {
  std::weak_ptr<QueueConsumer> weak = consumer_;
  auto ack = [weak, m] {
    if (auto c = weak.lock()) {
      Status s = c->Ack(m);
      if (!s.ok()) log::Warn("ack failed: " + s.ToString(), {m.key});
    }
  };
  if (options_.dead_letter_topic.empty()) {
    ack();
    return;
  }
  json letter{{"reason", reason},
              {"topic", m.topic},
              {"partition", m.partition},
              {"offset", m.offset},
              {"key", m.key},
              {"payload", m.payload},
              {"failed_at", FormatIso8601(NowMs())}};
  // Not valid UTF-8 (a fuzzed or binary payload): json::dump would throw.
  std::string text = JsonText(letter);
  queue_->PublishAsync(options_.dead_letter_topic, m.key, text,
                       [counted = dead_lettered_, ack, m, topic = options_.dead_letter_topic](Status s) {
                         if (!s.ok()) {
                           log::Error("could not write to the dead-letter topic " + topic + " (" + s.message() +
                                          "); the message stays unacked and comes back",
                                      {m.key});
                           return;
                         }
                         ++*counted;
                         ack();
                       });
}

}  // namespace af
