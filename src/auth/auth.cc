#include "auth/auth.h"

#include <array>

#include "auth/api_keys.h"
#include "common/log.h"
#include "common/time.h"

namespace af::auth {
namespace {

struct RouteRule {
  std::string_view method;  // "*": any
  std::string_view route;
  Permission permission;
};

// Routes whose permission is not their method's default (see auth.h).
constexpr std::array kRules = {
    RouteRule{"GET", "/healthz", Permission::kPublic},
    RouteRule{"GET", "/readyz", Permission::kPublic},
    RouteRule{"GET", "/metrics", Permission::kPublic},
    RouteRule{"GET", "/api/v1/healthz", Permission::kPublic},
    // The web console's page and files (src/ui): the page asks for a key
    // itself before it calls the API.
    RouteRule{"GET", "/", Permission::kPublic},
    RouteRule{"GET", "/ui/{file}", Permission::kPublic},
    RouteRule{"POST", "/api/v1/workflows/{id}/runs", Permission::kOperate},
    RouteRule{"POST", "/api/v1/runs/{run_id}/cancel", Permission::kOperate},
    RouteRule{"POST", "/api/v1/runs/{run_id}/retry", Permission::kOperate},
    RouteRule{"POST", "/api/v1/agents/{name}/heartbeat", Permission::kOperate},
    RouteRule{"*", "/api/v1/apikeys", Permission::kAdmin},
    RouteRule{"*", "/api/v1/apikeys/{id}", Permission::kAdmin},
};

constexpr std::string_view kKeyHint =
    "Hint: send 'Authorization: Bearer <API key>'; create a key with 'agentflow apikey create --role viewer' "
    "and give it to the CLI with AGENTFLOW_API_KEY or --api-key";

}  // namespace

const char* ToString(Permission p) {
  switch (p) {
    case Permission::kPublic: return "public";
    case Permission::kRead: return "read";
    case Permission::kOperate: return "operate";
    case Permission::kAdmin: return "admin";
  }
  return "admin";
}

Role LeastRoleFor(Permission permission) {
  switch (permission) {
    case Permission::kPublic:
    case Permission::kRead: return Role::kViewer;
    case Permission::kOperate: return Role::kOperator;
    case Permission::kAdmin: return Role::kAdmin;
  }
  return Role::kAdmin;
}

bool RoleHas(Role role, Permission permission) {
  // Roles are ordered: each holds what the ones below it hold.
  return static_cast<int>(role) >= static_cast<int>(LeastRoleFor(permission));
}

Permission RequiredPermission(std::string_view method, std::string_view route) {
  for (const RouteRule& r : kRules) {
    if (r.route == route && (r.method == "*" || r.method == method)) return r.permission;
  }
  return method == "GET" || method == "HEAD" ? Permission::kRead : Permission::kAdmin;
}

std::optional<AuthMode> ParseAuthMode(std::string_view s) {
  if (s == "off") return AuthMode::kOff;
  if (s == "required") return AuthMode::kRequired;
  return std::nullopt;
}

const char* ToString(AuthMode m) { return m == AuthMode::kRequired ? "required" : "off"; }

Authenticator::Authenticator(Store* store, AuthenticatorOptions options) : store_(store), options_(options) {}

Status Authenticator::Authenticate(std::string_view authorization, Principal* who) {
  if (authorization.empty()) {
    return Status::Unauthenticated("authentication required. " + std::string(kKeyHint));
  }
  std::optional<std::string_view> token = BearerToken(authorization);
  if (!token) {
    return Status::Unauthenticated("the Authorization header must be 'Bearer <API key>'. " + std::string(kKeyHint));
  }
  std::optional<ParsedApiKey> key = ParseApiKey(*token);
  if (!key) {
    return Status::Unauthenticated(
        "invalid API key: not of the form af_<id>_<secret>. Hint: pass the whole key printed by 'agentflow "
        "apikey create'");
  }
  auto stored = store_->GetApiKey(key->id);
  if (!stored.ok()) {
    if (stored.status().code() != Code::kNotFound) return stored.status();
    return Status::Unauthenticated("invalid API key. Hint: check the key, or create a new one");
  }
  if (!SecretMatches(key->secret, stored->secret_hash)) {
    return Status::Unauthenticated("invalid API key. Hint: check the key, or create a new one");
  }
  if (stored->revoked_at) {
    return Status::Unauthenticated("API key " + stored->id + " was revoked at " + FormatIso8601(*stored->revoked_at) +
                                   ". Hint: create a new key with 'agentflow apikey create'");
  }
  if (who) *who = Principal{stored->id, stored->role};
  RecordUse(stored->id);
  return Status::Ok();
}

Status Authenticator::Check(std::string_view method, std::string_view route, std::string_view authorization,
                            Principal* who) {
  if (options_.mode == AuthMode::kOff) return Status::Ok();
  Permission needed = RequiredPermission(method, route);
  if (needed == Permission::kPublic) return Status::Ok();
  Principal p;
  AF_RETURN_IF_ERROR(Authenticate(authorization, &p));
  if (who) *who = p;
  if (RoleHas(p.role, needed)) return Status::Ok();
  Role least = LeastRoleFor(needed);
  return Status::PermissionDenied(std::string("API key ") + p.key_id + " has role " + ToString(p.role) + "; " +
                                      std::string(method) + " " + std::string(route) + " needs role " +
                                      ToString(least) + (least == Role::kAdmin ? "" : " or above") +
                                      ". Hint: use a key with that role",
                                  {{"role", ToString(p.role)}, {"required_role", ToString(least)}});
}

void Authenticator::RecordUse(const std::string& key_id) {
  TimeMs now = NowMs();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = last_recorded_.find(key_id);
    if (it != last_recorded_.end() && now - it->second < options_.record_use_every.count()) return;
    last_recorded_[key_id] = now;
  }
  Status s = store_->RecordApiKeyUse(key_id, now);
  if (!s.ok()) log::Debug("auth: could not record the use of API key " + key_id + ": " + s.message());
}

}  // namespace af::auth
