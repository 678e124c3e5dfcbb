// An io_context with its own threads: the event loop the executor (and the
// agent calls it makes) run on. No thread is held per run or per call.
// Thread-safety: Start/Stop from one thread; executor() from any.
#pragma once

#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

namespace af {

class EventLoop {
 public:
  explicit EventLoop(int threads = 1) : threads_(threads), ioc_(threads) {}
  ~EventLoop() { Stop(); }
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  boost::asio::io_context::executor_type executor() { return ioc_.get_executor(); }
  boost::asio::io_context& context() { return ioc_; }

  void Start() {
    work_.emplace(ioc_.get_executor());
    for (int i = 0; i < threads_; ++i) workers_.emplace_back([this] { ioc_.run(); });
  }
  // Stops the loop: pending handlers are abandoned, threads joined.
  void Stop() {
    work_.reset();
    ioc_.stop();
    for (auto& t : workers_) {
      if (t.joinable()) t.join();
    }
    workers_.clear();
  }

 private:
  int threads_;
  boost::asio::io_context ioc_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::vector<std::thread> workers_;
};

}  // namespace af
