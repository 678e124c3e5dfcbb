// The HTTP/1.1 server: one acceptor coroutine, one coroutine per connection
// on its own strand, `threads` io threads on one io_context.
//
// Shutdown: Stop() closes the acceptor and every tracked connection on the
// connection's own strand, stops the io_context, joins the threads and then
// destroys the io_context. Destroying it destroys every coroutine frame that
// is still suspended (e.g. a handler waiting on a 30 s timer), which unwinds
// their locals (sockets, timers, requests) without resuming them. That is why
// executor() is invalid after Stop(), and why anything a handler references
// must outlive Stop().
//
// g++ 12 coroutine rule used throughout (PLATFORM-NOTES): no temporary
// aggregate or capturing lambda in a co_await full-expression; helpers take
// named objects by reference.
#include <array>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "common/log.h"
#include "http/http.h"

namespace af::http {

namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

constexpr size_t kHeaderLimit = 64 * 1024;      // request line + headers
constexpr int kListenBacklog = 4096;            // bursts of connects (kernel caps at somaxconn)
constexpr auto kLingerTime = std::chrono::seconds(2);  // drain after an error reply, see Linger
constexpr size_t kLingerBytes = 4 << 20;
constexpr auto kStopGrace = std::chrono::seconds(2);    // wait for closes posted by Stop

// Ends of a connection that need no reply: the peer went away, the idle
// timer fired, or we closed the socket ourselves.
bool IsQuietClose(const error_code& ec) {
  return ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor ||
         ec == asio::error::not_connected || ec == beast::error::timeout;
}

bool ValidHeaderText(std::string_view s) {
  for (char c : s) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

bool IEquals(std::string_view a, std::string_view b) { return beast::iequals(a, b); }

// A handler's headers onto a response message, less the invalid ones and
// the framing headers, which are the server's to set.
template <typename Message>
void CopyHeaders(const Response& res, Message& out) {
  for (const auto& [name, value] : res.headers) {
    if (name.empty() || !ValidHeaderText(name) || !ValidHeaderText(value)) continue;
    if (IEquals(name, "Content-Length") || IEquals(name, "Transfer-Encoding") || IEquals(name, "Connection")) {
      continue;  // framing is ours
    }
    out.insert(name, value);
  }
}

// A deadline on reading one request that, unlike tcp_stream's own timer
// (which closes the socket), only cancels the read: the client can still be
// told 408. The timer's handler may run after the connection's frame is
// gone, so it reaches the socket through shared state the frame clears.
// Touched on the connection's strand only.
class ReadDeadline {
 public:
  explicit ReadDeadline(beast::tcp_stream& stream)
      : timer_(stream.get_executor()), state_(std::make_shared<State>()) {
    state_->socket = &stream.socket();
  }
  ~ReadDeadline() {
    state_->socket = nullptr;
    timer_.cancel();
  }
  ReadDeadline(const ReadDeadline&) = delete;
  ReadDeadline& operator=(const ReadDeadline&) = delete;

  // (Re)arms the deadline `d` from now.
  void Arm(std::chrono::steady_clock::duration d) {
    uint64_t gen = ++state_->generation;
    timer_.expires_after(d);
    timer_.async_wait([st = state_, gen](const error_code& ec) {
      if (ec || st->generation != gen || st->socket == nullptr) return;
      st->expired = true;
      error_code ignored;
      st->socket->cancel(ignored);
    });
  }
  void Disarm() {
    ++state_->generation;
    timer_.cancel();
  }
  bool expired() const { return state_->expired; }

 private:
  struct State {
    tcp::socket* socket = nullptr;
    uint64_t generation = 0;
    bool expired = false;
  };
  asio::steady_timer timer_;
  std::shared_ptr<State> state_;
};

// "2.0" when `head` (the start of a request) has a well-formed request line
// for an HTTP version other than 1.0 and 1.1; Beast reports that as a bad
// version, like a malformed one, but it deserves a 505.
std::string OtherHttpVersion(std::string_view head) {
  std::string_view line = head.substr(0, head.find("\r\n"));
  if (line.size() < 9 || line.size() == head.size()) return "";
  std::string_view v = line.substr(line.size() - 9);  // " HTTP/d.d"
  if (v.substr(0, 6) != " HTTP/" || !std::isdigit(static_cast<unsigned char>(v[6])) || v[7] != '.' ||
      !std::isdigit(static_cast<unsigned char>(v[8]))) {
    return "";
  }
  if (v[6] == '1' && (v[8] == '0' || v[8] == '1')) return "";
  return std::string(v.substr(6));
}

// Why a parsed request is refused before any handler sees it, or "".
std::string RequestProblem(const bhttp::request<bhttp::string_body>& in) {
  if (in.version() == 11 && in.find(bhttp::field::host) == in.end()) {
    return "an HTTP/1.1 request must carry a Host header";
  }
  if (in.find(bhttp::field::transfer_encoding) != in.end() && !in.chunked()) {
    // RFC 9112 6.3: the body's length cannot be determined.
    return "Transfer-Encoding '" + std::string(in[bhttp::field::transfer_encoding]) +
           "' is not supported. Hint: send the body with Content-Length, or chunked";
  }
  if (!IsValidUtf8(in.target())) return "the request target is not valid UTF-8";
  for (const auto& f : in) {
    if (!IsValidUtf8(f.value())) return "header '" + std::string(f.name_string()) + "' is not valid UTF-8";
  }
  return "";
}

// Counts down the closes Stop() posts; waits with a bound so that a handler
// blocking an io thread cannot hang Stop() here.
struct PendingCloses {
  std::mutex mu;
  std::condition_variable cv;
  size_t left = 0;
  void Done() {
    std::lock_guard<std::mutex> lock(mu);
    if (left > 0 && --left == 0) cv.notify_all();
  }
  void Wait(std::chrono::steady_clock::duration d) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, d, [&] { return left == 0; });
  }
};

