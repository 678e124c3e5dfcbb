#include "e2e/misbehaving_agent.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

namespace af::e2e {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr size_t kMaxRequestBytes = 4 << 20;
constexpr auto kRequestDeadline = 10s;  // to read one request
constexpr auto kHangLimit = 60s;        // a hang ends by itself after this

void SetTimeouts(int fd, int recv_ms, int send_ms) {
  timeval rt{recv_ms / 1000, (recv_ms % 1000) * 1000};
  timeval st{send_ms / 1000, (send_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rt, sizeof rt);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &st, sizeof st);
}

// Sends all of `data`; false once the peer is gone, a send times out or we stop.
bool SendAll(int fd, const std::string& data, const std::atomic<bool>& stopping) {
  size_t off = 0;
  while (off < data.size()) {
    if (stopping) return false;
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

struct ParsedRequest {
  std::string mode;
  std::map<std::string, std::string> query;
  std::string key;  // Idempotency-Key
};

// Reads one request (headers and a Content-Length body); false if the peer
// went away, sent garbage, or took too long.
bool ReadRequest(int fd, const std::atomic<bool>& stopping, ParsedRequest* out) {
  std::string buf;
  char chunk[16 * 1024];
  auto deadline = Clock::now() + kRequestDeadline;
  size_t header_end = std::string::npos;
  size_t content_length = 0;
  while (true) {
    if (header_end == std::string::npos) {
      header_end = buf.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        std::string head = buf.substr(0, header_end);
        size_t line_end = head.find("\r\n");
        std::string request_line = head.substr(0, line_end);
        size_t sp1 = request_line.find(' ');
        size_t sp2 = request_line.find(' ', sp1 + 1);
        if (sp1 == std::string::npos || sp2 == std::string::npos) return false;
        std::string target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
        std::string path = target.substr(0, target.find('?'));
        out->mode = path.substr(path.rfind('/') + 1);
        if (size_t q = target.find('?'); q != std::string::npos) {
          std::string qs = target.substr(q + 1);
          size_t start = 0;
          while (start <= qs.size()) {
            size_t amp = qs.find('&', start);
            std::string pair = qs.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
            size_t eq = pair.find('=');
            if (!pair.empty()) out->query[pair.substr(0, eq)] = eq == std::string::npos ? "" : pair.substr(eq + 1);
            if (amp == std::string::npos) break;
            start = amp + 1;
          }
        }
        size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
        while (pos < head.size()) {
          size_t e = head.find("\r\n", pos);
          std::string line = head.substr(pos, e == std::string::npos ? std::string::npos : e - pos);
          pos = e == std::string::npos ? head.size() : e + 2;
          size_t colon = line.find(':');
          if (colon == std::string::npos) continue;
          std::string name = Lower(line.substr(0, colon));
          std::string value = line.substr(colon + 1);
          value.erase(0, value.find_first_not_of(" \t"));
          if (name == "content-length") content_length = std::stoul(value);
          if (name == "idempotency-key") out->key = value;
        }
      }
    }
    if (header_end != std::string::npos && buf.size() >= header_end + 4 + content_length) return true;
    if (stopping || Clock::now() > deadline || buf.size() > kMaxRequestBytes) return false;
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n == 0) return false;
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      return false;
    }
    buf.append(chunk, static_cast<size_t>(n));
  }
}

std::string Response(int status, const std::string& reason, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) + " " + reason +
         "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

int64_t QueryInt(const ParsedRequest& r, const std::string& name, int64_t def) {
  auto it = r.query.find(name);
  if (it == r.query.end() || it->second.empty()) return def;
  return std::stoll(it->second);
}

}  // namespace

MisbehavingAgent::MisbehavingAgent() {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  if (listen_fd_ < 0) throw std::runtime_error("MisbehavingAgent: socket() failed");
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 256) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(listen_fd_);
    throw std::runtime_error(std::string("MisbehavingAgent: cannot listen: ") + std::strerror(errno));
  }
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

MisbehavingAgent::~MisbehavingAgent() { Stop(); }

void MisbehavingAgent::Stop() {
  if (stopping_.exchange(true)) return;
  if (acceptor_.joinable()) acceptor_.join();
  ::close(listen_fd_);
  std::vector<std::thread> conns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Wakes every connection thread blocked in recv/send; each closes its own fd.
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
    conns.swap(conns_);
  }
  for (auto& t : conns) t.join();
}

std::string MisbehavingAgent::Url(const std::string& mode_and_query) const {
  return "http://127.0.0.1:" + std::to_string(port_) + "/agents/" + mode_and_query;
}

int64_t MisbehavingAgent::Calls(const std::string& mode) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = calls_.find(mode);
  return it == calls_.end() ? 0 : it->second;
}

int64_t MisbehavingAgent::CallsWithKey(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_key_.find(key);
  return it == by_key_.end() ? 0 : it->second;
}

