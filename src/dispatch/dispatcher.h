// The Dispatcher moves execution requests from the database to the queue, so
// that nothing accepted is ever lost:
//
// - Relay (transactional outbox): runs are created and retried together
//   with their execution request in one database transaction
//   (NewRun::dispatch, RunTransition::dispatch). The relay claims due outbox
//   messages, publishes them, deletes what the queue accepted and defers the
//   rest (broker down: tried again every retry_delay). Kick() after a write
//   publishes at once; without one the outbox is read every idle_poll, so
//   messages written by a process that died are published by another.
// - Fast path (AttachWriter): the backend this process writes through
//   inserts its own outbox messages already claimed (for claim_ttl) and
//   hands them to this dispatcher in memory once committed; the relay
//   publishes them at once, with no claim commit, and a settler thread
//   deletes what the queue accepted in batches, off the trigger's path. A
//   process that dies in between leaves its claimed messages to any relay
//   after claim_ttl: delayed, never lost.
// - Sweeper: a run that is not terminal, that no executor holds a lease on
//   and whose request was last dispatched long enough ago (its message was
//   lost, or its executor died and no redelivery came) is dispatched again
//   through the outbox. "Long enough" is stranded_after, doubled for every
//   re-dispatch in a row that no executor took (Store::ListStrandedRuns), so
//   runs merely waiting in a queue backlog are not dispatched again at every
//   sweep. Duplicates are harmless: executors take a run only with its
//   lease, and ignore finished runs.
//
// Several dispatchers (one per api / consumer / serve process) share one
// database safely: claims hide messages from other relays (SKIP LOCKED on
// PostgreSQL) and a stranded run is re-dispatched by one sweeper only.
//
// Thread-safety: Kick, Handoff and the counters from any thread;
// AttachWriter, Start and Stop from one.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "queue/messages.h"
#include "queue/queue.h"
#include "storage/store.h"

namespace af {

struct DispatcherOptions {
  std::string execution_topic = kExecutionTopic;  // where the sweeper's requests go
  int batch = 256;                                // messages claimed per relay pass
  // A claimed message is hidden from other relays this long; longer than a
  // publish may take (Kafka's message.timeout.ms is 10 s).
  std::chrono::milliseconds claim_ttl{30000};
  std::chrono::milliseconds idle_poll{500};       // outbox read without a Kick
  std::chrono::milliseconds retry_delay{1000};    // after a failed publish
  // Fast path: the settler deletes what the queue accepted at most once per
  // settle_interval (the first answer after a quiet spell at once), so a
  // burst of triggers costs one delete commit per interval, not one per
  // answer; its rows stay claimed meanwhile. 0: settle every answer at once.
  std::chrono::milliseconds settle_interval{20};
  // Sweeper: how often, and how long a run must have gone undriven since its
  // last dispatch (doubled per re-dispatch nobody took, up to an hour; see
  // Store::ListStrandedRuns). 0 interval: no sweeper.
  std::chrono::milliseconds sweep_interval{10000};
  std::chrono::milliseconds stranded_after{60000};
  int sweep_batch = 500;
  // How often backlog() and oldest_age_seconds() read the outbox, on a
  // thread of their own (a count over a backlog of millions of rows takes
  // seconds, which must delay no publish). Reads are at least
  // kStatsSpacing times the last read's duration apart, so they use at most
  // 1/kStatsSpacing of a database connection. 0: never.
  std::chrono::milliseconds stats_interval{1000};
  static constexpr int kStatsSpacing = 50;
};

// The outbox message carrying the seed's execution request for `run` of
// workflow version `wf` (the plan included).
OutboxMessage ExecutionDispatch(const Run& run, const Workflow& wf, const std::string& topic);
// The same, from the workflow version's request template (the plan
// serialized once for all its runs).
OutboxMessage ExecutionDispatch(const Run& run, const ExecutionRequestTemplate& request, const std::string& topic);

class Dispatcher {
 public:
  // `store` and `queue` must outlive the dispatcher.
  Dispatcher(Store* store, Queue* queue, DispatcherOptions options = {});
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // The fast path: from Start to Stop, `backend` (the Store this process's
  // writers use, under any decorators; it must outlive the dispatcher) hands
  // the outbox messages it commits to Handoff instead of leaving them to a
  // claim. Returns false if `backend` has no fast path (nothing changes).
  bool AttachWriter(Store* backend);
  // Starts the relay thread (and the sweeper, when sweep_interval > 0; the
  // settler of the fast path).
  void Start();
  // Stops them; messages not yet published stay in the outbox (handed-over
  // ones are made due at once for other relays).
  void Stop();
  // New outbox messages were committed: publish without waiting for idle_poll.
  // A Kick that follows a Handoff of the same write costs no claim pass.
  void Kick();
  // A committed outbox message, already claimed by this process: publish it
  // now. Quick; the Store's listener.
  void Handoff(const OutboxMessage& m);

