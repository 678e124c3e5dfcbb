#include "cli/reliability_flags.h"

namespace af::cli {

namespace {
std::chrono::milliseconds Ms(double seconds) { return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)); }
}  // namespace

std::chrono::milliseconds ReliabilityFlags::lease_ttl() const { return Ms(lease_ttl_seconds); }

DispatcherOptions ReliabilityFlags::dispatcher(const std::string& execution_topic) const {
  DispatcherOptions o;
  o.execution_topic = execution_topic;
  o.stranded_after = Ms(stranded_after_seconds);
  o.sweep_interval = Ms(sweep_interval_seconds);
  return o;
}

void AddLeaseFlags(CLI::App* cmd, ReliabilityFlags& f) {
  cmd->add_option("--lease-ttl", f.lease_ttl_seconds,
                  "seconds a run's lease lasts without renewal: how soon another executor takes over the runs of "
                  "one that died")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
}

void AddDispatchFlags(CLI::App* cmd, ReliabilityFlags& f) {
  cmd->add_option("--stranded-after", f.stranded_after_seconds,
                  "seconds after which a run not finished and held by no executor is dispatched again")
      ->check(CLI::Range(0.1, 86400.0))
      ->capture_default_str();
  cmd->add_option("--sweep-interval", f.sweep_interval_seconds,
                  "seconds between looks for stranded runs (0: this process does not look)")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
}

}  // namespace af::cli
