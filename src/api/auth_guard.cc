#include "api/auth_guard.h"

#include "api/api.h"
#include "api/store_worker.h"
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

namespace {

// The log line and the refusal for a check that failed.
http::Response Refuse(const http::Request& req, const std::string& authorization, const Status& s) {
  // The message names at most the key's id, never the key.
  std::string line = "auth: " + std::to_string(HttpStatusFor(s.code())) + " for " + req.method + " " + req.path +
                     " from " + req.remote + ": " + s.message();
  if (s.code() == Code::kPermissionDenied || !authorization.empty()) {
    log::Info(line);
  } else {
    log::Debug(line);
  }
  return AuthErrorResponse(s, !authorization.empty());
}

boost::asio::awaitable<std::optional<http::Response>> Guard(auth::Authenticator* auth, StoreWorker* readers,
                                                            const http::Request& req) {
  if (auth::RequiredPermission(req.method, req.route) == auth::Permission::kPublic) co_return std::nullopt;
  std::string authorization = req.Header("Authorization");
  Status s;
  if (!authorization.empty()) {
    // The key is read from the database (so a revoked key stops at once,
    // on every instance): off the io thread, like the handlers' reads.
    std::function<Status()> check = [auth, &req, &authorization] {
      return auth->Check(req.method, req.route, authorization);
    };
    s = co_await readers->Call<Status>(std::move(check));
  } else {
    s = auth->Check(req.method, req.route, authorization);  // no key: decided without the store
  }
  if (s.ok()) co_return std::nullopt;
  co_return Refuse(req, authorization, s);
}

}  // namespace

void InstallAuthGuard(http::Router& router, auth::Authenticator* auth, std::shared_ptr<StoreWorker> readers) {
  if (auth->mode() == auth::AuthMode::kOff) return;
  router.SetGuard(
      [auth, readers = std::move(readers)](const http::Request& req) { return Guard(auth, readers.get(), req); });
}

}  // namespace af
