#include "storage/change_feed.h"

#include <utility>
#include <vector>

#include "storage/forwarding_store.h"

namespace af {
namespace {
// Listener calls in progress on this thread (Unsubscribe does not wait then).
thread_local int tl_listener_calls = 0;
const std::string kAllRuns;  // the by_run_ key of subscribers of every run
}  // namespace

uint64_t ChangeFeed::Subscribe(const std::string& run_id, Listener listener, Interest interest) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t token = next_token_++;
  entries_[token] = Entry{run_id, interest, std::make_shared<Listener>(std::move(listener))};
  by_run_[run_id].push_back(token);
  return token;
}

void ChangeFeed::Unsubscribe(uint64_t token) {
  std::shared_ptr<Listener> listener;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = entries_.find(token);
    if (it == entries_.end()) return;
    listener = std::move(it->second.listener);
    auto run = by_run_.find(it->second.run_id);
    if (run != by_run_.end()) {
      std::erase(run->second, token);
      if (run->second.empty()) by_run_.erase(run);
    }
    entries_.erase(it);
    // Publishers drop their copies under mu_: once only ours is left, no
    // call is in progress and none can start. From inside a listener (its
    // own or another's call) waiting could deadlock: the publisher drops
    // the copy when that call returns.
    if (tl_listener_calls == 0) released_.wait(lock, [&] { return listener.use_count() == 1; });
  }
  listener.reset();  // destroyed here, outside the lock (unless a call holds it)
}

void ChangeFeed::Publish(Change change, const MakeEndedRun& ended) {
  std::vector<std::shared_ptr<Listener>> targets;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Subscribers of all runs first, then the run's own (in subscription order each).
    for (const std::string* key : {&kAllRuns, &std::as_const(change.run_id)}) {
      auto run = by_run_.find(*key);
      if (run == by_run_.end()) continue;
      for (uint64_t token : run->second) {
        const Entry& e = entries_.at(token);
        if (change.kind == Change::Kind::kStep && e.interest == Interest::kRuns) continue;
        targets.push_back(e.listener);
      }
      if (change.run_id.empty()) break;  // "" is the all-runs key: do not deliver twice
    }
  }
  if (targets.empty()) return;
  if (ended) change.ended = ended();
  for (auto& l : targets) {
    ++tl_listener_calls;
    struct Done {
      ~Done() { --tl_listener_calls; }
    } done;
    (*l)(change);
    {
      std::lock_guard<std::mutex> lock(mu_);
      l.reset();
    }
    released_.notify_all();
  }
}

namespace {

// Forwards every call; publishes after successful run/step writes.
class FeedStore final : public ForwardingStore {
 public:
  FeedStore(std::unique_ptr<Store> inner, std::shared_ptr<ChangeFeed> feed)
      : ForwardingStore(inner.get()), owned_(std::move(inner)), feed_(std::move(feed)) {}

  Result<CreatedRun> CreateRun(const NewRun& r) override {
    auto res = inner()->CreateRun(r);
    if (res.ok() && res->created) PublishRun(res->run);
    return res;
  }
  std::vector<Result<CreatedRun>> CreateRuns(const std::vector<NewRun>& runs) override {
    auto res = inner()->CreateRuns(runs);  // the backend's batch, not CreateRun one by one
    for (const auto& r : res) {
      if (r.ok() && r->created) PublishRun(r->run);
    }
    return res;
  }
  Result<Run> TransitionRun(const RunTransition& t) override {
    auto res = inner()->TransitionRun(t);
    if (res.ok()) PublishRun(*res);
    return res;
  }
  Result<Run> RequestCancel(const CancelRequest& c) override {
    auto res = inner()->RequestCancel(c);
    if (res.ok()) PublishRun(*res);
    return res;
  }

  using Store::InsertStep;
  Result<int64_t> InsertStep(const StepExecution& s, int64_t lease_token) override {
    auto res = inner()->InsertStep(s, lease_token);
    if (res.ok()) feed_->Publish(Change{Change::Kind::kStep, s.run_id, std::nullopt, *res});
    return res;
  }
  Status FinishStep(const StepFinish& f) override {
    Status s = inner()->FinishStep(f);
    if (s.ok()) feed_->Publish(Change{Change::Kind::kStep, f.run_id, std::nullopt, f.id});
    return s;
  }
  Result<RunWritesResult> ApplyRunWrites(const RunWrites& w) override {
    auto res = inner()->ApplyRunWrites(w);
    if (res.ok()) PublishWrites(w, *res);
    return res;
  }
  std::vector<Result<RunWritesResult>> ApplyRunWritesGroup(const std::vector<const RunWrites*>& group) override {
    auto out = inner()->ApplyRunWritesGroup(group);
    for (size_t i = 0; i < out.size() && i < group.size(); ++i) {
      if (out[i].ok()) PublishWrites(*group[i], *out[i]);
    }
    return out;
  }

 private:
  void PublishWrites(const RunWrites& w, const RunWritesResult& res) {
    for (size_t i = 0; i < w.ops.size(); ++i) {
      const RunWrite& op = w.ops[i];
      if (op.kind == RunWrite::Kind::kInsertStep) {
        feed_->Publish(Change{Change::Kind::kStep, w.run_id, std::nullopt, res.step_ids[i]});
      } else if (op.kind == RunWrite::Kind::kFinishStep) {
        feed_->Publish(Change{Change::Kind::kStep, w.run_id, std::nullopt, op.finish.id});
      }
    }
    if (res.run) PublishRun(*res.run);
  }
  void PublishRun(const Run& r) {
    Change c{Change::Kind::kRun, r.id, r.status, 0, nullptr};
    if (!IsTerminal(r.status)) return feed_->Publish(std::move(c));
    feed_->Publish(std::move(c), [&r] { return std::make_shared<const Run>(r); });
  }

  std::unique_ptr<Store> owned_;  // the backend, which inner() points to
  std::shared_ptr<ChangeFeed> feed_;
};

}  // namespace

std::unique_ptr<Store> WithChangeFeed(std::unique_ptr<Store> inner, std::shared_ptr<ChangeFeed> feed) {
  return std::make_unique<FeedStore>(std::move(inner), std::move(feed));
}

}  // namespace af
