// Errors as values. Every expected failure in agentflow is a Status with one
// of a small, closed set of codes; exceptions never cross a module boundary.
// Thread-safety: Status and Result are plain values (copy to share).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

#include <nlohmann/json.hpp>

namespace af {

enum class Code {
  kOk = 0,
  kInvalidArgument,     // the caller sent something wrong (HTTP 400)
  kNotFound,            // no such object (404)
  kAlreadyExists,       // unique name/key taken (409)
  kFailedPrecondition,  // object is in the wrong state, e.g. run finished (409)
  kTooLarge,            // body or document over a limit (413)
  kUnsupportedMediaType,// not JSON (415)
  kUnavailable,         // transient: connection refused, 5xx, busy (retryable)
  kDeadlineExceeded,    // timed out (retryable)
  kCancelled,           // stopped on request
  kAborted,             // lost a race for ownership: another executor holds the run's lease (409)
  kInternal,            // a bug or a broken invariant (500)
  kUnauthenticated,     // no valid credentials (401)
  kPermissionDenied,    // valid credentials, not allowed to do this (403)
};

const char* CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message, nlohmann::json details = nullptr)
      : code_(code), message_(std::move(message)), details_(std::move(details)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m, nlohmann::json d = nullptr) {
    return Status(Code::kInvalidArgument, std::move(m), std::move(d));
  }
  static Status NotFound(std::string m) { return Status(Code::kNotFound, std::move(m)); }
  static Status AlreadyExists(std::string m) { return Status(Code::kAlreadyExists, std::move(m)); }
  static Status FailedPrecondition(std::string m, nlohmann::json d = nullptr) {
    return Status(Code::kFailedPrecondition, std::move(m), std::move(d));
  }
  static Status TooLarge(std::string m) { return Status(Code::kTooLarge, std::move(m)); }
  static Status Unavailable(std::string m) { return Status(Code::kUnavailable, std::move(m)); }
  static Status DeadlineExceeded(std::string m) { return Status(Code::kDeadlineExceeded, std::move(m)); }
  static Status Cancelled(std::string m) { return Status(Code::kCancelled, std::move(m)); }
  static Status Aborted(std::string m, nlohmann::json d = nullptr) {
    return Status(Code::kAborted, std::move(m), std::move(d));
  }
  static Status Internal(std::string m) { return Status(Code::kInternal, std::move(m)); }
  static Status Unauthenticated(std::string m) { return Status(Code::kUnauthenticated, std::move(m)); }
  static Status PermissionDenied(std::string m, nlohmann::json d = nullptr) {
    return Status(Code::kPermissionDenied, std::move(m), std::move(d));
  }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // Structured detail (e.g. the list of validation problems); null if none.
  const nlohmann::json& details() const { return details_; }
  // True for failures that may succeed if tried again later.
  bool IsRetryable() const { return code_ == Code::kUnavailable || code_ == Code::kDeadlineExceeded; }

  // "NOT_FOUND: run r-1 does not exist"
  std::string ToString() const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
  nlohmann::json details_;
};

// A value or the Status explaining why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (std::get<Status>(v_).ok()) v_ = Status::Internal("Result built from an OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace af

// Propagate a non-OK Status out of the current function.
#define AF_RETURN_IF_ERROR(expr)              \
  do {                                        \
    ::af::Status af_status_ = (expr);         \
    if (!af_status_.ok()) return af_status_;  \
  } while (0)
