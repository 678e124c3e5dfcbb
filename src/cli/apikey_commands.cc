// `agentflow apikey create|list|revoke`: API keys, straight in the database
// the services use (--data-dir for serve's SQLite, or --database-url /
// DATABASE_URL), so the first admin key can be made before any key exists.
// The key is printed once, by create; nothing else ever shows a secret.
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "auth/api_keys.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "common/redact.h"
#include "storage/store.h"

namespace af::cli {
namespace {

struct KeyStoreArgs {
  std::string data_dir = ".agentflow";  // AGENTFLOW_DATA_DIR
  std::string database_url;             // DATABASE_URL; wins over data_dir
};

int Fail(const Status& s) {
  std::fprintf(stderr, "error: %s\n", s.message().c_str());
  return 1;
}

// The store of --database-url, else of --data-dir (as `serve` opens it).
Result<std::unique_ptr<Store>> OpenKeyStore(const KeyStoreArgs& a, std::string* where) {
  StoreOptions so;
  if (!a.database_url.empty()) {
    so.url = a.database_url;
  } else {
    std::error_code ec;
    std::filesystem::create_directories(a.data_dir, ec);
    if (ec) {
      return Status::InvalidArgument("cannot create data directory '" + a.data_dir + "': " + ec.message() +
                                     ". Hint: pass the --data-dir 'agentflow serve' uses");
    }
    so.url = (std::filesystem::path(a.data_dir) / "agentflow.db").string();
  }
  *where = RedactUrl(so.url);
  return OpenStore(so);
}

std::string Time(const std::optional<TimeMs>& t) { return t ? FormatIso8601(*t) : "-"; }

}  // namespace

void AddApiKeyCommands(CLI::App& app, GlobalOptions& g, int* exit_code) {
  static KeyStoreArgs store_args;
  if (const char* d = std::getenv("AGENTFLOW_DATA_DIR"); d && *d) store_args.data_dir = d;
  auto* cmd = app.add_subcommand("apikey", "create, list and revoke API keys (in the services' database)");
  cmd->require_subcommand(1);
  cmd->add_option("--data-dir", store_args.data_dir, "the data directory of 'agentflow serve' (env AGENTFLOW_DATA_DIR)")
      ->capture_default_str();
  cmd->add_option("--database-url", store_args.database_url,
                  "postgresql://… (or a SQLite path) of the distributed services; wins over --data-dir")
      ->envname("DATABASE_URL");

  static std::string role_arg;
  static std::string name_arg;
  auto* create = cmd->add_subcommand("create", "create a key and print it (once)");
  create->add_option("--role", role_arg, "viewer (GET), operator (+ trigger, cancel, retry runs) or admin (+ manage "
                                         "workflows, agents and keys)")
      ->required()
      ->check(CLI::IsMember({"viewer", "operator", "admin"}));
  create->add_option("--name", name_arg, "what the key is for, e.g. 'ci' (shown by list)");
  create->callback([&g, exit_code] {
    std::string where;
    auto store = OpenKeyStore(store_args, &where);
    if (!store.ok()) {
      *exit_code = Fail(store.status());
      return;
    }
    auto made = auth::GenerateApiKey(*ParseRole(role_arg), name_arg);
    if (!made.ok()) {
      *exit_code = Fail(made.status());
      return;
    }
    auto stored = (*store)->CreateApiKey(made->record);
    if (!stored.ok()) {
      *exit_code = Fail(stored.status());
      return;
    }
    if (g.json) {
      json out = ToJson(*stored);
      out["key"] = made->key;
      std::printf("%s\n", out.dump(2).c_str());
      return;
    }
    std::printf("API key %s created (role %s%s) in %s.\n", stored->id.c_str(), ToString(stored->role),
                stored->name.empty() ? "" : (", name \"" + stored->name + "\"").c_str(), where.c_str());
    std::printf("Store the key now: it is shown only this once.\n\n%s\n\n", made->key.c_str());
    std::printf("Use it with the CLI:  export AGENTFLOW_API_KEY=<the key>   (or --api-key)\n");
    std::printf("or over HTTP:         curl -H \"Authorization: Bearer $AGENTFLOW_API_KEY\" ...\n");
  });

  auto* list = cmd->add_subcommand("list", "list keys: id, name, role, times (never secrets)");
  list->callback([&g, exit_code] {
    std::string where;
    auto store = OpenKeyStore(store_args, &where);
    if (!store.ok()) {
      *exit_code = Fail(store.status());
      return;
    }
    auto keys = (*store)->ListApiKeys();
    if (!keys.ok()) {
      *exit_code = Fail(keys.status());
      return;
    }
    if (g.json) {
      json items = json::array();
      for (const ApiKey& k : *keys) items.push_back(ToJson(k));
      std::printf("%s\n", json{{"items", items}}.dump(2).c_str());
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const ApiKey& k : *keys) {
      rows.push_back({k.id, k.name.empty() ? "-" : k.name, ToString(k.role), FormatIso8601(k.created_at),
                      Time(k.last_used_at), Time(k.revoked_at)});
    }
    PrintTable({"ID", "NAME", "ROLE", "CREATED", "LAST_USED", "REVOKED"}, rows);
  });

  static std::string revoke_id;
  auto* revoke = cmd->add_subcommand("revoke", "revoke a key: it stops working at once");
  revoke->add_option("ID", revoke_id, "the key's id (from list, or the part after af_)")->required();
  revoke->callback([&g, exit_code] {
    std::string where;
    auto store = OpenKeyStore(store_args, &where);
    if (!store.ok()) {
      *exit_code = Fail(store.status());
      return;
    }
    auto before = (*store)->GetApiKey(revoke_id);
    if (!before.ok()) {
      *exit_code = Fail(before.status());
      return;
    }
    auto revoked = (*store)->RevokeApiKey(revoke_id);
    if (!revoked.ok()) {
      *exit_code = Fail(revoked.status());
      return;
    }
    if (g.json) {
      std::printf("%s\n", ToJson(*revoked).dump(2).c_str());
    } else if (before->revoked_at) {
      std::printf("API key %s was already revoked at %s\n", revoked->id.c_str(),
                  FormatIso8601(*before->revoked_at).c_str());
    } else {
      std::printf("API key %s revoked\n", revoked->id.c_str());
    }
  });
}

}  // namespace af::cli
