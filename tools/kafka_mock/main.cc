// agentflow-kafka-mock: hosts librdkafka's mock Kafka cluster in its own
// process, so tests, `make test` and CI have "a Kafka broker" on machines
// without one (Debian 12 packages none).
//
//   agentflow-kafka-mock [--brokers N] [--topic NAME:PARTITIONS]...
//                        [--address-file FILE]
//
// Creates the topics (default: the seed's two request topics and the
// execution dead-letter topic, 4 partitions each), prints the bootstrap
// address ("127.0.0.1:PORT[,...]") as one flushed line on stdout, optionally
// writes it to FILE (atomically: a temporary file renamed into place), then
// serves until SIGTERM or SIGINT. The mock brokers listen on loopback only,
// on ports chosen by the kernel (a new address on every start).
//
// The mock keeps everything in memory (and only the last few MB of each
// partition); topics that do not exist are auto-created with 4 partitions on
// first use. It does not answer Admin CreateTopics: create topics here.
//
// Exit status: 0 after a signal, 2 on bad arguments, 1 if the cluster could
// not be started.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

struct Args {
  int brokers = 1;
  std::vector<std::pair<std::string, int>> topics;
  std::string address_file;
};

void Usage(std::FILE* out) {
  std::fprintf(out,
               "usage: agentflow-kafka-mock [--brokers N] [--topic NAME:PARTITIONS]... [--address-file FILE]\n"
               "Hosts librdkafka's mock Kafka cluster on loopback, prints its bootstrap address and serves\n"
               "until SIGTERM/SIGINT. Default topics: workflow.execution.requests:4,\n"
               "workflow.cancellation.requests:4, workflow.execution.requests.dlq:4.\n");
}

bool ParseInt(const std::string& s, int min, int max, int* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(s.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max) return false;
  *out = static_cast<int>(v);
  return true;
}

// Returns false (after printing why) on bad arguments.
bool ParseArgs(int argc, char** argv, Args* args) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](std::string* v) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "agentflow-kafka-mock: %s needs a value\n", a.c_str());
        return false;
      }
      *v = argv[++i];
      return true;
    };
    std::string v;
    if (a == "-h" || a == "--help") {
      Usage(stdout);
      std::exit(0);
    } else if (a == "--brokers") {
      if (!value(&v)) return false;
      if (!ParseInt(v, 1, 16, &args->brokers)) {
        std::fprintf(stderr, "agentflow-kafka-mock: --brokers takes 1..16, got '%s'\n", v.c_str());
        return false;
      }
    } else if (a == "--topic") {
      if (!value(&v)) return false;
      auto colon = v.rfind(':');
      int partitions = 0;
      if (colon == std::string::npos || colon == 0 || !ParseInt(v.substr(colon + 1), 1, 1000, &partitions)) {
        std::fprintf(stderr, "agentflow-kafka-mock: --topic takes NAME:PARTITIONS (1..1000), got '%s'\n",
                     v.c_str());
        return false;
      }
      args->topics.emplace_back(v.substr(0, colon), partitions);
    } else if (a == "--address-file") {
      if (!value(&v)) return false;
      args->address_file = v;
    } else {
      std::fprintf(stderr, "agentflow-kafka-mock: unknown argument '%s'\n", a.c_str());
      Usage(stderr);
      return false;
    }
  }
  if (args->topics.empty()) {
    args->topics = {{"workflow.execution.requests", 4},
                    {"workflow.cancellation.requests", 4},
                    {"workflow.execution.requests.dlq", 4}};
  }
  return true;
}

bool WriteAddressFile(const std::string& path, const std::string& address) {
  std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return false;
  bool ok = std::fprintf(f, "%s\n", address.c_str()) > 0;
  ok = std::fclose(f) == 0 && ok;
  return ok && std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (!ParseArgs(argc, argv, &args)) return 2;

  // Blocked before librdkafka starts its threads, so they inherit the mask
  // and the signals reach sigwait below, not a random thread.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  // The hosting client never connects anywhere; keep its log quiet.
  if (rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err)) != RD_KAFKA_CONF_OK) {
    std::fprintf(stderr, "agentflow-kafka-mock: %s\n", err);
    return 1;
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  if (rk == nullptr) {
    std::fprintf(stderr, "agentflow-kafka-mock: cannot create the hosting client: %s\n", err);
    return 1;
  }
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(rk, args.brokers);
  if (cluster == nullptr) {
    std::fprintf(stderr, "agentflow-kafka-mock: cannot start the mock cluster\n");
    rd_kafka_destroy(rk);
    return 1;
  }
  for (const auto& [name, partitions] : args.topics) {
    // librdkafka 2.0.2's mock thread often misses the wake-up of a request
    // sent right after the previous one and serves it only at its 1 s poll
    // timeout; a short pause keeps startup at milliseconds.
    if (&name != &args.topics.front().first) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    int replication = args.brokers < 3 ? args.brokers : 3;
    rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(cluster, name.c_str(), partitions, replication);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::fprintf(stderr, "agentflow-kafka-mock: cannot create topic %s: %s\n", name.c_str(), rd_kafka_err2str(e));
      rd_kafka_mock_cluster_destroy(cluster);
      rd_kafka_destroy(rk);
      return 1;
    }
  }

  std::string address = rd_kafka_mock_cluster_bootstraps(cluster);
  if (!args.address_file.empty() && !WriteAddressFile(args.address_file, address)) {
    std::fprintf(stderr, "agentflow-kafka-mock: cannot write %s: %s\n", args.address_file.c_str(),
                 std::strerror(errno));
    rd_kafka_mock_cluster_destroy(cluster);
    rd_kafka_destroy(rk);
    return 1;
  }
  std::printf("%s\n", address.c_str());
  std::fflush(stdout);

  int sig = 0;
  while (sigwait(&signals, &sig) != 0) {
  }
  // Everything lives in memory, so there is nothing to flush; a clean
  // rd_kafka_mock_cluster_destroy takes 1-2 s (the same missed wake-ups).
  std::fflush(stdout);
  std::_Exit(0);
}
