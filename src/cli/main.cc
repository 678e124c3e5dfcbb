// agentflow: workflow orchestration for agent workflows. One binary; see
// `agentflow --help` and README.md.
#include <cstdlib>

#include "cli/commands.h"
#include "common/log.h"
#include "common/malloc_tuning.h"
#include "storage/sqlite/sqlite_store.h"

int main(int argc, char** argv) {
  af::TuneMalloc();
  af::ConfigureSqliteProcess();
  af::log::InitFromEnv();
  CLI::App app{"agentflow: workflow orchestration for agent workflows"};
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the subcommand
  app.set_version_flag("--version", "agentflow 0.1.0");
  af::cli::GlobalOptions global;
  const char* env_server = std::getenv("AGENTFLOW_SERVER");
  global.server = env_server && *env_server ? env_server : "http://127.0.0.1:8000";
  app.add_option("--server", global.server, "agentflow API URL (env AGENTFLOW_SERVER)")->capture_default_str();
  app.add_flag("--json", global.json, "print JSON instead of tables");
  app.add_option("--api-key", global.api_key,
                 "API key the client commands send (Authorization: Bearer); needed when the server runs with "
                 "--auth required")
      ->envname("AGENTFLOW_API_KEY");
  int exit_code = 0;
  af::cli::AddServerCommands(app, global, &exit_code);
  af::cli::AddServiceCommands(app, &exit_code);
  af::cli::AddBridgeCommand(app, &exit_code);
  af::cli::AddClientCommands(app, global, &exit_code);
  af::cli::AddApiKeyCommands(app, global, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return exit_code;
}
