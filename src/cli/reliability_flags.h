// The flags of the reliability machinery (docs/reliability.md): run leases
// and the Dispatcher's sweeper. serve has both groups, api the dispatch
// group, consumer both (it runs a Dispatcher too, so the outbox of an api
// that died is still published).
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>

#include "dispatch/dispatcher.h"

namespace af::cli {

struct ReliabilityFlags {
  double lease_ttl_seconds = 15;
  double stranded_after_seconds = 60;
  double sweep_interval_seconds = 10;

  std::chrono::milliseconds lease_ttl() const;
  DispatcherOptions dispatcher(const std::string& execution_topic) const;
};

// --lease-ttl (services that execute runs).
void AddLeaseFlags(CLI::App* cmd, ReliabilityFlags& f);
// --stranded-after, --sweep-interval (services that run a Dispatcher).
void AddDispatchFlags(CLI::App* cmd, ReliabilityFlags& f);

}  // namespace af::cli
