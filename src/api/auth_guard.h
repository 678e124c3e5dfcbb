// Wiring of access control into a service's router: the one place requests
// are checked (src/auth decides; this turns its answer into the API's JSON
// errors). Every service with an HTTP API (serve, api, registry) calls
// InstallAuthGuard once, after registering its routes.
//
//   401 UNAUTHENTICATED    no key, a malformed header, an unknown, wrong or
//                          revoked key; with WWW-Authenticate: Bearer
//   403 PERMISSION_DENIED  the key's role lacks the route's permission
//                          (details: role, required_role)
//
// A request that presents a key waits for its check on a thread of
// `readers` (the key is read from the database on every request, so a
// revoked key stops at once): the io thread serves its other connections
// meanwhile. Public routes and requests without a key are decided at once.
// `readers` must not be null.
//
// Thread-safety: the guard runs on any io thread; `auth` must be safe for
// that (it is) and outlive the router's server.
#pragma once

#include <memory>

#include "auth/auth.h"
#include "http/http.h"

namespace af {

class StoreWorker;

void InstallAuthGuard(http::Router& router, auth::Authenticator* auth, std::shared_ptr<StoreWorker> readers);

// The refusal for a failed check (ErrorResponse plus WWW-Authenticate on 401).
http::Response AuthErrorResponse(const Status& status, bool token_presented);

}  // namespace af
