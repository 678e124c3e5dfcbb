#include "api/auth_guard.h"

#include "api/api.h"
#include "common/log.h"

namespace af {

http::Response AuthErrorResponse(const Status& status, bool token_presented) {
  http::Response res = ErrorResponse(status);
  if (status.code() == Code::kUnauthenticated) {
    // RFC 6750 section 3: a request with no credentials gets the bare
    // challenge; a rejected token gets error="invalid_token".
    res.headers.emplace_back("WWW-Authenticate", token_presented ? "Bearer realm=\"agentflow\", error=\"invalid_token\""
                                                                 : "Bearer realm=\"agentflow\"");
  }
  return res;
}

void InstallAuthGuard(http::Router& router, auth::Authenticator* auth) {
  if (auth->mode() == auth::AuthMode::kOff) return;
  router.SetGuard([auth](const http::Request& req) -> std::optional<http::Response> {
    std::string authorization = req.Header("Authorization");
    Status s = auth->Check(req.method, req.route, authorization);
    if (s.ok()) return std::nullopt;
    // The message names at most the key's id, never the key.
    std::string line = "auth: " + std::to_string(HttpStatusFor(s.code())) + " for " + req.method + " " + req.path +
                       " from " + req.remote + ": " + s.message();
    if (s.code() == Code::kPermissionDenied || !authorization.empty()) {
      log::Info(line);
    } else {
      log::Debug(line);
    }
    return AuthErrorResponse(s, !authorization.empty());
  });
}

}  // namespace af