int64_t MisbehavingAgent::MaxInFlight(const std::string& mode) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = max_in_flight_.find(mode);
  return it == max_in_flight_.end() ? 0 : it->second;
}

std::string MisbehavingAgent::Summary() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const auto& [mode, n] : calls_) {
    out += (out.empty() ? "" : ", ") + mode + ": " + std::to_string(n) + " call" + (n == 1 ? "" : "s");
  }
  return out.empty() ? "no calls" : out;
}

void MisbehavingAgent::AcceptLoop() {
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    int ready = ::poll(&p, 1, 100);
    if (ready <= 0) continue;
    int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) continue;
    std::lock_guard<std::mutex> lock(mu_);
    open_fds_.push_back(fd);
    conns_.emplace_back([this, fd] { Serve(fd); });
  }
}

void MisbehavingAgent::Serve(int fd) {
  SetTimeouts(fd, 200, 2000);
  ParsedRequest req;
  if (ReadRequest(fd, stopping_, &req)) {
    const std::string& mode = req.mode;
    int64_t nth_with_key = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++calls_[mode];
      nth_with_key = ++by_key_[req.key];
      int64_t now = ++in_flight_[mode];
      max_in_flight_[mode] = std::max(max_in_flight_[mode], now);
    }
    // A call is in flight until its answer starts out: once the caller has
    // it, the caller may start the next one (an agent's max_concurrency),
    // possibly before this thread gets here again.
    bool counted = true;
    auto answered = [&] {
      std::lock_guard<std::mutex> lock(mu_);
      if (counted) --in_flight_[mode];
      counted = false;
    };
    const std::string ok = Response(200, "OK", R"({"ok": true, "calls": )" + std::to_string(nth_with_key) + "}");
    if (mode == "ok") {
      SendAll(fd, ok, stopping_);
    } else if (mode == "slow") {
      auto until = Clock::now() + std::chrono::milliseconds(QueryInt(req, "ms", 200));
      while (!stopping_ && Clock::now() < until) std::this_thread::sleep_for(5ms);
      answered();
      SendAll(fd, ok, stopping_);
    } else if (mode == "500") {
      SendAll(fd, Response(500, "Internal Server Error", R"({"error": "misbehaving agent: 500 on purpose"})"),
              stopping_);
    } else if (mode == "hang") {
      // Never answers; returns when the caller gives up and closes.
      auto until = Clock::now() + kHangLimit;
      char c[256];
      while (!stopping_ && Clock::now() < until) {
        ssize_t n = ::recv(fd, c, sizeof c, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) break;
      }
    } else if (mode == "close") {
      SendAll(fd,
              "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"partial\": \"only a",
              stopping_);
    } else if (mode == "badjson") {
      SendAll(fd, Response(200, "OK", R"({"answer": 42, "unterminated": "yes)"), stopping_);
    } else if (mode == "huge" || mode == "hugechunked") {
      const size_t total = static_cast<size_t>(QueryInt(req, "mb", 20)) << 20;
      const bool chunked = mode == "hugechunked";
      std::string head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n";
      head += chunked ? "Transfer-Encoding: chunked\r\n\r\n" : "Content-Length: " + std::to_string(total) + "\r\n\r\n";
      bool alive = SendAll(fd, head, stopping_);
      // A JSON string of `total` bytes: the worst case, valid if read whole.
      const size_t block = 64 * 1024;
      std::string body(block, 'x');
      for (size_t sent = 0; alive && sent < total; sent += block) {
        std::string piece = body.substr(0, std::min(block, total - sent));
        if (sent == 0) piece[0] = '"';
        if (sent + piece.size() == total) piece.back() = '"';
        if (chunked) {
          char size_line[32];
          std::snprintf(size_line, sizeof size_line, "%zx\r\n", piece.size());
          piece = size_line + piece + "\r\n";
        }
        alive = SendAll(fd, piece, stopping_);
        if (alive) huge_bytes_sent_ += static_cast<int64_t>(std::min(block, total - sent));
      }
      if (alive && chunked) SendAll(fd, "0\r\n\r\n", stopping_);
    } else if (mode == "trickle") {
      bool alive =
          SendAll(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n\"", stopping_);
      for (int i = 1; alive && i < 1000; ++i) {
        std::this_thread::sleep_for(100ms);
        alive = SendAll(fd, i == 999 ? "\"" : "x", stopping_);
      }
    } else if (mode == "flaky") {
      if (nth_with_key <= QueryInt(req, "failures", 2)) {
        SendAll(fd, Response(503, "Service Unavailable", R"({"error": "misbehaving agent: flaky failure"})"),
                stopping_);
      } else {
        SendAll(fd, ok, stopping_);
      }
    } else {
      SendAll(fd, Response(404, "Not Found", R"({"error": "unknown mode"})"), stopping_);
    }
    answered();
  }
  ::shutdown(fd, SHUT_RDWR);
  std::lock_guard<std::mutex> lock(mu_);
  open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), fd), open_fds_.end());
  ::close(fd);
}

}  // namespace af::e2e
