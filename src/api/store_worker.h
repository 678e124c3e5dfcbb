// Store calls of the API off the HTTP io threads, and group commit of
// triggers.
//
// A trigger used to commit its run (and outbox row) on the HTTP server's io
// thread: one commit in flight at a time, every other connection waiting
// behind it (docs/benchmarks.md, "trigger"). Here a handler queues its NewRun
// and co_awaits the result; a worker thread takes everything queued (up to
// max_batch) and commits it with one Store::CreateRuns call — one
// transaction, one flush — then resumes each waiter on its own executor. A
// batch forms while the previous one commits, so the batch size follows the
// load: one run when idle, dozens under 64 concurrent triggers. Nothing is
// answered before its commit.
//
// Thread-safety: every method from any thread. Callers' executors must keep
// running until Stop() has returned (Stop before stopping the HTTP server).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "http/http.h"
#include "storage/store.h"

namespace af {

struct StoreWorkerOptions {
  // Worker threads. Each commits one batch at a time; with more than one, a
  // batch can be written while another waits for its flush (PostgreSQL). On
  // SQLite (one connection) a second thread only waits for the first.
  int threads = 1;
  // Runs per CreateRuns call; larger batches wait for the next one.
  size_t max_batch = 256;
  // Called on a worker thread after a batch that created at least one run
  // (the dispatcher's kick: once per batch, not per run). May be empty.
  std::function<void()> on_created;
};

class StoreWorker {
 public:
  StoreWorker(Store* store, StoreWorkerOptions options);
  ~StoreWorker();  // Stop()
  StoreWorker(const StoreWorker&) = delete;
  StoreWorker& operator=(const StoreWorker&) = delete;

  // Store::CreateRun, committed with the other runs queued meanwhile;
  // resumes on the caller's executor. After Stop(), runs CreateRun on the
  // calling thread.
  boost::asio::awaitable<Result<Store::CreatedRun>> CreateRun(NewRun run);

  // Runs `fn` (blocking store calls) on a worker thread and resumes on the
  // caller's executor with its result. After Stop(), on the calling thread.
  template <typename R>
  boost::asio::awaitable<R> Call(std::function<R()> fn) {
    std::optional<R> result;
    std::function<void()> job = [&result, &fn] { result.emplace(fn()); };
    auto init = [this, &job](auto handler) { Enqueue(nullptr, &job, Wrap(std::move(handler))); };
    co_await boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&, void()>(init,
                                                                                       boost::asio::use_awaitable);
    co_return std::move(*result);
  }

  // Finishes what is queued (waiters are resumed) and joins the threads.
  // Idempotent.
  void Stop();

 private:
  // A suspended caller: resumed by posting its handler to its executor. Holds
  // outstanding work on that executor while parked.
  struct Waiter {
    virtual ~Waiter() = default;
    virtual void Resume() = 0;
  };
  template <typename H>
  struct WaiterImpl final : Waiter {
    explicit WaiterImpl(H h)
        : handler(std::move(h)),
          work(boost::asio::prefer(boost::asio::get_associated_executor(handler),
                                   boost::asio::execution::outstanding_work.tracked)) {}
    void Resume() override {
      auto ex = boost::asio::get_associated_executor(handler);
      boost::asio::post(ex, std::move(handler));
    }
    H handler;
    decltype(boost::asio::prefer(boost::asio::get_associated_executor(std::declval<H&>()),
                                 boost::asio::execution::outstanding_work.tracked)) work;
  };
  template <typename H>
  static std::unique_ptr<Waiter> Wrap(H h) {
    return std::make_unique<WaiterImpl<H>>(std::move(h));
  }

  struct Create {
    NewRun* run;                                      // in the caller's frame
    std::optional<Result<Store::CreatedRun>>* out;    // in the caller's frame
    std::unique_ptr<Waiter> waiter;
  };
  struct Job {
    std::function<void()>* fn;  // in the caller's frame
    std::unique_ptr<Waiter> waiter;
  };

  // Queues a creation (create != null) or a call; after Stop runs it here
  // and resumes the waiter at once.
  void Enqueue(Create* create, std::function<void()>* job, std::unique_ptr<Waiter> waiter);
  void Loop();

  Store* store_;
  const StoreWorkerOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Create> creates_;  // guarded by mu_
  std::deque<Job> jobs_;        // guarded by mu_
  bool stopping_ = false;       // guarded by mu_
  std::vector<std::thread> threads_;
};

// Options for threads that make reads and other single calls (no trigger
// batches): `threads`, but at most the store's connections
// (Store::MaxConcurrentCalls: on SQLite a second thread only waits for the
// first), and at least one.
StoreWorkerOptions ReaderOptions(const Store& store, int threads);

// A route that runs the synchronous handler `fn` (one that calls the store)
// on a thread of `readers`, so the io thread serves its other connections
// while the database answers; the request is answered on the io thread that
// read it. `readers` must not be null.
http::Handler OffIoThread(std::shared_ptr<StoreWorker> readers, std::function<http::Response(http::Request&)> fn);

}  // namespace af
