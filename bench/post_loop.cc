#include "bench/post_loop.h"

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstdlib>
#include <optional>

namespace af::bench {

namespace asio = boost::asio;
using asio::ip::tcp;

struct PostConnection::Impl {
  std::string host, port, request;
  std::optional<tcp::socket> socket;
  std::string in;  // bytes read past the previous answer (none, normally)
  std::optional<std::chrono::steady_clock::time_point> busy_since;
};

PostConnection::PostConnection(std::string url, std::string body, const std::string& authorization) : impl_(new Impl) {
  // http://host:port/path
  std::string rest = url.substr(url.find("//") + 2);
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
  size_t colon = authority.rfind(':');
  impl_->host = authority.substr(0, colon);
  impl_->port = colon == std::string::npos ? "80" : authority.substr(colon + 1);
  std::string auth_line = authorization.empty() ? "" : "Authorization: " + authorization + "\r\n";
  impl_->request = "POST " + path + " HTTP/1.1\r\nHost: " + authority + "\r\n" + auth_line +
                   "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
                   body;
}

PostConnection::~PostConnection() { delete impl_; }

namespace {

// The value of header `name` (lower case) in `head`, or "".
std::string HeaderValue(const std::string& head, const std::string& name) {
  size_t pos = 0;
  while ((pos = head.find("\r\n", pos)) != std::string::npos) {
    pos += 2;
    size_t colon = head.find(':', pos);
    size_t end = head.find("\r\n", pos);
    if (colon == std::string::npos || colon > end) continue;
    std::string key = head.substr(pos, colon - pos);
    std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return std::tolower(c); });
    if (key != name) continue;
    size_t v = colon + 1;
    while (v < end && head[v] == ' ') ++v;
    return head.substr(v, end - v);
  }
  return "";
}

}  // namespace

std::optional<std::chrono::steady_clock::time_point> PostConnection::busy_since() const { return impl_->busy_since; }

void PostConnection::Abort() {
  boost::system::error_code ignored;
  if (impl_->socket) impl_->socket->close(ignored);
}

asio::awaitable<PostAnswer> PostConnection::Post() {
  auto ex = co_await asio::this_coro::executor;
  Impl& c = *impl_;
  c.busy_since = std::chrono::steady_clock::now();
  boost::system::error_code ec;
  auto fail = [&c](std::string what) {
    c.socket.reset();
    c.in.clear();
    c.busy_since.reset();
    return PostAnswer{0, std::move(what)};
  };
  if (!c.socket) {
    tcp::resolver resolver(ex);
    auto endpoints = co_await resolver.async_resolve(c.host, c.port, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return fail("resolve: " + ec.message());
    c.socket.emplace(ex);
    co_await asio::async_connect(*c.socket, endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return fail("connect: " + ec.message());
    c.socket->set_option(tcp::no_delay(true));
  }
  co_await asio::async_write(*c.socket, asio::buffer(c.request), asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return fail("write: " + ec.message());
  char buf[4096];
  size_t head_end;
  while ((head_end = c.in.find("\r\n\r\n")) == std::string::npos) {
    size_t n = co_await c.socket->async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return fail("read: " + ec.message());
    c.in.append(buf, n);
  }
  const std::string head = c.in.substr(0, head_end + 2);
  const size_t length = static_cast<size_t>(std::strtoull(HeaderValue(head, "content-length").c_str(), nullptr, 10));
  const size_t total = head_end + 4 + length;
  while (c.in.size() < total) {
    size_t n = co_await c.socket->async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return fail("read: " + ec.message());
    c.in.append(buf, n);
  }
  // "HTTP/1.1 202 Accepted"
  const size_t sp = head.find(' ');
  const int status = sp == std::string::npos ? 0 : std::atoi(head.c_str() + sp + 1);
  if (status == 0) co_return fail("no status line");
  c.in.erase(0, total);
  c.busy_since.reset();
  co_return PostAnswer{status, {}};
}

}  // namespace af::bench
