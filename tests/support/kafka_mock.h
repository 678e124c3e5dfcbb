// KafkaMock: a throw-away Kafka "cluster" for tests. Runs the
// agentflow-kafka-mock helper (librdkafka's mock cluster, tools/kafka_mock)
// as a child process on loopback ports and gives its bootstrap address.
//
// The child is killed and reaped by the destructor, and gets SIGKILL from the
// kernel if the thread that started it dies first (PR_SET_PDEATHSIG), so no
// mock outlives a failed or crashed test. Start it from the test's main
// thread (a shared instance) or from the test body.
//
// Pause()/Resume() stop and continue the process (SIGSTOP/SIGCONT): an
// outage in which connections stay open but nothing answers, like a hung or
// partitioned broker. The mock's ports change on every start, so a restart
// is not a usable outage.
//
// Thread-safety: not thread-safe; brokers() may be read from any thread.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace af {

class KafkaMock {
 public:
  struct Options {
    int brokers = 1;  // mock brokers in the cluster
    // "name:partitions" to create at start; empty: the helper's defaults
    // (the two seed topics and the dead-letter topic, 4 partitions each).
    // Other topics are auto-created with 4 partitions on first use.
    std::vector<std::string> topics;
  };

  // Starts the helper and waits (up to 10 s) for its address. Unavailable if
  // it cannot be started or does not report an address.
  static Result<std::unique_ptr<KafkaMock>> Start(const Options& options);
  static Result<std::unique_ptr<KafkaMock>> Start() { return Start(Options{}); }
  ~KafkaMock();
  KafkaMock(const KafkaMock&) = delete;
  KafkaMock& operator=(const KafkaMock&) = delete;

  // "127.0.0.1:PORT[,127.0.0.1:PORT...]", for bootstrap.servers.
  const std::string& brokers() const { return brokers_; }
  pid_t pid() const { return pid_; }

  // Simulated outage: SIGSTOP / SIGCONT the helper. Idempotent.
  void Pause();
  void Resume();

 private:
  KafkaMock(pid_t pid, std::string brokers) : pid_(pid), brokers_(std::move(brokers)) {}
  pid_t pid_;
  std::string brokers_;
  bool paused_ = false;
};

}  // namespace af
