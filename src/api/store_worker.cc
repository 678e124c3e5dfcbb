#include "api/store_worker.h"

#include <algorithm>

namespace af {

namespace asio = boost::asio;

StoreWorker::StoreWorker(Store* store, StoreWorkerOptions options) : store_(store), options_(std::move(options)) {
  const int n = std::max(1, options_.threads);
  for (int i = 0; i < n; ++i) threads_.emplace_back([this] { Loop(); });
}

StoreWorker::~StoreWorker() { Stop(); }

asio::awaitable<Result<Store::CreatedRun>> StoreWorker::CreateRun(NewRun run) {
  std::optional<Result<Store::CreatedRun>> result;
  Create create{&run, &result, nullptr};
  // Named, not a temporary in the co_await expression (g++ 12, PLATFORM-NOTES).
  auto init = [this, &create](auto handler) { Enqueue(&create, nullptr, Wrap(std::move(handler))); };
  co_await asio::async_initiate<const asio::use_awaitable_t<>&, void()>(init, asio::use_awaitable);
  co_return std::move(*result);
}

void StoreWorker::Enqueue(Create* create, std::function<void()>* job, std::unique_ptr<Waiter> waiter) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      if (create) {
        creates_.push_back(Create{create->run, create->out, std::move(waiter)});
      } else {
        jobs_.push_back(Job{job, std::move(waiter)});
      }
      cv_.notify_one();
      return;
    }
  }
  // Stopped: no thread takes it any more; do it here (shutdown only).
  if (create) {
    std::optional<Result<Store::CreatedRun>>& out = *create->out;
    out.emplace(store_->CreateRun(*create->run));
    if (out->ok() && (*out)->created && options_.on_created) options_.on_created();
  } else {
    (*job)();
  }
  waiter->Resume();
}

void StoreWorker::Loop() {
  for (;;) {
    std::vector<Create> batch;
    std::optional<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !creates_.empty() || !jobs_.empty(); });
      if (creates_.empty() && jobs_.empty()) return;  // stopping, and everything is done
      // One call at a time: a slow one must not hold up calls queued behind
      // it while another thread is free to make them.
      if (!jobs_.empty()) {
        job.emplace(std::move(jobs_.front()));
        jobs_.pop_front();
      }
      while (!creates_.empty() && batch.size() < options_.max_batch) {
        batch.push_back(std::move(creates_.front()));
        creates_.pop_front();
      }
      if (!creates_.empty() || !jobs_.empty()) cv_.notify_one();  // another thread may take the rest
    }
    // A waiter's frame may be gone once it is resumed: touch nothing of it after Resume.
    if (job) {
      (*job->fn)();
      job->waiter->Resume();
    }
    if (batch.empty()) continue;
    std::vector<NewRun> runs;
    runs.reserve(batch.size());
    for (Create& c : batch) runs.push_back(std::move(*c.run));
    std::vector<Result<Store::CreatedRun>> results = store_->CreateRuns(runs);
    bool created = false;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (i < results.size()) {
        created = created || (results[i].ok() && results[i]->created);
        batch[i].out->emplace(std::move(results[i]));
      } else {
        batch[i].out->emplace(Status::Internal("store: CreateRuns returned fewer results than runs"));
      }
    }
    if (created && options_.on_created) options_.on_created();
    for (Create& c : batch) c.waiter->Resume();
  }
}

void StoreWorker::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

StoreWorkerOptions ReaderOptions(const Store& store, int threads) {
  StoreWorkerOptions o;
  o.threads = std::max(1, std::min(threads, store.MaxConcurrentCalls()));
  return o;
}

namespace {

// `fn` is the route's own (it lives as long as the router); the worker is
// held by the frame while the call is away.
boost::asio::awaitable<http::Response> CallOnWorker(std::shared_ptr<StoreWorker> readers,
                                                    const std::function<http::Response(http::Request&)>& fn,
                                                    http::Request& req) {
  std::function<http::Response()> job = [&fn, &req] { return fn(req); };
  http::Response res = co_await readers->Call<http::Response>(std::move(job));
  co_return res;
}

}  // namespace

http::Handler OffIoThread(std::shared_ptr<StoreWorker> readers, std::function<http::Response(http::Request&)> fn) {
  auto handler = [readers = std::move(readers), fn = std::move(fn)](http::Request& req) {
    return CallOnWorker(readers, fn, req);
  };
  return handler;
}

}  // namespace af
