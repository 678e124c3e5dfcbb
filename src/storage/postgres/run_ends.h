// How the api hears, across processes, that a run ended: PostgreSQL's
// LISTEN/NOTIFY on kRunEndChannel.
//
// RunEndNotifier (the writer's side, with PostgresOptions::notify_run_ends,
// off by default): after every commit that ended a run the store calls
// Notify, and a thread of the notifier's sends the NOTIFY
// on a connection of its own, in a transaction of its own. Not in the
// writes' transaction: a notifying commit holds a database-wide lock until
// it ends, and in the executor's group commits that put them in series
// (chain10 throughput 806/863 -> 641/565 runs/s, docs/benchmarks.md item
// 35). A NOTIFY goes at most every 5 ms: the ends of a burst share one (a
// waiter hears them up to 5 ms later), an end after a quiet moment goes at
// once. The session commits them with synchronous_commit off: they write
// no row, and waiting for their commit records' flush put one more WAL
// flush between the group commits (every session that writes data keeps
// it on). The thread and the connection start with the first Notify; a
// failure is logged once per outage and the next Notify retries.
//
// RunEndListener (the api's side, Store::ListenForRunEnds): LISTENs on a
// connection and a thread of its own and calls `wake` for every batch of
// notifications it reads. A lost connection is opened again every second,
// after which `wake` is called once (ends committed while nobody
// listened).
//
// Private to the PostgreSQL backend.
// Thread-safety: Notify from any thread. A listener is created and
// destroyed on one thread; `wake` runs on the listener's thread.
#pragma once

#include <libpq-fe.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "storage/store.h"

namespace af::postgres {

inline constexpr const char* kRunEndChannel = "agentflow_run_ends";

// `target` names the database in log lines (DescribeUrl's form).
class RunEndNotifier {
 public:
  // A NOTIFY at most every `spacing`: a lone end is sent at once; under
  // load, ends wait up to `spacing` and share one.
  RunEndNotifier(std::string url, std::string target, std::chrono::milliseconds connect_timeout,
                 std::chrono::milliseconds spacing = std::chrono::milliseconds(5));
  ~RunEndNotifier();  // stops the thread (a NOTIFY being sent completes)
  RunEndNotifier(const RunEndNotifier&) = delete;
  RunEndNotifier& operator=(const RunEndNotifier&) = delete;

  void Notify();

 private:
  void Loop();
  // One NOTIFY on *pg (connected first if null); false if it failed (then
  // *pg is closed and null).
  bool Send(PGconn** pg);

  const std::string url_;
  const std::string target_;
  const std::chrono::milliseconds timeout_;
  const std::chrono::milliseconds spacing_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool pending_ = false;  // guarded by mu_
  bool stop_ = false;     // guarded by mu_
  bool warned_ = false;   // the thread's: an outage was logged
  std::thread thread_;    // started by the first Notify, under mu_
};

// `target` names the database in log lines (DescribeUrl's form).
std::unique_ptr<Store::RunEndListener> StartRunEndListener(std::string url, std::string target,
                                                           std::chrono::milliseconds connect_timeout,
                                                           std::function<void()> wake);

}  // namespace af::postgres
