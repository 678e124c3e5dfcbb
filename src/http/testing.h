// For tests of route handlers: a request through a Router, run to completion
// on a private io_context (no sockets). Exceptions from the handler are
// rethrown.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <exception>

#include "http/http.h"

namespace af::http {

inline Response DispatchSync(const Router& router, Request& req) {
  boost::asio::io_context ioc;
  Response out;
  boost::asio::co_spawn(
      ioc, [&]() -> boost::asio::awaitable<void> { out = co_await router.Dispatch(req); },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  ioc.run();
  return out;
}

}  // namespace af::http
