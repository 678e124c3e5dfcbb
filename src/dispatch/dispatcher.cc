#include "dispatch/dispatcher.h"

#include <algorithm>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "common/log.h"
#include "common/time.h"

namespace af {

OutboxMessage ExecutionDispatch(const Run& run, const Workflow& wf, const std::string& topic) {
  return ExecutionDispatch(run, ExecutionRequestTemplate(wf.plan, wf.id, wf.version), topic);
}

OutboxMessage ExecutionDispatch(const Run& run, const ExecutionRequestTemplate& request, const std::string& topic) {
  OutboxMessage m;
  m.topic = topic;
  m.key = run.id;
  m.payload = request.Serialize(run.id, run.input, NowMs());
  return m;
}

Dispatcher::Dispatcher(Store* store, Queue* queue, DispatcherOptions options)
    : store_(store), queue_(queue), options_(std::move(options)) {}

Dispatcher::~Dispatcher() { Stop(); }

bool Dispatcher::AttachWriter(Store* backend) {
  if (backend == nullptr) return false;
  if (!backend->SetOutboxListener([this](const OutboxMessage& m) { Handoff(m); }, options_.claim_ttl.count())) {
    return false;
  }
  writer_ = backend;
  return true;
}

void Dispatcher::Start() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = false;
  }
  {
    std::lock_guard<std::mutex> lock(handed_->mu);
    handed_->stopping = false;
  }
  if (writer_ != nullptr) {
    writer_->SetOutboxListener([this](const OutboxMessage& m) { Handoff(m); }, options_.claim_ttl.count());
  }
  relay_ = std::thread([this] { RelayLoop(); });
  settler_ = std::thread([this] { SettleLoop(); });
  if (options_.sweep_interval.count() > 0) sweeper_ = std::thread([this] { SweepLoop(); });
  if (options_.stats_interval.count() > 0) stats_ = std::thread([this] { StatsLoop(); });
}

void Dispatcher::Stop() {
  // From here on this process's messages are due at once, for any relay.
  // (Waits for a Handoff in progress, so nothing is handed over after it.)
  if (writer_ != nullptr) writer_->SetOutboxListener({}, 0);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  timer_cv_.notify_all();
  if (relay_.joinable()) relay_.join();
  if (sweeper_.joinable()) sweeper_.join();
  if (stats_.joinable()) stats_.join();
  // Handed over but not published: leave them to the next relay at once
  // rather than after their claim lapses.
  std::vector<int64_t> unpublished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const OutboxMessage& m : handed_over_) unpublished.push_back(m.id);
    handed_over_.clear();
  }
  Status deferred = store_->DeferOutbox(unpublished, "the relay stopped before publishing it", 0);
  if (!deferred.ok()) log::Warn("could not release outbox messages: " + deferred.ToString());
  // Let the queue answer what is in flight (briefly), delete what it took.
  {
    std::unique_lock<std::mutex> lock(handed_->mu);
    handed_->cv.wait_for(lock, std::chrono::seconds(2), [this] { return handed_->in_flight == 0; });
    handed_->stopping = true;
  }
  handed_->cv.notify_all();
  if (settler_.joinable()) settler_.join();
}

// Kick and Handoff wake the relay (cv_'s only waiter) only when its wait
// predicate turns true: a batch of triggers hands over one message per run,
// and the relay takes them all at once.
void Dispatcher::Kick() {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // The write that kicks was handed over already: nothing to claim for it.
    if (handoff_credit_ > 0) {
      --handoff_credit_;
    } else {
      wake = !kicked_;
      kicked_ = true;
    }
  }
  if (wake) cv_.notify_one();
}

void Dispatcher::Handoff(const OutboxMessage& m) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake = handed_over_.empty();
    handed_over_.push_back(m);
    ++handoff_credit_;
  }
  if (wake) cv_.notify_one();
}

int Dispatcher::PublishHandedOver() {
  std::deque<OutboxMessage> batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(handed_over_);
  }
  if (batch.empty()) return 0;
  for (const OutboxMessage& m : batch) Deliveries::Publish(handed_, queue_, m);
  return static_cast<int>(batch.size());
}

