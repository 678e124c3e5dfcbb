// Keeping secrets out of log lines, error messages and printed output.
// Every place that logs or prints a database URL, a registry URL or a
// Kafka setting passes it through these first.
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

namespace af {

inline constexpr const char* kRedacted = "***";

// A URL or libpq connection string with its secrets replaced by "***":
//   postgresql://user:pass@host:5432/db      -> postgresql://user:***@host:5432/db
//   postgresql://host/db?password=pass&x=1   -> postgresql://host/db?password=***&x=1
//   host=db user=u password='p w' dbname=x   -> host=db user=u password=*** dbname=x
// Anything without a secret (a SQLite path, http://host:8080) is returned
// unchanged.
std::string RedactUrl(std::string_view url);

// True for setting names whose values are secrets: any name containing
// "password", "secret", "token", "credential" or "private", or ending in
// ".pem" / ".key", or librdkafka's "sasl.oauthbearer.config" and
// "sasl.kerberos.keytab" (case-insensitive).
bool IsSecretSetting(std::string_view name);

// `value`, or "***" when IsSecretSetting(name).
std::string RedactSetting(std::string_view name, std::string_view value);

}  // namespace af
