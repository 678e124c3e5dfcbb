// The HTTP/1.1 client: keep-alive pool per host:port, whole-exchange timeout
// and cancellation by closing the socket (Asio 1.74 has no per-operation
// cancellation).
//
// Each Send hops onto a fresh strand of the client's executor for the
// exchange, so that the exchange coroutine, its watchdog timer and the
// cancel callback (posted to the strand) never touch the socket at the same
// time even when the executor has several threads. With
// ClientOptions::one_thread the executor itself is that serial order and the
// exchange runs in the caller's coroutine. The caller's CancelSignal is only
// touched in Send itself, on the caller's executor.
//
// g++ 12 coroutine rule used throughout (PLATFORM-NOTES): no temporary
// aggregate or capturing lambda in a co_await full-expression.
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <functional>
#include <limits>
#include <mutex>
#include <unordered_map>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "http/http.h"

namespace af::http {

namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

constexpr size_t kResponseHeaderLimit = 64 * 1024;

// State of one exchange shared by its coroutine, its watchdog and the cancel
// callback. Touched on the exchange's strand only.
struct ExchangeState {
  tcp::socket* socket = nullptr;      // the connection in use, if any
  tcp::resolver* resolver = nullptr;  // the lookup in progress, if any
  bool timed_out = false;
  bool cancelled = false;
  bool done = false;
  std::string cancel_reason;

  bool aborted() const { return timed_out || cancelled; }
  void Abort() {
    error_code ec;
    if (socket != nullptr) {
      socket->shutdown(tcp::socket::shutdown_both, ec);
      socket->close(ec);
    }
    if (resolver != nullptr) resolver->cancel();
  }
};

// Idle keep-alive connections per "host:port". Thread-safe (one mutex), so
// that exchanges on different strands can share it.
class Pool {
 public:
  Pool(asio::any_io_executor ex, size_t max_idle) : ex_(std::move(ex)), max_idle_(max_idle) {}

  const asio::any_io_executor& executor() const { return ex_; }

  std::optional<tcp::socket> Take(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = idle_.find(key);
    if (it == idle_.end()) return std::nullopt;
    auto& v = it->second;
    while (!v.empty()) {
      tcp::socket s = std::move(v.back());
      v.pop_back();
      if (LooksAlive(s)) return s;
      error_code ec;
      s.close(ec);
    }
    return std::nullopt;
  }

  void Put(const std::string& key, tcp::socket s) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& v = idle_[key];
    if (v.size() >= max_idle_) {
      error_code ec;
      s.close(ec);
      return;
    }
    v.push_back(std::move(s));
  }

 private:
  // An idle connection the server already closed (EOF) or that holds bytes
  // nobody asked for is not worth a request; a peek costs one syscall.
  static bool LooksAlive(tcp::socket& s) {
    if (!s.is_open()) return false;
    char c;
    ssize_t n = ::recv(s.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n >= 0) return false;  // 0: EOF; >0: unexpected bytes
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }

  asio::any_io_executor ex_;
  size_t max_idle_;
  std::mutex mu_;
  std::unordered_map<std::string, std::vector<tcp::socket>> idle_;
};

// What the exchange coroutine hands back; default-constructible as co_spawn
// requires in Asio 1.74 (Result<T> is not).
struct Outcome {
  Status status;
  ClientResponse response;
};

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos)) {
      return false;
    }
  }
  return true;
}

