// Access control for the HTTP services: who may call which route.
//
// The whole policy is here: the role → permission table (RoleHas), the
// route → permission table (RequiredPermission) and the check of a request's
// API key (Authenticator). The services install it once, as the router's
// guard (api/auth_guard.h), so no handler checks anything itself.
//
//   permission   routes                                          roles
//   public       /healthz, /readyz, /metrics, /api/v1/healthz,   anyone, no key
//                the web console's files: / and /ui/{file}
//   read         every other GET                                 viewer, operator, admin
//   operate      POST /workflows/{id}/runs, /runs/{id}/cancel,   operator, admin
//                /runs/{id}/retry, /agents/{name}/heartbeat
//   admin        every other method (workflows, agents), and     admin
//                every /api/v1/apikeys route (GET included)
//
// A route not named in the table gets the default of its method (GET: read,
// else admin), so a new write route is admin-only until someone decides
// otherwise.
//
// Thread-safety: the free functions are pure; one Authenticator may be used
// from many threads.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "model/types.h"
#include "storage/store.h"

namespace af::auth {

enum class Permission { kPublic, kRead, kOperate, kAdmin };
const char* ToString(Permission p);  // "public", "read", "operate", "admin"

// True if `role` holds `permission` (every role holds kPublic).
bool RoleHas(Role role, Permission permission);
// The least role that holds `permission` (kViewer for kPublic).
Role LeastRoleFor(Permission permission);

// The permission a request needs, from its method and the route pattern
// the router matched ("/api/v1/runs/{run_id}/cancel").
Permission RequiredPermission(std::string_view method, std::string_view route);

// --auth / AGENTFLOW_AUTH.
enum class AuthMode { kOff, kRequired };
std::optional<AuthMode> ParseAuthMode(std::string_view s);  // "off", "required"
const char* ToString(AuthMode m);

// Who made a request.
struct Principal {
  std::string key_id;
  Role role = Role::kViewer;
};

struct AuthenticatorOptions {
  AuthMode mode = AuthMode::kOff;  // kOff: every request is allowed, no key is read
  // last_used_at is written at most this often per key and process (a write
  // per request would cost a commit per request).
  std::chrono::milliseconds record_use_every{60000};
};

class Authenticator {
 public:
  // `store` (where the keys are) must outlive the Authenticator.
  Authenticator(Store* store, AuthenticatorOptions options);

  AuthMode mode() const { return options_.mode; }

  // Decides a request for `route` (a pattern) with the given Authorization
  // header value ("" when absent). OK: allowed (*who is set when a key was
  // checked); Unauthenticated: no key, a malformed header, an unknown,
  // wrong or revoked key; PermissionDenied: the key's role lacks the
  // permission (details: role, required_role); a store error (e.g.
  // Unavailable) as it came. Messages never contain the key.
  Status Check(std::string_view method, std::string_view route, std::string_view authorization,
               Principal* who = nullptr);

  // Only the key check: OK with *who set, or Unauthenticated / a store error.
  Status Authenticate(std::string_view authorization, Principal* who);

 private:
  void RecordUse(const std::string& key_id);

  Store* store_;
  AuthenticatorOptions options_;
  std::mutex mu_;                             // guards last_recorded_
  std::map<std::string, TimeMs> last_recorded_;  // key id → last last_used_at write
};

}  // namespace af::auth
