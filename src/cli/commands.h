// The agentflow command line: one binary, subcommands registered here.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace af::cli {

struct GlobalOptions {
  std::string server;  // --server or AGENTFLOW_SERVER
  bool json = false;   // --json: machine-readable output
  std::string api_key; // --api-key or AGENTFLOW_API_KEY: sent as Authorization: Bearer
};

// Sets *exit_code when a command runs.
void AddClientCommands(CLI::App& app, GlobalOptions& global, int* exit_code);  // workflow, run, agent
void AddServerCommands(CLI::App& app, GlobalOptions& global, int* exit_code);  // serve, executor, demo-agents
void AddServiceCommands(CLI::App& app, int* exit_code);  // api, consumer, migrate (distributed topology)
void AddBridgeCommand(CLI::App& app, int* exit_code);    // bridge: HTTP agents over the Kafka transport
void AddApiKeyCommands(CLI::App& app, GlobalOptions& global, int* exit_code);  // apikey create|list|revoke

}  // namespace af::cli
