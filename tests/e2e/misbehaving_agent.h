// A hand-written HTTP agent for end-to-end tests, speaking raw sockets so it
// can misbehave in ways a real HTTP library will not: answer 500, hang, close
// in the middle of a response, send malformed JSON, send a 20 MB body with or
// without Content-Length, trickle a body, fail the first N calls per
// Idempotency-Key, or take a while (to count calls in flight).
//
// The mode is the last path segment of the URL the agent is registered
// with, parameters come from the query:
//   /agents/ok                 200 {"ok": true, "calls": n}    (n: calls with this Idempotency-Key)
//   /agents/slow?ms=M          waits M ms, then as ok
//   /agents/500                500 {"error": ...}
//   /agents/hang               reads the request and never answers (until the peer closes)
//   /agents/close              sends the headers and part of the body, then closes
//   /agents/badjson            200 with a body that is not JSON
//   /agents/huge?mb=N          200 with Content-Length N MiB (default 20) and sends it
//   /agents/hugechunked?mb=N   200, chunked, N MiB (default 20)
//   /agents/trickle            200 with Content-Length 1000, one byte every 100 ms
//   /agents/flaky?failures=F   503 for the first F calls per Idempotency-Key, then as ok
//
// Bounds: loopback only; every read and write has a timeout or gives up as
// soon as the peer closes; Stop() (and the destructor) close every socket
// and join every thread within about a second.
//
// Thread-safety: the counters may be read from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace af::e2e {

class MisbehavingAgent {
 public:
  MisbehavingAgent();  // listens on 127.0.0.1, a free port
  ~MisbehavingAgent();
  MisbehavingAgent(const MisbehavingAgent&) = delete;
  MisbehavingAgent& operator=(const MisbehavingAgent&) = delete;

  void Stop();
  uint16_t port() const { return port_; }
  // "http://127.0.0.1:PORT/agents/<mode_and_query>"
  std::string Url(const std::string& mode_and_query) const;

  // Requests received per mode, per Idempotency-Key, the most requests of a
  // mode in progress at once, and bytes of huge bodies actually sent.
  int64_t Calls(const std::string& mode) const;
  int64_t CallsWithKey(const std::string& key) const;
  int64_t MaxInFlight(const std::string& mode) const;
  int64_t HugeBytesSent() const { return huge_bytes_sent_.load(); }
  // "500: 6 calls, hang: 4 calls, ..." for the test's report.
  std::string Summary() const;

 private:
  void AcceptLoop();
  void Serve(int fd);

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;

  mutable std::mutex mu_;  // guards everything below
  std::vector<std::thread> conns_;
  std::vector<int> open_fds_;
  std::map<std::string, int64_t> calls_;
  std::map<std::string, int64_t> by_key_;
  std::map<std::string, int64_t> in_flight_;
  std::map<std::string, int64_t> max_in_flight_;
  std::atomic<int64_t> huge_bytes_sent_{0};
};

}  // namespace af::e2e