void Dispatcher::Deliveries::Publish(const std::shared_ptr<Deliveries>& d, Queue* queue, const OutboxMessage& m) {
  {
    std::lock_guard<std::mutex> lock(d->mu);
    ++d->in_flight;
  }
  queue->PublishAsync(m.topic, m.key, m.payload, [d, id = m.id](Status s) {
    ++(s.ok() ? d->counts->published : d->counts->failures);
    bool wake = false;
    {
      std::lock_guard<std::mutex> lock(d->mu);
      // The waiters wait for the first answer since the last take (the
      // settler) or for the last answer (RelayOnce, Stop): wake them only
      // then, not at every answer of a batch.
      wake = d->published.empty() && d->failed.empty();
      if (s.ok()) {
        d->published.push_back(id);
      } else {
        d->failed[s.message()].push_back(id);
      }
      --d->in_flight;
      wake = wake || d->in_flight == 0;
    }
    if (wake) d->cv.notify_all();
  });
}

void Dispatcher::Deliveries::TakeLocked(std::vector<int64_t>* published_out,
                                        std::map<std::string, std::vector<int64_t>>* failed_out) {
  *published_out = std::move(published);
  *failed_out = std::move(failed);
  published.clear();
  failed.clear();
}

Status Dispatcher::SettlePublished(const std::vector<int64_t>& published,
                                   const std::map<std::string, std::vector<int64_t>>& failed, size_t* failures_out) {
  Status deleted = store_->DeleteOutbox(published);
  if (!deleted.ok()) {
    // Published but still in the outbox: published again once the claim
    // lapses. A duplicate request is harmless (the run's lease decides).
    log::Warn("published " + std::to_string(published.size()) +
              " outbox message(s) but could not delete them: " + deleted.ToString());
  }
  size_t failures = 0;
  for (const auto& [error, ids] : failed) {
    failures += ids.size();
    // Due again after retry_delay, for the claiming relay (this one or another).
    Status deferred = store_->DeferOutbox(ids, error, options_.retry_delay.count());
    if (!deferred.ok()) log::Warn("could not defer outbox messages: " + deferred.ToString());
  }
  *failures_out = failures;
  return deleted;
}

Result<int> Dispatcher::SettleHandedOver(std::chrono::milliseconds wait) {
  std::vector<int64_t> published;
  std::map<std::string, std::vector<int64_t>> failed;
  {
    std::unique_lock<std::mutex> lock(handed_->mu);
    handed_->cv.wait_for(lock, wait, [this] {
      return handed_->stopping || !handed_->published.empty() || !handed_->failed.empty();
    });
    handed_->TakeLocked(&published, &failed);
  }
  size_t failures = 0;
  Status deleted = SettlePublished(published, failed, &failures);
  if (failures > 0 && !last_settle_failed_) {
    log::Warn("could not publish " + std::to_string(failures) + " request(s) just accepted (" +
              failed.begin()->first + "); they stay in the outbox and are tried again every " +
              std::to_string(options_.retry_delay.count()) + " ms");
  }
  last_settle_failed_ = failures > 0;
  if (!deleted.ok()) return deleted;
  return static_cast<int>(published.size() + failures);
}

void Dispatcher::SettleLoop() {
  while (true) {
    auto n = SettleHandedOver(options_.idle_poll);
    std::unique_lock<std::mutex> lock(handed_->mu);
    if (handed_->stopping && handed_->published.empty() && handed_->failed.empty()) return;
    // After a settle, let the next answers gather for settle_interval: one
    // delete (one commit) per interval under load instead of one per answer.
    // Failures were logged; the outbox keeps what was not settled.
    if (n.ok() && *n > 0 && options_.settle_interval.count() > 0) {
      handed_->cv.wait_for(lock, options_.settle_interval, [this] { return handed_->stopping; });
    }
  }
}

double Dispatcher::oldest_age_seconds() const {
  int64_t oldest = oldest_created_at_.load();
  if (oldest == 0 || backlog_.load() == 0) return 0;
  return std::max<double>(0, static_cast<double>(NowMs() - oldest) / 1000.0);
}

