// /api/v1/apikeys: API keys over HTTP, for admins (the route table in
// src/auth makes every route here admin-only, GET included).
//
//   POST   /api/v1/apikeys       {"role": "viewer"|"operator"|"admin", "name"?}
//                                → 201 the key record plus "key" (the only
//                                time the secret is shown)
//   GET    /api/v1/apikeys       → {"items": [key record, ...]} (no secrets,
//                                no hashes)
//   DELETE /api/v1/apikeys/{id}  → 200 the record with revoked_at set
//
// Only served usefully with --auth required: with auth off anyone could mint
// an admin key that keeps working once auth is turned on, so every route
// answers 409 FAILED_PRECONDITION then (use `agentflow apikey` on the
// server's database instead).
//
// Thread-safety: as AgentsApi.
#pragma once

#include <memory>

#include "auth/auth.h"
#include "http/http.h"
#include "storage/store.h"

namespace af {

class StoreWorker;

class ApiKeysApi {
 public:
  ApiKeysApi(Store* store, auth::AuthMode mode) : store_(store), mode_(mode) {}

  // Adds the routes; they use `this`, which must outlive serving them. Their
  // store calls run on `readers`' threads.
  void Register(http::Router& router, std::shared_ptr<StoreWorker> readers);

  http::Response Create(http::Request& req);
  http::Response List(http::Request& req);
  http::Response Revoke(http::Request& req);

 private:
  Store* store_;
  auth::AuthMode mode_;
};

}  // namespace af
