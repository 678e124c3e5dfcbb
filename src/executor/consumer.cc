#include "executor/consumer.h"

#include "common/log.h"

namespace af {

ExecutionConsumer::ExecutionConsumer(Queue* queue, Engine* engine, ConsumerOptions options)
    : queue_(queue), engine_(engine), options_(std::move(options)) {}

ExecutionConsumer::~ExecutionConsumer() { Stop(); }

Status ExecutionConsumer::Start() {
  auto sub = queue_->Subscribe({options_.execution_topic, options_.cancellation_topic}, options_.group);
  if (!sub.ok()) return sub.status();
  consumer_ = std::shared_ptr<QueueConsumer>(std::move(sub).value());
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void ExecutionConsumer::Stop() {
  if (!thread_.joinable()) return;
  stop_ = true;
  capacity_cv_.notify_all();
  consumer_->Close();
  thread_.join();
}

void ExecutionConsumer::Loop() {
  while (!stop_) {
    {
      // Back-pressure: leave requests on the queue while the engine is full.
      std::unique_lock<std::mutex> lock(mu_);
      capacity_cv_.wait_for(lock, std::chrono::milliseconds(200), [this] {
        return stop_ || engine_->ActiveRuns() < options_.max_active_runs;
      });
      if (stop_) break;
      if (engine_->ActiveRuns() >= options_.max_active_runs) continue;
    }
    size_t room = options_.max_active_runs - engine_->ActiveRuns();
    auto polled = consumer_->Poll(std::min(room, options_.poll_batch), std::chrono::milliseconds(500));
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
  auto parsed = ParseQueueMessage(m.payload);
  if (!parsed.ok()) {
    ++rejected_;
    log::Error("malformed message on " + m.topic + " set aside: " + parsed.status().message(), {m.key});
    Status s = consumer_->Ack(m);
    if (!s.ok()) log::Warn("ack failed: " + s.ToString());
    return;
  }
  if (auto* cancel = std::get_if<CancellationRequest>(&*parsed)) {
    engine_->Cancel(cancel->run_id, cancel->cancelled_by, cancel->reason);
    Status s = consumer_->Ack(m);
    if (!s.ok()) log::Warn("ack failed: " + s.ToString(), {cancel->run_id});
    return;
  }
  auto& request = std::get<ExecutionRequest>(*parsed);
  std::string run_id = request.run_id;
  std::weak_ptr<QueueConsumer> weak = consumer_;
  engine_->Submit(std::move(request), [this, weak, m](const RunOutcome& outcome) {
    if (outcome.kind != RunOutcome::Kind::kAbandoned) {
      if (auto c = weak.lock()) {
        Status s = c->Ack(m);
        if (!s.ok()) log::Warn("ack failed: " + s.ToString(), {outcome.run_id});
      }
    }
    capacity_cv_.notify_all();
  });
}

}  // namespace af