Result<int> Dispatcher::RelayOnce() {
  auto claimed = store_->ClaimOutbox(options_.batch, options_.claim_ttl.count());
  if (!claimed.ok()) return claimed.status();
  if (claimed->empty()) return 0;

  // Publish the whole batch asynchronously, then settle it in two writes.
  auto deliveries = std::make_shared<Deliveries>(counts_);
  for (const OutboxMessage& m : *claimed) Deliveries::Publish(deliveries, queue_, m);
  std::vector<int64_t> published;
  std::map<std::string, std::vector<int64_t>> failed;
  {
    std::unique_lock<std::mutex> lock(deliveries->mu);
    // Unsettled after the claim expires: another relay may take them; leave them.
    deliveries->cv.wait_for(lock, options_.claim_ttl, [&] { return deliveries->in_flight == 0; });
    deliveries->TakeLocked(&published, &failed);
  }
  size_t failures = 0;
  (void)SettlePublished(published, failed, &failures);  // logged there; the relay goes on
  if (failures > 0 && !last_publish_failed_) {
    log::Warn("could not publish " + std::to_string(failures) + " queued request(s) (" + failed.begin()->first +
              "); they stay in the outbox and are tried again every " +
              std::to_string(options_.retry_delay.count()) + " ms");
  } else if (failures == 0 && last_publish_failed_) {
    log::Info("publishing from the outbox again");
  }
  last_publish_failed_ = failures > 0;
  return static_cast<int>(published.size());
}

void Dispatcher::RefreshStats() {
  auto stats = store_->GetOutboxStats();
  if (!stats.ok()) return;
  backlog_ = stats->messages;
  oldest_created_at_ = stats->oldest_created_at.value_or(0);
}

void Dispatcher::RelayLoop() {
  bool store_down = false;
  auto next_claim = std::chrono::steady_clock::now();  // a claim pass at once
  while (true) {
    bool claim = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_until(lock, next_claim, [this] { return stopping_ || kicked_ || !handed_over_.empty(); });
      if (stopping_) return;
      claim = kicked_ || std::chrono::steady_clock::now() >= next_claim;
      if (claim) {
        kicked_ = false;
        handoff_credit_ = 0;  // bounds credit left by writes that hand over without a Kick
      }
    }
    // Handed-over messages first: they are on a trigger's path.
    PublishHandedOver();
    if (!claim) continue;
    auto n = RelayOnce();
    next_claim = std::chrono::steady_clock::now() + options_.idle_poll;
    if (!n.ok()) {
      if (!store_down) log::Warn("outbox relay: " + n.status().ToString() + "; trying again");
      store_down = true;
    } else {
      if (store_down) log::Info("outbox relay: the database is back");
      store_down = false;
      if (*n == options_.batch) next_claim = std::chrono::steady_clock::now();  // more may be waiting
    }
  }
}

Result<int> Dispatcher::SweepOnce() {
  auto runs = store_->ListStrandedRuns(options_.stranded_after.count(), options_.sweep_batch);
  if (!runs.ok()) return runs.status();
  std::map<std::pair<std::string, int>, Workflow> workflows;
  int dispatched = 0;
  for (const Run& run : *runs) {
    auto key = std::make_pair(run.workflow_id, run.workflow_version);
    auto it = workflows.find(key);
    if (it == workflows.end()) {
      auto wf = store_->GetWorkflow(run.workflow_id, run.workflow_version);
      if (!wf.ok()) {
        log::Warn("stranded run: cannot read its workflow: " + wf.status().ToString(), {run.id});
        continue;
      }
      it = workflows.emplace(key, std::move(wf).value()).first;
    }
    auto did = store_->RedispatchRun(run.id, options_.stranded_after.count(),
                                     ExecutionDispatch(run, it->second, options_.execution_topic));
    if (!did.ok()) return did.status();
    if (!*did) continue;  // another sweeper, or an executor, got there first
    ++dispatched;
    std::string since = run.dispatched_at ? std::to_string((NowMs() - *run.dispatched_at) / 1000) + " s ago"
                                          : std::string("never");
    log::Info(std::string("run ") + ToString(run.status) + " with no executor holding it (last dispatched " + since +
                  "); dispatched again",
              {run.id, {}, {}, TraceIdOf(run)});
  }
  redispatched_ += static_cast<uint64_t>(dispatched);
  if (dispatched > 0) Kick();
  return dispatched;
}

void Dispatcher::SweepLoop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (timer_cv_.wait_for(lock, options_.sweep_interval, [this] { return stopping_; })) return;
    }
    auto n = SweepOnce();
    if (!n.ok()) log::Warn("sweeper: " + n.status().ToString() + "; trying again later");
  }
}

void Dispatcher::StatsLoop() {
  while (true) {
    const auto began = std::chrono::steady_clock::now();
    RefreshStats();
    const auto took = std::chrono::steady_clock::now() - began;
    const auto wait =
        std::max<std::chrono::steady_clock::duration>(options_.stats_interval, took * DispatcherOptions::kStatsSpacing);
    std::unique_lock<std::mutex> lock(mu_);
    if (timer_cv_.wait_for(lock, wait, [this] { return stopping_; })) return;
  }
}

}  // namespace af
