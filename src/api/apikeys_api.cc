#include "api/apikeys_api.h"

#include "api/api.h"
#include "api/request_util.h"
#include "api/store_worker.h"
#include "auth/api_keys.h"
#include "common/log.h"

namespace af {

using http::Request;
using http::Response;

namespace {

Status AuthOff() {
  return Status::FailedPrecondition(
      "API keys are managed over HTTP only when the server runs with --auth required. Hint: use 'agentflow apikey "
      "create|list|revoke' with the server's --data-dir or --database-url");
}

}  // namespace

Response ApiKeysApi::Create(Request& req) {
  if (mode_ == auth::AuthMode::kOff) return ErrorResponse(AuthOff());
  auto body = api::ParseBody(req, nullptr);
  if (!body.ok()) return ErrorResponse(body.status());
  Status fields = api::CheckFields(*body, {"role", "name"});
  if (!fields.ok()) return ErrorResponse(fields);
  Status err;
  std::string role_name = api::OptString(*body, "role", &err);
  std::string name = api::OptString(*body, "name", &err);
  if (!err.ok()) return ErrorResponse(err);
  std::optional<Role> role = ParseRole(role_name);
  if (!role) return ErrorResponse(Status::InvalidArgument("role must be \"viewer\", \"operator\" or \"admin\""));
  auto made = auth::GenerateApiKey(*role, name);
  if (!made.ok()) return ErrorResponse(made.status());
  auto stored = store_->CreateApiKey(made->record);
  if (!stored.ok()) return ErrorResponse(stored.status());
  log::Info("API key " + stored->id + " created (role " + ToString(stored->role) + ")");
  json out = ToJson(*stored);
  out["key"] = made->key;
  return http::JsonResponse(201, out);
}

Response ApiKeysApi::List(Request&) {
  if (mode_ == auth::AuthMode::kOff) return ErrorResponse(AuthOff());
  auto keys = store_->ListApiKeys();
  if (!keys.ok()) return ErrorResponse(keys.status());
  json items = json::array();
  for (const ApiKey& k : *keys) items.push_back(ToJson(k));
  return http::JsonResponse(200, {{"items", items}});
}

Response ApiKeysApi::Revoke(Request& req) {
  if (mode_ == auth::AuthMode::kOff) return ErrorResponse(AuthOff());
  const std::string& id = req.path_params["id"];
  Status valid = api::CheckId(id, "API key id");
  if (!valid.ok()) return ErrorResponse(valid);
  auto revoked = store_->RevokeApiKey(id);
  if (!revoked.ok()) return ErrorResponse(revoked.status());
  log::Info("API key " + revoked->id + " revoked");
  return http::JsonResponse(200, ToJson(*revoked));
}

void ApiKeysApi::Register(http::Router& router, std::shared_ptr<StoreWorker> readers) {
  auto sync = [this, &readers](Response (ApiKeysApi::*fn)(Request&)) -> http::Handler {
    return OffIoThread(readers, [this, fn](Request& req) { return (this->*fn)(req); });
  };
  router.Add("POST", "/api/v1/apikeys", sync(&ApiKeysApi::Create));
  router.Add("GET", "/api/v1/apikeys", sync(&ApiKeysApi::List));
  router.Add("DELETE", "/api/v1/apikeys/{id}", sync(&ApiKeysApi::Revoke));
}

}  // namespace af
