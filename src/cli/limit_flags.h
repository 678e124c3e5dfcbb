// The flags of the limits on what agentflow accepts (docs/reliability.md,
// "Bad input and limits"; docs/operations.md lists them per service). Each
// service adds the groups that apply to it: serve all, api the HTTP and plan
// groups, consumer the step group and --max-message-bytes. Defaults come
// from the structs that enforce them, so there is one place for each.
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstddef>

#include "agent/agent.h"
#include "http/http.h"
#include "model/limits.h"
#include "model/plan.h"
#include "queue/messages.h"

namespace af::cli {

struct LimitFlags {
  PlanLimits plan;
  StepLimits step;
  size_t max_step_output_bytes = HttpAgentCallerOptions{}.max_response_bytes;
  double header_timeout_seconds = http::ServerOptions{}.header_timeout.count() / 1000.0;
  double body_timeout_seconds = http::ServerOptions{}.body_timeout.count() / 1000.0;
  size_t max_message_bytes = kDefaultMaxQueueMessageBytes;

  std::chrono::milliseconds header_timeout() const;
  std::chrono::milliseconds body_timeout() const;
  HttpAgentCallerOptions http_caller() const;
};

// --header-timeout, --body-timeout (services that serve HTTP requests).
void AddHttpLimitFlags(CLI::App* cmd, LimitFlags& f);
// --max-plan-bytes, --max-plan-steps (services that admit plans).
void AddPlanLimitFlags(CLI::App* cmd, LimitFlags& f);
// --max-step-input-bytes, --max-step-output-bytes, --max-for-each-items
// (services that execute runs).
void AddStepLimitFlags(CLI::App* cmd, LimitFlags& f);
// --max-message-bytes (services that read execution requests from Kafka).
void AddQueueLimitFlags(CLI::App* cmd, LimitFlags& f);

}  // namespace af::cli
