#include "storage/postgres/run_ends.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "common/log.h"
#include "storage/postgres/pg_util.h"

namespace af::postgres {
namespace {

const std::string kListenSql = std::string("LISTEN ") + kRunEndChannel;
const std::string kNotifySql = std::string("SELECT pg_notify('") + kRunEndChannel + "', '')";

// A connection that has run `setup` (one command), or why not.
Result<PGconn*> ConnectAndRun(const std::string& url, const std::string& target, std::chrono::milliseconds timeout,
                              const std::string& setup) {
  auto pg = Connect(url, target, timeout);
  if (!pg.ok()) return pg.status();
  Status s = RunStatement(*pg, setup.c_str(), setup);
  if (s.ok()) return *pg;
  PQfinish(*pg);
  return s;
}

class PgRunEndListener final : public Store::RunEndListener {
 public:
  PgRunEndListener(std::string url, std::string target, std::chrono::milliseconds connect_timeout,
                   std::function<void()> wake)
      : url_(std::move(url)), target_(std::move(target)), timeout_(connect_timeout), wake_(std::move(wake)) {
    if (::pipe2(stop_, O_CLOEXEC | O_NONBLOCK) != 0) {
      stop_[0] = stop_[1] = -1;
      log::Error("run end listener: cannot create its stop pipe (errno " + std::to_string(errno) +
                 "); run ends are heard by polling only");
      return;
    }
    // The first LISTEN before returning: ends committed from then on are
    // heard (when the database is reachable now; else from the retry on).
    PGconn* first = Listen();
    thread_ = std::thread([this, first] { Loop(first); });
  }

  ~PgRunEndListener() override {
    if (stop_[1] >= 0) {
      char c = 's';
      while (::write(stop_[1], &c, 1) < 0 && errno == EINTR) {
      }
    }
    if (thread_.joinable()) thread_.join();
    for (int fd : stop_) {
      if (fd >= 0) ::close(fd);
    }
  }

 private:
  // Waits for the stop pipe (true) or `fd` readable, up to `timeout_ms`
  // (-1: no limit). false: `fd` is readable or the time is up.
  bool WaitForStop(int fd, int timeout_ms) {
    pollfd fds[2] = {{stop_[0], POLLIN, 0}, {fd, POLLIN, 0}};
    while (true) {
      int n = ::poll(fds, fd >= 0 ? 2 : 1, timeout_ms);
      if (n < 0 && errno == EINTR) continue;
      return n > 0 && (fds[0].revents & (POLLIN | POLLHUP)) != 0;
    }
  }

  void Loop(PGconn* pg) {
    while (true) {
      if (pg == nullptr) {
        if (WaitForStop(-1, 1000)) return;
        pg = Listen();
        if (pg == nullptr) continue;
        log::Info("run end listener: listening on " + target_);
        warned_ = false;
        wake_();  // ends committed while nobody listened were not heard
      }
      bool stop = Read(pg);
      PQfinish(pg);
      pg = nullptr;
      if (stop) return;
      log::Warn("run end listener: lost its connection to " + target_ +
                "; listening again in 1 s (waits poll meanwhile)");
      warned_ = true;
    }
  }

  // A connection that LISTENs, or nullptr (logged once per outage).
  PGconn* Listen() {
    auto pg = ConnectAndRun(url_, target_, timeout_, kListenSql);
    if (pg.ok()) return *pg;
    if (!warned_) {
      log::Warn("run end listener: cannot listen on " + target_ + ": " + pg.status().message() +
                "; retrying every second (waits poll meanwhile)");
      warned_ = true;
    }
    return nullptr;
  }

  // Reads notifications until the connection fails (false) or the
  // listener stops (true).
  bool Read(PGconn* pg) {
    while (true) {
      // First what libpq holds already (one may have come with LISTEN's
      // answer), then what the socket brings.
      bool heard = false;
      while (PGnotify* n = PQnotifies(pg)) {
        heard = true;
        PQfreemem(n);
      }
      if (heard) wake_();
      if (PQstatus(pg) != CONNECTION_OK) return false;
      if (WaitForStop(PQsocket(pg), -1)) return true;
      if (PQconsumeInput(pg) == 0) return false;
    }
  }

  const std::string url_;
  const std::string target_;
  const std::chrono::milliseconds timeout_;
  const std::function<void()> wake_;
  int stop_[2] = {-1, -1};
  bool warned_ = false;  // an outage was logged (the listener's thread, after the constructor)
  std::thread thread_;
};

}  // namespace

RunEndNotifier::RunEndNotifier(std::string url, std::string target, std::chrono::milliseconds connect_timeout,
                               std::chrono::milliseconds spacing)
    : url_(std::move(url)), target_(std::move(target)), timeout_(connect_timeout), spacing_(spacing) {}

RunEndNotifier::~RunEndNotifier() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void RunEndNotifier::Notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_ = true;
    if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
  }
  cv_.notify_one();
}

void RunEndNotifier::Loop() {
  PGconn* pg = nullptr;
  std::chrono::steady_clock::time_point last_sent{};
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stop_ || pending_; });
    // Ends in a burst share one NOTIFY per spacing.
    cv_.wait_until(lock, last_sent + spacing_, [this] { return stop_; });
    if (stop_) break;
    pending_ = false;  // what arrives from here on makes one more
    lock.unlock();
    // A connection the server closed since the last one fails once: the
    // retry opens a new one.
    if (!Send(&pg)) Send(&pg);
    last_sent = std::chrono::steady_clock::now();
    lock.lock();
  }
  if (pg != nullptr) PQfinish(pg);
}

bool RunEndNotifier::Send(PGconn** pg) {
  Status failed;
  if (*pg == nullptr) {
    // This session writes no row: its transactions carry a notification
    // only. Waiting for their commit records' WAL flush bought nothing and
    // put a flush between the executors' group commits (docs/benchmarks.md,
    // item 35). Every session that writes data keeps synchronous_commit on.
    auto c = ConnectAndRun(url_, target_, timeout_, "SET synchronous_commit = off");
    if (c.ok()) {
      *pg = *c;
    } else {
      failed = c.status();
    }
  }
  if (*pg != nullptr) {
    failed = RunStatement(*pg, kNotifySql.c_str(), "NOTIFY");
    if (failed.ok()) {
      if (warned_) log::Info("run end notifier: notifying again on " + target_);
      warned_ = false;
      return true;
    }
    PQfinish(*pg);
    *pg = nullptr;
  }
  if (!warned_) {
    log::Warn("run end notifier: cannot notify on " + target_ + ": " + failed.message() +
              "; an api's ?wait hears of run ends by polling meanwhile");
    warned_ = true;
  }
  return false;
}

std::unique_ptr<Store::RunEndListener> StartRunEndListener(std::string url, std::string target,
                                                           std::chrono::milliseconds connect_timeout,
                                                           std::function<void()> wake) {
  return std::make_unique<PgRunEndListener>(std::move(url), std::move(target), connect_timeout, std::move(wake));
}

}  // namespace af::postgres
