#include "support/kafka_mock.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#ifndef AF_KAFKA_MOCK_BIN
#error "AF_KAFKA_MOCK_BIN must name the agentflow-kafka-mock program"
#endif

namespace af {
namespace {

constexpr auto kStartTimeout = std::chrono::seconds(10);

void KillAndReap(pid_t pid) {
  ::kill(pid, SIGKILL);  // also ends a SIGSTOPped process
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

// Reads one '\n'-terminated line from `fd` within the start timeout.
Result<std::string> ReadLine(int fd) {
  std::string line;
  auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Status::Unavailable("agentflow-kafka-mock did not print its address within 10 s");
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Status::Unavailable(std::string("poll: ") + std::strerror(errno));
    if (r == 0) continue;
    char buf[256];
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::Unavailable("agentflow-kafka-mock exited before printing its address (see its stderr)");
    line.append(buf, static_cast<size_t>(n));
    auto nl = line.find('\n');
    if (nl != std::string::npos) return line.substr(0, nl);
  }
}

}  // namespace

Result<std::unique_ptr<KafkaMock>> KafkaMock::Start(const Options& options) {
  // argv is built before fork: the child may only make async-signal-safe
  // calls (the test process may have threads, e.g. librdkafka's).
  std::vector<std::string> args = {AF_KAFKA_MOCK_BIN, "--brokers", std::to_string(options.brokers)};
  for (const std::string& t : options.topics) {
    args.push_back("--topic");
    args.push_back(t);
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::Unavailable(std::string("pipe: ") + std::strerror(errno));
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return Status::Unavailable(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
    ::dup2(fds[1], STDOUT_FILENO);             // dup2 clears O_CLOEXEC on stdout
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  auto line = ReadLine(fds[0]);
  ::close(fds[0]);  // the helper's later writes to stdout (none) would get EPIPE
  if (!line.ok()) {
    KillAndReap(pid);
    return Status::Unavailable(line.status().message() + " (" AF_KAFKA_MOCK_BIN ")");
  }
  if (line->empty()) {
    KillAndReap(pid);
    return Status::Unavailable("agentflow-kafka-mock printed an empty address");
  }
  return std::unique_ptr<KafkaMock>(new KafkaMock(pid, *line));
}

KafkaMock::~KafkaMock() { KillAndReap(pid_); }

void KafkaMock::Pause() {
  if (paused_) return;
  ::kill(pid_, SIGSTOP);
  // Wait until it is really stopped, so the outage starts when Pause returns.
  siginfo_t info;
  while (::waitid(P_PID, static_cast<id_t>(pid_), &info, WSTOPPED | WNOWAIT) < 0 && errno == EINTR) {
  }
  paused_ = true;
}

void KafkaMock::Resume() {
  if (!paused_) return;
  ::kill(pid_, SIGCONT);
  paused_ = false;
}

}  // namespace af
