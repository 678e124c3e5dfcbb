// Request parsing shared by the API's handlers (workflows, runs, agents):
// JSON bodies, field whitelists, ids, query parameters. Pure functions.
#pragma once

#include <initializer_list>
#include <string>

#include "common/status.h"
#include "http/http.h"
#include "model/types.h"

namespace af::api {

// "application/json" or any "<type>/<subtype>+json", parameters ignored,
// case-insensitive (RFC 9110 8.3.1).
bool IsJsonMediaType(const std::string& content_type);

// Parses a JSON request body that must be an object. Empty bodies are
// `empty_default` (null: a body is required). 415 for another media type.
Result<json> ParseBody(const http::Request& req, const json& empty_default);

// Rejects fields outside `allowed`, listing each in details.problems.
Status CheckFields(const json& body, std::initializer_list<const char*> allowed);

// ?limit=1..1000, `def` when absent.
Result<int> ParseLimit(const http::Request& req, int def);

// ?wait=<seconds> (decimal allowed); 0 when absent; capped at max_seconds.
Result<double> ParseWait(const http::Request& req, int max_seconds);

// body[field] as a string, "" when absent or null; sets *err on another type.
std::string OptString(const json& body, const char* field, Status* err);

// InvalidArgument naming `what` unless IsValidId(id).
Status CheckId(const std::string& id, const char* what);

}  // namespace af::api