// Thread-safety: Listen/Stop from one (non-io) thread; conns_ is shared by
// the connection coroutines and Stop() under mu_; everything else of a
// connection lives in its coroutine frame on its strand.
class ServerImpl final : public Server {
 public:
  ServerImpl(ServerOptions options, Handler handler)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        ioc_(std::make_unique<asio::io_context>(std::max(1, options_.threads))) {}
  ~ServerImpl() override { Stop(); }

  Status Listen();
  uint16_t port() const override { return port_; }
  void Stop() override;
  asio::any_io_executor executor() override {
    if (!ioc_) return {};
    return ioc_->get_executor();
  }

 private:
  // Registers a connection for Stop() while its coroutine lives.
  class ConnGuard {
   public:
    ConnGuard(ServerImpl* s, beast::tcp_stream* stream) : s_(s) {
      std::lock_guard<std::mutex> lock(s_->mu_);
      id_ = s_->next_conn_++;
      s_->conns_.emplace(id_, Conn{stream->get_executor(), stream});
    }
    ~ConnGuard() {
      std::lock_guard<std::mutex> lock(s_->mu_);
      s_->conns_.erase(id_);
    }
    ConnGuard(const ConnGuard&) = delete;
    ConnGuard& operator=(const ConnGuard&) = delete;

   private:
    ServerImpl* s_;
    uint64_t id_ = 0;
  };

  struct Conn {
    asio::any_io_executor strand;
    beast::tcp_stream* stream;
  };

  asio::awaitable<void> AcceptLoop();
  asio::awaitable<void> Serve(tcp::socket socket);
  asio::awaitable<bool> Write(beast::tcp_stream& stream, const Response& res, unsigned version, bool keep_alive,
                              bool head);
  asio::awaitable<bool> WriteStream(beast::tcp_stream& stream, const Response& res, unsigned version, bool keep_alive,
                                    bool head);
  asio::awaitable<void> Linger(beast::tcp_stream& stream);
  void BuildRequest(bhttp::request<bhttp::string_body>& in, const std::string& remote, Request& out);

  ServerOptions options_;
  Handler handler_;
  std::unique_ptr<asio::io_context> ioc_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::optional<tcp::acceptor> acceptor_;
  asio::any_io_executor accept_strand_;
  std::vector<std::thread> threads_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  bool stopped_ = false;

  std::mutex mu_;  // guards next_conn_, conns_
  uint64_t next_conn_ = 1;
  std::unordered_map<uint64_t, Conn> conns_;
};

