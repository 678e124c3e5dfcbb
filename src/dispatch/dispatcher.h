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
// - Sweeper: a run that is not terminal, that no executor holds a lease on
//   and whose request was last dispatched more than stranded_after ago (its
//   message was lost, or its executor died and no redelivery came) is
//   dispatched again through the outbox. Duplicates are harmless: executors
//   take a run only with its lease, and ignore finished runs.
//
// Several dispatchers (one per api / consumer / serve process) share one
// database safely: claims hide messages from other relays (SKIP LOCKED on
// PostgreSQL) and a stranded run is re-dispatched by one sweeper only.
//
// Thread-safety: Kick and the counters from any thread; Start/Stop from one.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

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
  // Sweeper: how often, and how long a run must have gone undriven since its
  // last dispatch. 0 interval: no sweeper.
  std::chrono::milliseconds sweep_interval{10000};
  std::chrono::milliseconds stranded_after{60000};
  int sweep_batch = 500;
};

// The outbox message carrying the seed's execution request for `run` of
// workflow version `wf` (the plan included).
OutboxMessage ExecutionDispatch(const Run& run, const Workflow& wf, const std::string& topic);

class Dispatcher {
 public:
  // `store` and `queue` must outlive the dispatcher.
  Dispatcher(Store* store, Queue* queue, DispatcherOptions options = {});
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Starts the relay thread (and the sweeper, when sweep_interval > 0).
  void Start();
  // Stops both; messages not yet published stay in the outbox.
  void Stop();
  // New outbox messages were committed: publish without waiting for idle_poll.
  void Kick();

  // One relay pass: claims, publishes and settles up to `batch` messages;
  // returns how many were published. For tests and for the relay thread.
  Result<int> RelayOnce();
  // One sweep: returns how many stranded runs were dispatched again.
  Result<int> SweepOnce();

  uint64_t published() const { return published_.load(); }
  uint64_t publish_failures() const { return publish_failures_.load(); }
  uint64_t redispatched() const { return redispatched_.load(); }
  // The outbox as last read (at most about once a second while running).
  int64_t backlog() const { return backlog_.load(); }
  // Age in seconds of the oldest message waiting, 0 when none.
  double oldest_age_seconds() const;

 private:
  void RelayLoop();
  void SweepLoop();
  void RefreshStats();

  Store* store_;
  Queue* queue_;
  DispatcherOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool kicked_ = false;    // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  std::thread relay_;
  std::thread sweeper_;
  std::atomic<uint64_t> published_{0};
  std::atomic<uint64_t> publish_failures_{0};
  std::atomic<uint64_t> redispatched_{0};
  std::atomic<int64_t> backlog_{0};
  std::atomic<int64_t> oldest_created_at_{0};  // 0: none
  std::chrono::steady_clock::time_point stats_at_{};
  bool last_publish_failed_ = false;  // relay thread only: log the first failure of an outage once
};

}  // namespace af
