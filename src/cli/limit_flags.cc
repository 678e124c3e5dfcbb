#include "cli/limit_flags.h"

#include <algorithm>
#include <cstdint>

namespace af::cli {

namespace {

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(std::max(0.001, seconds) * 1000));
}

}  // namespace

std::chrono::milliseconds LimitFlags::header_timeout() const { return Millis(header_timeout_seconds); }
std::chrono::milliseconds LimitFlags::body_timeout() const { return Millis(body_timeout_seconds); }

HttpAgentCallerOptions LimitFlags::http_caller() const {
  HttpAgentCallerOptions o;
  o.max_response_bytes = max_step_output_bytes;
  return o;
}

void AddHttpLimitFlags(CLI::App* cmd, LimitFlags& f) {
  cmd->add_option("--header-timeout", f.header_timeout_seconds,
                  "seconds from a request's first byte to the end of its headers (then 408)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--body-timeout", f.body_timeout_seconds, "seconds to receive a request's body (then 408)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

void AddPlanLimitFlags(CLI::App* cmd, LimitFlags& f) {
  cmd->add_option("--max-plan-bytes", f.plan.max_plan_bytes,
                  "largest plan accepted, as compact JSON (0: no limit besides the body limit)")
      ->capture_default_str();
  cmd->add_option("--max-plan-steps", f.plan.max_steps, "most steps in a plan (1-10000)")
      ->check(CLI::Range(size_t{1}, PlanLimits::kMaxStepsCap))
      ->capture_default_str();
}

void AddStepLimitFlags(CLI::App* cmd, LimitFlags& f) {
  cmd->add_option("--max-step-input-bytes", f.step.max_input_bytes,
                  "largest resolved step input (compact JSON); larger fails the step without calling the agent "
                  "(0: no limit)")
      ->capture_default_str();
  cmd->add_option("--max-step-output-bytes", f.max_step_output_bytes,
                  "largest agent reply read; larger fails the step, and no more of it is read")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--max-for-each-items", f.step.max_for_each_items, "most elements of one for_each step (0: no limit)")
      ->capture_default_str();
}

void AddQueueLimitFlags(CLI::App* cmd, LimitFlags& f) {
  cmd->add_option("--max-message-bytes", f.max_message_bytes,
                  "largest queue message parsed; a larger execution request runs with its plan and input read from "
                  "the database (0: no limit)")
      ->capture_default_str();
}

}  // namespace af::cli
