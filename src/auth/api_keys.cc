#include "auth/api_keys.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <array>
#include <cctype>

namespace af::auth {
namespace {

std::string Hex(const unsigned char* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[p[i] >> 4]);
    out.push_back(kDigits[p[i] & 0x0f]);
  }
  return out;
}

Result<std::string> RandomHex(size_t bytes) {
  std::array<unsigned char, 64> buf{};
  if (bytes > buf.size() || RAND_bytes(buf.data(), static_cast<int>(bytes)) != 1) {
    return Status::Internal("could not read random bytes for an API key (OpenSSL RAND_bytes failed)");
  }
  std::string hex = Hex(buf.data(), bytes);
  OPENSSL_cleanse(buf.data(), buf.size());
  return hex;
}

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

Result<NewApiKey> GenerateApiKey(Role role, const std::string& name) {
  if (name.size() > kMaxKeyNameLength) {
    return Status::InvalidArgument("the key's name is longer than " + std::to_string(kMaxKeyNameLength) +
                                   " characters");
  }
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) return Status::InvalidArgument("the key's name must not hold control characters");
  }
  auto id = RandomHex(kKeyIdLength / 2);
  if (!id.ok()) return id.status();
  auto secret = RandomHex(kSecretLength / 2);
  if (!secret.ok()) return secret.status();
  NewApiKey out;
  out.record.id = *id;
  out.record.name = name;
  out.record.role = role;
  out.record.secret_hash = HashSecret(*secret);
  out.key = std::string(kKeyPrefix) + *id + "_" + *secret;
  return out;
}

std::optional<ParsedApiKey> ParseApiKey(std::string_view key) {
  if (key.size() != kKeyPrefix.size() + kKeyIdLength + 1 + kSecretLength) return std::nullopt;
  if (key.substr(0, kKeyPrefix.size()) != kKeyPrefix) return std::nullopt;
  key.remove_prefix(kKeyPrefix.size());
  std::string_view id = key.substr(0, kKeyIdLength);
  if (key[kKeyIdLength] != '_') return std::nullopt;
  std::string_view secret = key.substr(kKeyIdLength + 1);
  if (!IsLowerHex(id) || !IsLowerHex(secret)) return std::nullopt;
  return ParsedApiKey{std::string(id), std::string(secret)};
}

std::string HashSecret(std::string_view secret) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), digest.data());
  return Hex(digest.data(), digest.size());
}

bool SecretMatches(std::string_view secret, std::string_view stored_hash) {
  std::string computed = HashSecret(secret);
  if (stored_hash.size() != computed.size()) return false;  // the length is public: always 64
  return CRYPTO_memcmp(computed.data(), stored_hash.data(), computed.size()) == 0;
}

std::optional<std::string_view> BearerToken(std::string_view authorization) {
  constexpr std::string_view kScheme = "bearer";
  auto is_space = [](char c) { return c == ' ' || c == '\t'; };
  while (!authorization.empty() && is_space(authorization.front())) authorization.remove_prefix(1);
  while (!authorization.empty() && is_space(authorization.back())) authorization.remove_suffix(1);
  if (authorization.size() <= kScheme.size() || !is_space(authorization[kScheme.size()])) return std::nullopt;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != kScheme[i]) return std::nullopt;
  }
  std::string_view token = authorization.substr(kScheme.size());
  while (!token.empty() && is_space(token.front())) token.remove_prefix(1);
  if (token.empty()) return std::nullopt;
  return token;
}

}  // namespace af::auth