bool ValidHeaderValue(std::string_view s) {
  for (char c : s) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

Status BuildMessage(const Url& url, ClientRequest& req, bhttp::request<bhttp::string_body>& msg) {
  if (!IsToken(req.method)) return Status::InvalidArgument("invalid HTTP method '" + req.method + "'");
  msg.version(11);
  bhttp::verb v = bhttp::string_to_verb(req.method);
  if (v == bhttp::verb::unknown) {
    msg.method_string(req.method);
  } else {
    msg.method(v);
  }
  msg.target(url.target);
  std::string host = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
  if (url.port != 80) host += ":" + std::to_string(url.port);
  msg.set(bhttp::field::host, host);
  msg.set(bhttp::field::user_agent, "agentflow");
  for (const auto& [name, value] : req.headers) {
    if (!IsToken(name) || !ValidHeaderValue(value)) {
      return Status::InvalidArgument("invalid HTTP header '" + name + "'");
    }
    if (beast::iequals(name, "Host") || beast::iequals(name, "Content-Length") ||
        beast::iequals(name, "Transfer-Encoding") || beast::iequals(name, "Connection")) {
      continue;  // framing and connection management are ours
    }
    msg.insert(name, value);
  }
  msg.body() = std::move(req.body);
  msg.prepare_payload();
  msg.keep_alive(true);
  return Status::Ok();
}

std::string Where(const Url& url) { return url.host + ":" + std::to_string(url.port); }

asio::awaitable<Status> Connect(tcp::socket& sock, const Url& url, ExchangeState& st) {
  error_code ec;
  std::vector<tcp::endpoint> endpoints;
  asio::ip::address addr = asio::ip::make_address(url.host, ec);
  if (!ec) {
    endpoints.emplace_back(addr, url.port);
  } else if (beast::iequals(url.host, "localhost")) {
    endpoints.emplace_back(asio::ip::address_v4::loopback(), url.port);
  } else {
    // async_resolve runs getaddrinfo on a background thread (PLATFORM-NOTES);
    // only real names get here. A timeout or cancel during the lookup is
    // reported once getaddrinfo returns: Asio cannot interrupt it.
    tcp::resolver resolver(co_await asio::this_coro::executor);
    std::string service = std::to_string(url.port);
    st.resolver = &resolver;
    auto results = co_await resolver.async_resolve(url.host, service, asio::redirect_error(asio::use_awaitable, ec));
    st.resolver = nullptr;
    if (st.aborted()) co_return Status::Cancelled("aborted");
    if (ec) {
      co_return Status::Unavailable("cannot resolve host '" + url.host + "': " + ec.message() +
                                    ". Hint: check the host name in the URL");
    }
    for (const auto& r : results) endpoints.push_back(r.endpoint());
    if (endpoints.empty()) co_return Status::Unavailable("host '" + url.host + "' has no addresses");
  }

  st.socket = &sock;
  for (const auto& ep : endpoints) {
    if (st.aborted()) co_return Status::Cancelled("aborted");
    if (sock.is_open()) sock.close(ec);
    co_await sock.async_connect(ep, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) break;
  }
  if (st.aborted()) co_return Status::Cancelled("aborted");
  if (ec) {
    co_return Status::Unavailable("cannot connect to " + Where(url) + ": " + ec.message() +
                                  ". Hint: is the service running and listening on that port?");
  }
  sock.set_option(tcp::no_delay(true), ec);
  co_return Status::Ok();
}

// `length`: the response's Content-Length, when it sent one.
Status MapError(const error_code& ec, const Url& url, size_t max_body, std::optional<uint64_t> length) {
  if (ec == bhttp::error::body_limit) {
    // Reading stopped at the limit: the rest was never read into memory.
    nlohmann::json details = {{"limit", max_body}, {"bytes", length ? nlohmann::json(*length) : nlohmann::json()}};
    return Status(Code::kTooLarge,
                  "response is " + (length ? std::to_string(*length) + " bytes" : std::string("larger")) +
                      ", over the limit of " + std::to_string(max_body) + " bytes",
                  std::move(details));
  }
  if (ec == bhttp::error::header_limit) {
    return Status::TooLarge("response headers larger than " + std::to_string(kResponseHeaderLimit) + " bytes");
  }
  if (ec == bhttp::error::end_of_stream || ec == asio::error::eof) {
    return Status::Unavailable("connection to " + Where(url) + " closed before a response arrived");
  }
  if (ec == bhttp::error::partial_message) {
    return Status::Unavailable("connection to " + Where(url) + " closed in the middle of the response");
  }
  if (ec.category() == bhttp::make_error_code(bhttp::error::bad_version).category()) {
    return Status::Unavailable("malformed HTTP response from " + Where(url) + ": " + ec.message());
  }
  return Status::Unavailable("HTTP exchange with " + Where(url) + " failed: " + ec.message());
}

// Runs on the exchange's strand (ClientOptions::one_thread: in the caller's
// coroutine).
asio::awaitable<Outcome> RunExchange(std::shared_ptr<Pool> pool, size_t max_body, std::shared_ptr<ExchangeState> st,
                                     Url url, ClientRequest req) {
  Outcome out;
  bhttp::request<bhttp::string_body> msg;
  out.status = BuildMessage(url, req, msg);
  if (!out.status.ok()) co_return out;
  bool head = msg.method() == bhttp::verb::head;

  asio::steady_timer watchdog(co_await asio::this_coro::executor);
  if (req.timeout.count() > 0) {
    watchdog.expires_after(req.timeout);
    watchdog.async_wait([st](error_code ec) {
      if (ec || st->done) return;
      st->timed_out = true;
      st->Abort();
    });
  }

  const std::string key = Where(url);
  std::optional<tcp::socket> sock;
  bool reusable = false;
  for (int attempt = 0;; ++attempt) {
    sock.reset();
    if (attempt == 0) sock = pool->Take(key);
    bool reused = sock.has_value();
    if (!reused) {
      sock.emplace(pool->executor());
      Status s = co_await Connect(*sock, url, *st);
      if (!s.ok()) {
        out.status = s;
        break;
      }
    }
    st->socket = &*sock;
    if (st->aborted()) break;

    error_code ec;
    co_await bhttp::async_write(*sock, msg, asio::redirect_error(asio::use_awaitable, ec));
    beast::flat_buffer buf;
    bhttp::response_parser<bhttp::string_body> parser;
    parser.header_limit(kResponseHeaderLimit);
    parser.body_limit(max_body);
    if (head) parser.skip(true);
    if (!ec && !st->aborted()) {
      co_await bhttp::async_read_header(*sock, buf, parser, asio::redirect_error(asio::use_awaitable, ec));
    }
    // Beast 1.74's response parser moves on to the body before its own
    // Content-Length vs body_limit check and an eager read then drops that
    // error (a 5000-byte body passes a 1000-byte limit): check it here.
    if (!ec && !st->aborted() && !parser.is_done() && parser.content_length() &&
        *parser.content_length() > max_body) {
      ec = bhttp::error::body_limit;
    }
    if (!ec && !st->aborted() && !parser.is_done()) {
      co_await bhttp::async_read(*sock, buf, parser, asio::redirect_error(asio::use_awaitable, ec));
    }
    if (st->aborted()) break;
    if (ec) {
      // A kept-alive connection the server closed while it sat idle: the
      // request never reached a handler, so send it once more on a new one.
      if (reused && attempt == 0 && !parser.got_some() && buf.size() == 0) {
        st->socket = nullptr;
        error_code ignored;
        sock->close(ignored);
        continue;
      }
      std::optional<uint64_t> length;
      // content_length() requires a complete header (Beast asserts it).
      if (parser.is_header_done()) {
        if (auto cl = parser.content_length()) length = *cl;
      }
      out.status = MapError(ec, url, max_body, length);
      break;
    }

    auto& res = parser.get();
    out.response.status = static_cast<int>(res.result_int());
    for (const auto& f : res) out.response.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    out.response.body = std::move(res.body());
    reusable = res.keep_alive() && !parser.need_eof() && buf.size() == 0;
    break;
  }

  st->done = true;
  st->socket = nullptr;
  watchdog.cancel();
  if (st->aborted()) {
    reusable = false;
    if (st->timed_out) {
      out.status = Status::DeadlineExceeded("request to " + req.url + " timed out after " +
                                            std::to_string(req.timeout.count()) + " ms");
    } else {
      out.status = Status::Cancelled("request to " + req.url + " cancelled: " + st->cancel_reason);
    }
  }
  if (sock) {
    if (reusable && out.status.ok() && sock->is_open()) {
      pool->Put(key, std::move(*sock));
    } else {
      error_code ec;
      sock->close(ec);
    }
  }
  co_return out;
}

// Thread-safety: the header promises less, but Send may in fact run
// concurrently from several threads of the executor (the pool is locked,
// each exchange has its own strand). The client may be destroyed while Sends
// are suspended: they hold the pool, not the client.
class ClientImpl final : public Client {
 public:
  ClientImpl(asio::any_io_executor ex, const ClientOptions& options)
      : ex_(std::move(ex)), options_(options), pool_(std::make_shared<Pool>(ex_, options.max_idle_per_host)) {}

  asio::awaitable<Result<ClientResponse>> Send(ClientRequest req, CancelSignal* cancel) override {
    Result<Url> url = ParseUrl(req.url);
    if (!url.ok()) co_return url.status();
    if (cancel != nullptr && cancel->cancelled()) {
      co_return Status::Cancelled("request to " + req.url + " cancelled: " + cancel->reason());
    }

    // Where the exchange's handlers run, one at a time.
    asio::any_io_executor serial = options_.one_thread ? ex_ : asio::make_strand(ex_);
    auto st = std::make_shared<ExchangeState>();
    CancelRegistration reg(cancel, [st, serial, cancel] {
      std::string reason = cancel->reason();
      asio::post(serial, [st, reason] {
        if (st->done) return;
        st->cancelled = true;
        st->cancel_reason = reason;
        st->Abort();
      });
    });

    std::string url_text = req.url;
    Outcome out;
    std::string failure;
    try {
      asio::awaitable<Outcome> op = RunExchange(pool_, options_.max_body_bytes, st, std::move(*url), std::move(req));
      if (options_.one_thread) {
        Outcome got = co_await std::move(op);
        out = std::move(got);
      } else {
        asio::awaitable<Outcome> hop = asio::co_spawn(serial, std::move(op), asio::use_awaitable);
        Outcome got = co_await std::move(hop);
        out = std::move(got);
      }
    } catch (const std::exception& e) {
      failure = e.what();
    }
    if (!failure.empty()) co_return Status::Internal("HTTP client failed on " + url_text + ": " + failure);
    // The signal lives on our executor: checking it here makes a cancel that
    // raced with a finished exchange still report Cancelled.
    if (cancel != nullptr && cancel->cancelled()) {
      co_return Status::Cancelled("request to " + url_text + " cancelled: " + cancel->reason());
    }
    if (!out.status.ok()) co_return out.status;
    co_return std::move(out.response);
  }

 private:
  asio::any_io_executor ex_;
  ClientOptions options_;
  std::shared_ptr<Pool> pool_;
};

asio::awaitable<void> FetchOnce(Client* client, ClientRequest req, Result<ClientResponse>* out) {
  asio::awaitable<Result<ClientResponse>> call = client->Send(std::move(req));
  Result<ClientResponse> r = co_await std::move(call);
  *out = std::move(r);
}

}  // namespace

