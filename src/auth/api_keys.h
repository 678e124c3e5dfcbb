// API keys: how they look, how they are made and how a presented key is
// checked against the stored record. Pure functions over OpenSSL's libcrypto
// (random bytes and SHA-256); storage is the Store's (api_keys table).
//
// A key is "af_<id>_<secret>": <id> is 16 lowercase hex digits (64 random
// bits), the public lookup part, shown by `agentflow apikey list` and used to
// revoke; <secret> is 64 lowercase hex digits (256 random bits) and only its
// SHA-256 is stored. A secret that random needs no salt or slow hash: no
// dictionary reaches it, and one SHA-256 per request costs about a
// microsecond. Hashes are compared in constant time.
//
// Thread-safety: pure functions (RAND_bytes is thread-safe in OpenSSL 3).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "model/types.h"

namespace af::auth {

inline constexpr std::string_view kKeyPrefix = "af_";
inline constexpr size_t kKeyIdLength = 16;      // hex digits
inline constexpr size_t kSecretLength = 64;     // hex digits
inline constexpr size_t kMaxKeyNameLength = 128;

// A new key: the record to store and the full key, to show once.
struct NewApiKey {
  ApiKey record;    // id, name, role, secret_hash (created_at is the store's)
  std::string key;  // "af_<id>_<secret>"
};

// Makes a key with fresh random id and secret. InvalidArgument if `name` is
// longer than kMaxKeyNameLength or holds control characters; Internal if
// the system's random source fails.
Result<NewApiKey> GenerateApiKey(Role role, const std::string& name);

struct ParsedApiKey {
  std::string id;
  std::string secret;
};
// Splits "af_<id>_<secret>"; nullopt unless the shape is exactly that.
std::optional<ParsedApiKey> ParseApiKey(std::string_view key);

// Lowercase hex SHA-256 of `secret`.
std::string HashSecret(std::string_view secret);

// True if SHA-256(secret) equals `stored_hash` (hex), compared in constant
// time (no early exit on the first differing byte).
bool SecretMatches(std::string_view secret, std::string_view stored_hash);

// The bearer token of an "Authorization: Bearer <token>" header value (the
// scheme is case-insensitive); nullopt for another scheme or an empty token.
std::optional<std::string_view> BearerToken(std::string_view authorization);

}  // namespace af::auth