Status ServerImpl::Listen() {
  error_code ec;
  asio::ip::address addr;
  const std::string& host = options_.host;
  if (host.empty() || host == "*") {
    addr = asio::ip::address_v4::any();
  } else if (host == "localhost") {
    addr = asio::ip::address_v4::loopback();
  } else {
    addr = asio::ip::make_address(host, ec);
    if (ec) {
      return Status::InvalidArgument("cannot listen on '" + host +
                                     "': not an IP address. Hint: use 127.0.0.1, 0.0.0.0 or ::");
    }
  }
  tcp::endpoint endpoint(addr, options_.port);
  std::string where = host + ":" + std::to_string(options_.port);
  acceptor_.emplace(*ioc_);
  acceptor_->open(endpoint.protocol(), ec);
  if (!ec) acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_->bind(endpoint, ec);
  if (!ec) acceptor_->listen(kListenBacklog, ec);
  if (ec) {
    return Status::Unavailable("cannot listen on " + where + ": " + ec.message() +
                               ". Hint: is another process using the port? Pick another with --port, or 0 for any");
  }
  port_ = acceptor_->local_endpoint(ec).port();

  // The accept loop and Stop()'s close of the acceptor share a strand, so the
  // acceptor is never touched from two io threads at once.
  accept_strand_ = asio::make_strand(ioc_->get_executor());
  asio::awaitable<void> loop = AcceptLoop();
  asio::co_spawn(accept_strand_, std::move(loop), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      log::Error(std::string("http server: accept loop failed: ") + ex.what());
    }
  });
  work_.emplace(ioc_->get_executor());
  int n = std::max(1, options_.threads);
  for (int i = 0; i < n; ++i) {
    threads_.emplace_back([ioc = ioc_.get()] {
      for (;;) {
        try {
          ioc->run();
          return;
        } catch (const std::exception& e) {
          log::Error(std::string("http server: io thread caught: ") + e.what());
        }
      }
    });
  }
  return Status::Ok();
}

void ServerImpl::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (!ioc_) return;
  stopping_ = true;

  if (!threads_.empty()) {
    auto pending = std::make_shared<PendingCloses>();
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending->left = 1 + conns_.size();
      asio::post(accept_strand_, [this, pending] {
        error_code ec;
        if (acceptor_) acceptor_->close(ec);
        pending->Done();
      });
      for (auto& [id, conn] : conns_) {
        asio::post(conn.strand, [this, id = id, pending] {
          {
            std::lock_guard<std::mutex> l(mu_);
            auto it = conns_.find(id);
            if (it != conns_.end()) {
              error_code ec;
              it->second.stream->socket().shutdown(tcp::socket::shutdown_both, ec);
              it->second.stream->socket().close(ec);
            }
          }
          pending->Done();
        });
      }
    }
    pending->Wait(kStopGrace);
  }

  work_.reset();
  ioc_->stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  acceptor_.reset();
  accept_strand_ = {};
  // Destroys every abandoned coroutine frame (handlers still suspended).
  ioc_.reset();
}

asio::awaitable<void> ServerImpl::AcceptLoop() {
  for (;;) {
    asio::any_io_executor strand = asio::make_strand(ioc_->get_executor());
    tcp::socket socket(strand);
    error_code ec;
    co_await acceptor_->async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_ || !acceptor_->is_open()) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      // EMFILE and friends: back off instead of spinning.
      log::Warn("http server: accept failed: " + ec.message());
      asio::steady_timer pause(co_await asio::this_coro::executor);
      pause.expires_after(std::chrono::milliseconds(50));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    asio::awaitable<void> conn = Serve(std::move(socket));
    asio::co_spawn(strand, std::move(conn), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log::Warn(std::string("http server: connection failed: ") + ex.what());
      }
    });
  }
}