std::unique_ptr<Client> NewClient(asio::any_io_executor executor, const ClientOptions& options) {
  return std::make_unique<ClientImpl>(std::move(executor), options);
}

namespace {

// StreamSync's exchange: the watchdog is the idle timer, re-armed before
// every read, so a stream may last as long as data keeps coming.
asio::awaitable<void> StreamOnce(ClientRequest req, const std::function<bool(std::string_view)>* on_data,
                                 Result<ClientResponse>* result) {
  auto parsed = ParseUrl(req.url);
  if (!parsed.ok()) {
    *result = parsed.status();
    co_return;
  }
  const Url url = *parsed;
  bhttp::request<bhttp::string_body> msg;
  if (Status s = BuildMessage(url, req, msg); !s.ok()) {
    *result = s;
    co_return;
  }
  auto ex = co_await asio::this_coro::executor;
  auto st = std::make_shared<ExchangeState>();
  asio::steady_timer watchdog(ex);
  auto arm = [&] {
    if (req.timeout.count() <= 0) return;
    watchdog.expires_after(req.timeout);
    watchdog.async_wait([st](error_code ec) {
      if (ec || st->done) return;
      st->timed_out = true;
      st->Abort();
    });
  };
  tcp::socket sock(ex);
  ClientResponse response;
  Status status = Status::Ok();
  error_code ec;
  arm();
  status = co_await Connect(sock, url, *st);
  if (status.ok()) {
    st->socket = &sock;
    co_await bhttp::async_write(sock, msg, asio::redirect_error(asio::use_awaitable, ec));
  }
  beast::flat_buffer buf;
  bhttp::response_parser<bhttp::buffer_body> parser;
  parser.header_limit(kResponseHeaderLimit);
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());  // a stream has no end we know of
  if (status.ok() && !ec) {
    co_await bhttp::async_read_header(sock, buf, parser, asio::redirect_error(asio::use_awaitable, ec));
  }
  if (status.ok() && !ec && !st->aborted()) {
    response.status = static_cast<int>(parser.get().result_int());
    for (const auto& f : parser.get()) response.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    // A refusal's body is an error document, not a stream: keep it whole
    // (up to 1 MiB) for the caller.
    const bool ok_status = response.status >= 200 && response.status < 300;
    std::array<char, 16 * 1024> chunk;
    bool more = true;
    while (more && !parser.is_done() && !st->aborted()) {
      parser.get().body().data = chunk.data();
      parser.get().body().size = chunk.size();
      watchdog.cancel();
      arm();
      co_await bhttp::async_read_some(sock, buf, parser, asio::redirect_error(asio::use_awaitable, ec));
      if (ec == bhttp::error::need_buffer) ec = {};
      if (ec || st->aborted()) break;
      const size_t n = chunk.size() - parser.get().body().size;
      if (n == 0) continue;
      if (ok_status) {
        more = (*on_data)(std::string_view(chunk.data(), n));
      } else if (response.body.size() < (1u << 20)) {
        response.body.append(chunk.data(), n);
      }
    }
  }
  st->done = true;
  st->socket = nullptr;
  watchdog.cancel();
  error_code ignored;
  sock.close(ignored);
  if (st->timed_out) {
    *result = Status::DeadlineExceeded("no data from " + req.url + " for " + std::to_string(req.timeout.count()) +
                                       " ms");
  } else if (!status.ok()) {
    *result = status;
  } else if (ec) {
    *result = MapError(ec, url, 0, std::nullopt);
  } else {
    *result = std::move(response);
  }
}

}  // namespace

Result<ClientResponse> StreamSync(const ClientRequest& req, const std::function<bool(std::string_view)>& on_data) {
  asio::io_context ioc(1);
  Result<ClientResponse> result = Status::Internal("request did not run");
  asio::awaitable<void> op = StreamOnce(req, &on_data, &result);
  asio::co_spawn(ioc, std::move(op), asio::detached);
  ioc.run();
  return result;
}

Result<ClientResponse> FetchSync(const ClientRequest& req) {
  asio::io_context ioc(1);
  Result<ClientResponse> result = Status::Internal("request did not run");
  {
    std::unique_ptr<Client> client = NewClient(ioc.get_executor());
    asio::awaitable<void> op = FetchOnce(client.get(), req, &result);
    asio::co_spawn(ioc, std::move(op), asio::detached);
    ioc.run();
  }
  return result;
}

}  // namespace af::http
