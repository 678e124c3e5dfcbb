// libpq helpers private to the PostgreSQL backend: result ownership,
// parameter lists, connecting, and the one mapping of PostgreSQL errors to
// Status codes.
//
// Thread-safety: plain values and free functions; a PGconn must be used by
// one thread at a time (the caller's job).
#pragma once

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "model/types.h"

namespace af::postgres {

// SQLSTATEs the backend reacts to.
inline constexpr char kUniqueViolation[] = "23505";
inline constexpr char kForeignKeyViolation[] = "23503";

// Owns one PGresult (may hold none: libpq returns null when out of memory or
// when the connection is gone).
class PgResult {
 public:
  PgResult() = default;
  explicit PgResult(PGresult* r) : r_(r) {}
  PgResult(PgResult&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  PgResult& operator=(PgResult&& o) noexcept;
  PgResult(const PgResult&) = delete;
  PgResult& operator=(const PgResult&) = delete;
  ~PgResult();

  const PGresult* get() const { return r_; }
  // The statement succeeded (with or without rows).
  bool ok() const;
  int rows() const { return r_ ? PQntuples(r_) : 0; }
  // Rows an INSERT/UPDATE/DELETE touched.
  int64_t affected() const;
  // Empty when there is none (e.g. the connection broke before an answer).
  std::string SqlState() const;
  std::string Constraint() const;

  bool IsNull(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }
  std::string_view View(int row, int col) const {
    return std::string_view(PQgetvalue(r_, row, col), static_cast<size_t>(PQgetlength(r_, row, col)));
  }
  // NULL reads as "".
  std::string Text(int row, int col) const { return std::string(View(row, col)); }
  // Integer columns (text format); NULL or garbage reads as 0.
  int64_t Int64(int row, int col) const;
  int Int(int row, int col) const { return static_cast<int>(Int64(row, col)); }
  std::optional<int64_t> OptInt64(int row, int col) const {
    return IsNull(row, col) ? std::nullopt : std::optional<int64_t>(Int64(row, col));
  }
  bool Bool(int row, int col) const { return View(row, col) == "t"; }
  // A JSON column: NULL is JSON null; text that does not parse is Internal.
  Status Json(int row, int col, json* out) const;

 private:
  PGresult* r_ = nullptr;
};

// The parameters of one statement, all sent in text format. A value that
// PostgreSQL cannot store (NUL, invalid UTF-8) in a key-like field makes the
// whole list invalid: status() says why and the statement is not sent.
class Params {
 public:
  // Ids, names, keys, URLs: refused if PostgreSQL cannot store them
  // verbatim. `field` names the value in the error.
  Params& Key(const char* field, const std::string& v);
  // As Key, but "" is sent as NULL.
  Params& OptKey(const char* field, const std::string& v);
  // Free text (descriptions, error messages): NUL and invalid UTF-8 are
  // replaced by U+FFFD. "" is sent as NULL when `empty_is_null`.
  Params& Text(const std::string& v, bool empty_is_null = false);
  Params& Int(int64_t v);
  Params& Bool(bool v);
  Params& Null();
  // JSON null is sent as NULL; anything else as its serialized text.
  Params& Json(const json& j);
  // Always the serialized text (a null document is "null").
  Params& JsonText(const json& j);
  // A text[] literal of keys, for `= ANY($n::text[])`.
  Params& KeyArray(const char* field, const std::vector<std::string>& v);

  // The lists `rows` (all of one statement's shape) turned into one array
  // per parameter: parameter i is the text[] literal of every row's
  // parameter i, with NULL elements where they are NULL. For a statement
  // that does for `unnest($1::text[], ...)` what the rows' statement does
  // one row at a time. Not ok if a row is not ok or the sizes differ.
  static Params Columns(const std::vector<const Params*>& rows);

  const Status& status() const { return status_; }
  int size() const { return static_cast<int>(values_.size()); }
  // Pointers into this list (valid while it is alive and unchanged).
  std::vector<const char*> Pointers() const;

 private:
  bool CheckKey(const char* field, const std::string& v);

  std::vector<std::string> values_;
  std::vector<bool> null_;
  Status status_;
};

// True if PostgreSQL accepts `s` as TEXT in a UTF8 database: valid UTF-8
// (no overlongs, surrogates or code points above U+10FFFF) without U+0000.
bool IsStorableText(std::string_view s);
// `s` with every byte that breaks the rule above replaced by U+FFFD.
std::string ToStorableText(std::string_view s);

// Where a URL points, without the password: "user@host:port/dbname".
// InvalidArgument if libpq cannot parse it.
Result<std::string> DescribeUrl(const std::string& url);

// Opens a connection with client_encoding UTF8, application_name agentflow
// (unless the URL sets it) and the given connect timeout; notices are
// dropped. Unavailable (naming `target` and libpq's reason) if it fails;
// FailedPrecondition if the database's encoding is neither UTF8 nor
// SQL_ASCII. The caller owns the connection (PQfinish).
Result<PGconn*> Connect(const std::string& url, const std::string& target, std::chrono::milliseconds timeout);

// The Status for a failed statement on `conn`: Unavailable for connection
// loss, shutdowns, serialization failures, deadlocks, lock timeouts and
// resource exhaustion; Internal otherwise. The message names `what` and
// carries PostgreSQL's message; details carry sqlstate and constraint.
Status PgError(PGconn* conn, const PgResult& res, const std::string& what);
// Runs one statement without parameters; PgError's Status (naming `what`)
// if it fails.
Status RunStatement(PGconn* conn, const char* sql, const std::string& what);
// True if `sqlstate` (possibly empty) means the connection cannot be used
// again (class 08, admin/crash shutdown) or `conn` is already broken.
bool ConnectionLost(PGconn* conn, const std::string& sqlstate);
// The SQLSTATE a Status from PgError carries ("" if none).
std::string SqlStateOf(const Status& s);

}  // namespace af::postgres