void ServerImpl::BuildRequest(bhttp::request<bhttp::string_body>& in, const std::string& remote, Request& out) {
  out.method = std::string(in.method_string());
  out.target = std::string(in.target());
  std::string_view target = out.target;
  // absolute-form ("http://host/path") as sent to proxies: keep the path.
  if (target.size() > 7 && IEquals(target.substr(0, 7), "http://")) {
    size_t slash = target.find('/', 7);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  size_t q = target.find('?');
  out.path = std::string(target.substr(0, q));  // decoded by the caller
  if (q != std::string_view::npos) out.query = ParseQuery(target.substr(q + 1));
  for (const auto& f : in) out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  out.body = std::move(in.body());
  out.remote = remote;
}

asio::awaitable<bool> ServerImpl::Write(beast::tcp_stream& stream, const Response& res, unsigned version,
                                        bool keep_alive, bool head) {
  bhttp::response<bhttp::string_body> out;
  out.version(version);
  int status = res.status;
  if (status < 100 || status > 999) status = 500;
  out.result(static_cast<unsigned>(status));
  bool no_body = (status >= 100 && status < 200) || status == 204 || status == 304;
  CopyHeaders(res, out);
  if (!no_body) {
    if (!res.content_type.empty() && !res.body.empty() && ValidHeaderText(res.content_type) &&
        out.find(bhttp::field::content_type) == out.end()) {
      out.set(bhttp::field::content_type, res.content_type);
    }
    out.content_length(res.body.size());
    if (!head) out.body() = res.body;
  }
  out.keep_alive(keep_alive);

  error_code ec;
  stream.expires_after(options_.idle_timeout);
  co_await bhttp::async_write(stream, out, asio::redirect_error(asio::use_awaitable, ec));
  co_return !ec;
}

// The writer a streamed body's producer gets: a chunk per Write on
// HTTP/1.1, the bytes as they are on HTTP/1.0 (the close ends the body).
class ChunkWriter final : public StreamWriter {
 public:
  ChunkWriter(beast::tcp_stream& stream, bool chunked, std::chrono::seconds timeout, const std::atomic<bool>& stopping)
      : stream_(stream), chunked_(chunked), timeout_(timeout), stopping_(stopping) {}

  asio::awaitable<bool> Write(std::string data) override {
    if (failed_ || stopping_) co_return false;
    if (data.empty()) co_return true;  // an empty chunk would end the body
    error_code ec;
    stream_.expires_after(timeout_);
    // Named, not temporaries in the co_await expression (g++ 12, PLATFORM-NOTES).
    if (chunked_) {
      auto chunk = bhttp::make_chunk(asio::buffer(data));
      co_await asio::async_write(stream_, chunk, asio::redirect_error(asio::use_awaitable, ec));
    } else {
      auto bytes = asio::buffer(data);
      co_await asio::async_write(stream_, bytes, asio::redirect_error(asio::use_awaitable, ec));
    }
    stream_.expires_never();
    if (ec) failed_ = true;
    co_return !failed_;
  }

  bool failed() const { return failed_; }

 private:
  beast::tcp_stream& stream_;
  bool chunked_;
  std::chrono::seconds timeout_;
  const std::atomic<bool>& stopping_;
  bool failed_ = false;
};

asio::awaitable<bool> ServerImpl::WriteStream(beast::tcp_stream& stream, const Response& res, unsigned version,
                                              bool keep_alive, bool head) {
  bhttp::response<bhttp::empty_body> out;
  out.version(version);
  int status = res.status;
  if (status < 200 || status > 999 || status == 204 || status == 304) status = 500;
  out.result(static_cast<unsigned>(status));
  CopyHeaders(res, out);
  if (!res.content_type.empty() && ValidHeaderText(res.content_type)) {
    out.set(bhttp::field::content_type, res.content_type);
  }
  const bool chunked = version >= 11;
  if (!chunked) keep_alive = false;  // HTTP/1.0: the close ends the body
  if (chunked) out.chunked(true);
  out.keep_alive(keep_alive);

  error_code ec;
  stream.expires_after(options_.idle_timeout);
  bhttp::response_serializer<bhttp::empty_body> sr(out);
  co_await bhttp::async_write_header(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
  stream.expires_never();
  if (ec) co_return false;
  if (head) co_return keep_alive;
  ChunkWriter writer(stream, chunked, options_.idle_timeout, stopping_);
  std::string failure;
  try {
    asio::awaitable<void> produce = res.stream(writer);
    co_await std::move(produce);
  } catch (const std::exception& e) {
    failure = e.what();
  } catch (...) {
    failure = "unknown exception";
  }
  if (!failure.empty()) {
    // The status is sent: all the client can see is a body cut short.
    log::Error("http: a streamed response threw: " + failure);
    co_return false;
  }
  if (writer.failed() || stopping_) co_return false;
  if (chunked) {
    stream.expires_after(options_.idle_timeout);
    auto last = bhttp::make_chunk_last();
    co_await asio::async_write(stream, last, asio::redirect_error(asio::use_awaitable, ec));
    stream.expires_never();
    if (ec) co_return false;
  }
  co_return keep_alive;
}

// After an error reply we close without reading the rest of the request. A
// close with unread input makes the kernel send RST, which can destroy the
// reply before the client reads it; so half-close and drain for a moment.
asio::awaitable<void> ServerImpl::Linger(beast::tcp_stream& stream) {
  error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  if (ec) co_return;
  stream.expires_after(kLingerTime);
  std::array<char, 16 * 1024> buf;
  size_t drained = 0;
  while (drained < kLingerBytes && !stopping_) {
    size_t n = co_await stream.async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    drained += n;
  }
}

asio::awaitable<void> ServerImpl::Serve(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  ConnGuard guard(this, &stream);
  if (stopping_) co_return;
  error_code ec;
  stream.socket().set_option(tcp::no_delay(true), ec);
  std::string remote;
  {
    tcp::endpoint ep = stream.socket().remote_endpoint(ec);
    if (!ec) remote = ep.address().to_string() + ":" + std::to_string(ep.port());
  }

  beast::flat_buffer buffer;
  ReadDeadline deadline(stream);
  for (;;) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(options_.max_body_bytes);

    // Between requests a keep-alive connection may sit idle; once a request
    // has begun, its headers and then its body each have a deadline.
    if (buffer.size() == 0) {
      stream.expires_after(options_.idle_timeout);
      size_t n =
          co_await stream.async_read_some(buffer.prepare(16 * 1024), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;  // idle, or the peer went away between requests
      buffer.commit(n);
    }
    stream.expires_never();
    // A small request usually arrives whole in one read: parse what the
    // buffer holds here, and only what is missing through the composed
    // reads and their deadlines (docs/benchmarks.md item 40); the same
    // parser and limits either way. The header first, so that a client that
    // sent Expect gets its interim response below, body buffered or not.
    buffer.consume(parser.put(buffer.data(), ec));
    if (ec == bhttp::error::need_more) ec = {};
    if (!ec && parser.is_header_done() && !parser.is_done() &&
        parser.get().find(bhttp::field::expect) == parser.get().end()) {
      parser.eager(true);
      buffer.consume(parser.put(buffer.data(), ec));
      if (ec == bhttp::error::need_more) ec = {};
    }
    if (!ec && !parser.is_header_done()) {
      deadline.Arm(options_.header_timeout);
      co_await bhttp::async_read_header(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    }
    if (!ec && !parser.is_done()) {
      auto& h = parser.get();
      auto expect = h.find(bhttp::field::expect);
      if (expect != h.end() && IEquals(expect->value(), "100-continue")) {
        bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, h.version()};
        stream.expires_after(options_.idle_timeout);
        co_await bhttp::async_write(stream, cont, asio::redirect_error(asio::use_awaitable, ec));
        stream.expires_never();
        if (ec) co_return;
      }
      deadline.Arm(options_.body_timeout);
      co_await bhttp::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    }
    const bool timed_out = deadline.expired();
    deadline.Disarm();
    if (ec || timed_out) {
      Response err;
      std::string other_version;
      if (ec == bhttp::error::bad_version) {
        std::string_view received(static_cast<const char*>(buffer.data().data()), buffer.size());
        other_version = OtherHttpVersion(received);
      }
      if (timed_out) {
        bool in_body = parser.is_header_done();
        auto limit = in_body ? options_.body_timeout : options_.header_timeout;
        err = JsonError(408, "DEADLINE_EXCEEDED",
                        std::string("the request's ") + (in_body ? "body" : "headers") + " did not arrive within " +
                            std::to_string(limit.count()) + " ms; the connection is closed");
      } else if (ec == bhttp::error::body_limit) {
        // A Content-Length over the limit stops the parser before the header
        // is done, where content_length() must not be called (Beast asserts
        // it): take the field as sent (the parser has checked it is a number).
        const auto& fields = parser.get();
        auto sent = fields.find(bhttp::field::content_length);
        std::string size = sent != fields.end() ? std::string(sent->value()) + " bytes" : "more";
        err = JsonError(413, "TOO_LARGE",
                        "request body is " + size + ", over the limit of " + std::to_string(options_.max_body_bytes) +
                            " bytes");
      } else if (ec == bhttp::error::header_limit) {
        err = JsonError(431, "TOO_LARGE",
                        "request line and headers are over the limit of " + std::to_string(kHeaderLimit) + " bytes");
      } else if (ec == bhttp::error::partial_message) {
        // The client half-closed with a request unfinished; it may still read.
        err = JsonError(400, "INVALID_ARGUMENT",
                        std::string("the request ended before its ") + (parser.is_header_done() ? "body" : "headers") +
                            " did");
      } else if (!other_version.empty()) {
        err = JsonError(505, "INVALID_ARGUMENT", "HTTP/" + other_version + " is not supported. Hint: use HTTP/1.1");
      } else if (!IsQuietClose(ec)) {
        // Everything else comes from the parser: the request is not HTTP/1.x.
        err = JsonError(400, "INVALID_ARGUMENT", "malformed HTTP request: " + ec.message());
      } else {
        co_return;
      }
      if (log::Enabled(log::Level::kDebug)) log::Debug("http: refused a request from " + remote + ": " + err.body);
      co_await Write(stream, err, 11, false, false);
      co_await Linger(stream);
      co_return;
    }

    bhttp::request<bhttp::string_body> in = parser.release();
    unsigned version = in.version();  // 10 or 11: the parser refuses others (505 above)
    if (std::string problem = RequestProblem(in); !problem.empty()) {
      Response err = JsonError(400, "INVALID_ARGUMENT", problem);
      co_await Write(stream, err, version, false, false);
      co_await Linger(stream);
      co_return;
    }
    bool keep_alive = in.keep_alive();
    bool head = in.method() == bhttp::verb::head;
    Request req;
    BuildRequest(in, remote, req);

    Response res;
    std::optional<std::string> decoded = PercentDecode(req.path);
    std::string bad_query;
    for (const auto& [k, v] : req.query) {
      if (!IsValidUtf8(k) || !IsValidUtf8(v)) bad_query = k;
    }
    if (!decoded) {
      res = JsonError(400, "INVALID_ARGUMENT", "invalid percent-encoding in path '" + req.path + "'");
    } else if (!IsValidUtf8(*decoded)) {
      res = JsonError(400, "INVALID_ARGUMENT", "the path is not valid UTF-8 once percent-decoded");
    } else if (!bad_query.empty()) {
      res = JsonError(400, "INVALID_ARGUMENT", "query parameter '" + bad_query + "' is not valid UTF-8 once decoded");
    } else {
      req.path = std::move(*decoded);
      if (log::Enabled(log::Level::kDebug)) log::Debug("http: " + req.method + " " + req.target + " from " + remote);
      // A handler may wait as long as it likes (long-poll): no idle timer.
      stream.expires_never();
      std::string failure;
      try {
        asio::awaitable<Response> call = handler_(req);
        Response out = co_await std::move(call);
        res = std::move(out);
      } catch (const std::exception& e) {
        failure = e.what();
      } catch (...) {
        failure = "unknown exception";
      }
      if (!failure.empty()) {
        log::Error("http: handler for " + req.method + " " + req.path + " threw: " + failure);
        res = JsonError(500, "INTERNAL", "internal error while handling " + req.method + " " + req.path);
      }
    }

    if (stopping_) keep_alive = false;
    if (res.stream) {
      // false: the stream failed or the body ended with the connection.
      keep_alive = co_await WriteStream(stream, res, version, keep_alive, head);
      if (!keep_alive) {
        stream.socket().shutdown(tcp::socket::shutdown_send, ec);
        co_return;
      }
      continue;
    }
    bool written = co_await Write(stream, res, version, keep_alive, head);
    if (!written) co_return;
    if (!keep_alive) {
      stream.socket().shutdown(tcp::socket::shutdown_send, ec);
      co_return;
    }
  }
}

}  // namespace

Result<std::unique_ptr<Server>> StartServer(const ServerOptions& options, Handler handler) {
  if (!handler) return Status::InvalidArgument("StartServer needs a handler");
  auto server = std::make_unique<ServerImpl>(options, std::move(handler));
  AF_RETURN_IF_ERROR(server->Listen());
  return std::unique_ptr<Server>(std::move(server));
}

}  // namespace af::http
