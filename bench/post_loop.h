// PostLoop: the trigger figure's load generator. One keep-alive HTTP/1.1
// connection per coroutine, each sending the same POST over a plain socket
// and reading the answer's status line and Content-Length body, nothing
// else. The figure measures the api, and the load generator shares the
// machine's two cores with it: the general http::Client (Beast's parser and
// serializer, a request object per call) cost ~25 µs of CPU per request,
// this ~14 µs (docs/benchmarks.md, item 24).
//
// Thread-safety: one io_context thread.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"

namespace af::bench {

struct PostAnswer {
  int status = 0;  // HTTP status; 0 with `error` set if there was none
  std::string error;
};

class PostConnection {
 public:
  // `url` is http://host:port/path; `body` is sent as application/json;
  // `authorization`, if not empty, as the Authorization header.
  PostConnection(std::string url, std::string body, const std::string& authorization = "");
  ~PostConnection();
  PostConnection(const PostConnection&) = delete;
  PostConnection& operator=(const PostConnection&) = delete;

  // Sends the POST (connecting first, or again after an error) and waits
  // for the whole answer.
  boost::asio::awaitable<PostAnswer> Post();
  // When the POST in progress was sent; nullopt when none is. A watchdog
  // (one for all connections, not a timer per request) calls Abort on a
  // POST that takes too long: it ends with an error.
  std::optional<std::chrono::steady_clock::time_point> busy_since() const;
  void Abort();

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace af::bench