  // One relay pass: claims, publishes and settles up to `batch` messages;
  // returns how many were published. For tests and for the relay thread.
  Result<int> RelayOnce();
  // One sweep: returns how many stranded runs were dispatched again.
  Result<int> SweepOnce();

  // Publishes the handed-over messages waiting (without waiting for the
  // queue's answers); returns how many. For tests and the relay thread.
  int PublishHandedOver();
  // Deletes the handed-over messages the queue accepted and defers those it
  // refused; waits up to `wait` for one to be settled. Returns how many
  // messages it settled. For tests and the settler thread.
  Result<int> SettleHandedOver(std::chrono::milliseconds wait);
  // Deletes what was published and defers what failed (by error); sets
  // *failures. Returns the delete's status (already logged).
  Status SettlePublished(const std::vector<int64_t>& published,
                         const std::map<std::string, std::vector<int64_t>>& failed, size_t* failures);

  uint64_t published() const { return counts_->published.load(); }
  uint64_t publish_failures() const { return counts_->failures.load(); }
  uint64_t redispatched() const { return redispatched_.load(); }
  // The outbox as last read (every stats_interval while running, or less
  // often while reading it is slow).
  int64_t backlog() const { return backlog_.load(); }
  // Age in seconds of the oldest message waiting, 0 when none.
  double oldest_age_seconds() const;

 private:
  // Counted when the queue answers (a request is on the queue from then on,
  // whatever happens to its outbox row); shared with the publish callbacks.
  struct Counts {
    std::atomic<uint64_t> published{0};
    std::atomic<uint64_t> failures{0};
  };
  // The queue's answers to a set of publishes (a relay pass's, or the
  // handed-over ones'); shared with the publish callbacks, which may outlive
  // the dispatcher.
  struct Deliveries {
    explicit Deliveries(std::shared_ptr<Counts> c) : counts(std::move(c)) {}
    // Publishes `m` on `queue` and records the answer here.
    static void Publish(const std::shared_ptr<Deliveries>& d, Queue* queue, const OutboxMessage& m);
    // Moves the answers so far into *published / *failed.
    void TakeLocked(std::vector<int64_t>* published, std::map<std::string, std::vector<int64_t>>* failed);

    std::shared_ptr<Counts> counts;
    std::mutex mu;
    std::condition_variable cv;
    size_t in_flight = 0;  // guarded by mu, as the rest
    std::vector<int64_t> published;
    std::map<std::string, std::vector<int64_t>> failed;  // by error
    bool stopping = false;
  };

  void RelayLoop();
  void SweepLoop();
  void SettleLoop();
  void StatsLoop();
  // Reads the outbox's size and age into backlog_ and oldest_created_at_.
  void RefreshStats();

  Store* store_;
  Queue* queue_;
  DispatcherOptions options_;
  Store* writer_ = nullptr;  // AttachWriter's backend
  std::mutex mu_;
  std::condition_variable cv_;        // the relay waits on it
  std::condition_variable timer_cv_;  // the sweeper and the stats thread wait on it (for Stop)
  bool kicked_ = false;    // guarded by mu_: a claim pass is wanted
  bool stopping_ = false;  // guarded by mu_
  std::deque<OutboxMessage> handed_over_;  // guarded by mu_: not yet published
  int64_t handoff_credit_ = 0;             // guarded by mu_: handoffs not yet matched by a Kick
  std::shared_ptr<Counts> counts_ = std::make_shared<Counts>();
  std::shared_ptr<Deliveries> handed_ = std::make_shared<Deliveries>(counts_);  // the fast path's
  std::thread relay_;
  std::thread sweeper_;
  std::thread settler_;
  std::thread stats_;
  std::atomic<uint64_t> redispatched_{0};
  std::atomic<int64_t> backlog_{0};
  std::atomic<int64_t> oldest_created_at_{0};  // 0: none
  bool last_publish_failed_ = false;  // relay thread only: log the first failure of an outage once
  bool last_settle_failed_ = false;   // settler thread only: the same for handed-over messages
};

}  // namespace af
