#include "storage/postgres/pg_util.h"

#include <charconv>
#include <cstring>
#include <memory>

#include "common/json_text.h"

namespace af::postgres {
namespace {

// Which statements failed, and why, is enough for a log line: the default
// processor would print every NOTICE (and the server's goodbye on a
// shutdown) to stderr.
void DropNotice(void*, const char*) {}

// libpq's messages span lines ("...unexpectedly\n\tThis probably means...");
// ours are one line.
std::string OneLine(const std::string& s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

// The length of the valid UTF-8 sequence starting at s[i], or 0 if the bytes
// there are not one (the rules of PostgreSQL's pg_utf8_islegal).
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  if (c < 0x80) return c == 0 ? 0 : 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;  // no overlongs
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;  // no overlongs
    if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < len; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return len;
}

// Quotes one element of a text[] literal: "..." with \ and " escaped.
void AppendArrayElement(std::string* out, const std::string& v) {
  out->push_back('"');
  for (char c : v) {
    if (c == '"' || c == '\\') out->push_back('\\');
    out->push_back(c);
  }
  out->push_back('"');
}

// `s` ending in a full stop, so a hint can follow ("...connections?" stays).
std::string Sentence(std::string s) {
  if (s.empty() || (s.back() != '.' && s.back() != '?' && s.back() != '!')) s.push_back('.');
  return s;
}

}  // namespace

// ---------------------------------------------------------------- PgResult

PgResult& PgResult::operator=(PgResult&& o) noexcept {
  if (this != &o) {
    PQclear(r_);
    r_ = o.r_;
    o.r_ = nullptr;
  }
  return *this;
}

PgResult::~PgResult() { PQclear(r_); }

bool PgResult::ok() const {
  if (!r_) return false;
  ExecStatusType s = PQresultStatus(r_);
  return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

int64_t PgResult::affected() const {
  if (!r_) return 0;
  const char* n = PQcmdTuples(r_);
  int64_t v = 0;
  std::from_chars(n, n + std::strlen(n), v);
  return v;
}

std::string PgResult::SqlState() const {
  const char* s = r_ ? PQresultErrorField(r_, PG_DIAG_SQLSTATE) : nullptr;
  return s ? s : "";
}

std::string PgResult::Constraint() const {
  const char* s = r_ ? PQresultErrorField(r_, PG_DIAG_CONSTRAINT_NAME) : nullptr;
  return s ? s : "";
}

int64_t PgResult::Int64(int row, int col) const {
  std::string_view v = View(row, col);
  int64_t out = 0;
  std::from_chars(v.data(), v.data() + v.size(), out);
  return out;
}

Status PgResult::Json(int row, int col, json* out) const {
  if (IsNull(row, col)) {
    *out = nullptr;
    return Status::Ok();
  }
  std::string_view v = View(row, col);
  *out = json::parse(v.begin(), v.end(), nullptr, /*allow_exceptions=*/false);
  if (out->is_discarded()) {
    return Status::Internal(std::string("postgres: column ") + PQfname(r_, col) + " holds invalid JSON");
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- Params

bool Params::CheckKey(const char* field, const std::string& v) {
  if (IsStorableText(v)) return true;
  if (status_.ok()) {
    status_ = Status::InvalidArgument(
        std::string(field) + " contains a NUL character or invalid UTF-8, which PostgreSQL cannot store",
        {{"field", field}, {"hint", "use valid UTF-8 text without U+0000"}});
  }
  return false;
}

Params& Params::Key(const char* field, const std::string& v) {
  CheckKey(field, v);
  values_.push_back(v);
  null_.push_back(false);
  return *this;
}

Params& Params::OptKey(const char* field, const std::string& v) {
  if (v.empty()) return Null();
  return Key(field, v);
}

Params& Params::Text(const std::string& v, bool empty_is_null) {
  if (empty_is_null && v.empty()) return Null();
  values_.push_back(IsStorableText(v) ? v : ToStorableText(v));
  null_.push_back(false);
  return *this;
}

Params& Params::Int(int64_t v) {
  values_.push_back(std::to_string(v));
  null_.push_back(false);
  return *this;
}

Params& Params::Bool(bool v) {
  values_.push_back(v ? "t" : "f");
  null_.push_back(false);
  return *this;
}

Params& Params::Null() {
  values_.emplace_back();
  null_.push_back(true);
  return *this;
}

Params& Params::Json(const json& j) {
  if (j.is_null()) return Null();
  return JsonText(j);
}

Params& Params::JsonText(const json& j) {
  values_.push_back(af::JsonText(j));  // always storable: NUL is escaped, bad UTF-8 replaced
  null_.push_back(false);
  return *this;
}

Params& Params::KeyArray(const char* field, const std::vector<std::string>& v) {
  std::string lit = "{";
  for (size_t i = 0; i < v.size(); ++i) {
    CheckKey(field, v[i]);
    if (i) lit.push_back(',');
    AppendArrayElement(&lit, v[i]);
  }
  lit.push_back('}');
  values_.push_back(std::move(lit));
  null_.push_back(false);
  return *this;
}

Params Params::Columns(const std::vector<const Params*>& rows) {
  Params out;
  const size_t n = rows.empty() ? 0 : rows.front()->values_.size();
  for (const Params* r : rows) {
    if (!r->status_.ok()) {
      out.status_ = r->status_;
      return out;
    }
    if (r->values_.size() != n) {
      out.status_ = Status::Internal("postgres: parameter lists of different sizes");
      return out;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    std::string lit = "{";
    for (size_t k = 0; k < rows.size(); ++k) {
      if (k) lit.push_back(',');
      if (rows[k]->null_[i]) {
        lit += "NULL";
      } else {
        AppendArrayElement(&lit, rows[k]->values_[i]);
      }
    }
    lit.push_back('}');
    out.values_.push_back(std::move(lit));
    out.null_.push_back(false);
  }
  return out;
}

std::vector<const char*> Params::Pointers() const {
  std::vector<const char*> out(values_.size());
  for (size_t i = 0; i < values_.size(); ++i) out[i] = null_[i] ? nullptr : values_[i].c_str();
  return out;
}

// ---------------------------------------------------------------- text

bool IsStorableText(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c != 0 && c < 0x80) {  // the common case
      ++i;
      continue;
    }
    size_t n = Utf8SequenceLength(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string ToStorableText(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (size_t i = 0; i < s.size();) {
    size_t n = Utf8SequenceLength(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

// ---------------------------------------------------------------- connecting

Result<std::string> DescribeUrl(const std::string& url) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(url.c_str(), &err);
  if (!opts) {
    std::string why = err ? OneLine(err) : "out of memory";
    PQfreemem(err);
    return Status::InvalidArgument("the PostgreSQL URL is malformed: " + why,
                                   {{"hint", "use postgresql://user:password@host:5432/dbname"}});
  }
  std::string user, host, hostaddr, port, dbname;
  for (PQconninfoOption* o = opts; o->keyword; ++o) {
    if (!o->val) continue;
    std::string_view k = o->keyword;
    if (k == "user") user = o->val;
    if (k == "host") host = o->val;
    if (k == "hostaddr") hostaddr = o->val;
    if (k == "port") port = o->val;
    if (k == "dbname") dbname = o->val;
  }
  PQconninfoFree(opts);
  if (host.empty()) host = hostaddr.empty() ? "localhost" : hostaddr;
  std::string out = user.empty() ? "" : user + "@";
  out += host;
  if (!port.empty()) out += ":" + port;
  if (!dbname.empty()) out += "/" + dbname;
  return out;
}

Result<PGconn*> Connect(const std::string& url, const std::string& target, std::chrono::milliseconds timeout) {
  // libpq takes whole seconds; below 2 it uses 2.
  std::string timeout_s = std::to_string(std::max<int64_t>(2, (timeout.count() + 999) / 1000));
  // Later entries override earlier ones, and the URL (expanded from dbname)
  // overrides what precedes it: defaults first, the forced encoding last.
  // Keepalives and tcp_user_timeout turn a vanished server (host down, no
  // FIN) into a failed call within ~1 min instead of a hang of many minutes.
  const char* keys[] = {"connect_timeout",
                        "application_name",
                        "keepalives_idle",
                        "keepalives_interval",
                        "keepalives_count",
                        "tcp_user_timeout",
                        "dbname",
                        "client_encoding",
                        nullptr};
  const char* values[] = {timeout_s.c_str(), "agentflow", "30", "10", "3", "60000", url.c_str(), "UTF8", nullptr};
  PGconn* conn = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (!conn) return Status::Unavailable("postgres: cannot connect to " + target + ": out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string why = OneLine(PQerrorMessage(conn));
    PQfinish(conn);
    return Status::Unavailable(Sentence("postgres: cannot connect to " + target + ": " + why) +
                               " Hint: check that PostgreSQL is running and reachable, and that the URL, user "
                               "and password are right");
  }
  PQsetNoticeProcessor(conn, DropNotice, nullptr);
  const char* enc = PQparameterStatus(conn, "server_encoding");
  std::string encoding = enc ? enc : "";
  if (encoding != "UTF8" && encoding != "SQL_ASCII") {
    PQfinish(conn);
    return Status::FailedPrecondition(
        "postgres: database " + target + " uses the encoding " + encoding + ", but agentflow needs UTF8",
        {{"hint",
          "create the database with ENCODING 'UTF8' (CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0)"}});
  }
  return conn;
}

// ---------------------------------------------------------------- errors

bool ConnectionLost(PGconn* conn, const std::string& sqlstate) {
  if (!conn || PQstatus(conn) == CONNECTION_BAD) return true;
  return sqlstate.rfind("08", 0) == 0 || sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03";
}

Status PgError(PGconn* conn, const PgResult& res, const std::string& what) {
  std::string state = res.SqlState();
  std::string why;
  if (const char* primary = res.get() ? PQresultErrorField(res.get(), PG_DIAG_MESSAGE_PRIMARY) : nullptr) {
    why = primary;
  } else if (res.get() && *PQresultErrorMessage(res.get())) {
    why = OneLine(PQresultErrorMessage(res.get()));
  } else if (conn) {
    why = OneLine(PQerrorMessage(conn));
  }
  if (why.empty()) why = "unknown error";
  nlohmann::json details = nlohmann::json::object();
  if (!state.empty()) details["sqlstate"] = state;
  if (std::string c = res.Constraint(); !c.empty()) details["constraint"] = c;
  std::string msg = "postgres: " + what + ": " + why + (state.empty() ? "" : " (SQLSTATE " + state + ")");

  if (ConnectionLost(conn, state)) {
    return Status(Code::kUnavailable,
                  Sentence(msg) +
                      " Hint: the database connection was lost (server restart, failover or network); "
                      "retry once the database is reachable",
                  details);
  }
  std::string cls = state.substr(0, 2);
  if (state == "40001" || state == "40P01" || state == "55P03" || cls == "53" || state == "57014" || state == "25006") {
    // serialization failure, deadlock, lock timeout, out of resources (too
    // many connections, disk full), statement timeout, read-only standby.
    return Status(Code::kUnavailable, Sentence(msg) + " Hint: a transient database condition; retry", details);
  }
  return Status(Code::kInternal, msg, details);
}

Status RunStatement(PGconn* conn, const char* sql, const std::string& what) {
  PgResult r(PQexec(conn, sql));
  if (!r.ok()) return PgError(conn, r, what);
  return Status::Ok();
}

std::string SqlStateOf(const Status& s) {
  const nlohmann::json& d = s.details();
  if (d.is_object()) {
    auto it = d.find("sqlstate");
    if (it != d.end() && it->is_string()) return it->get<std::string>();
  }
  return "";
}

}  // namespace af::postgres
