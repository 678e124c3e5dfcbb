// The Store conformance suite: one set of tests every backend must pass, so
// SQLite and PostgreSQL cannot drift. It covers every method and every
// contract sentence of store.h.
//
// A backend's test links af_store_conformance (an OBJECT library, so the
// tests are linked in) and instantiates the suite with a factory that returns
// a fresh, empty store on every call:
//
//   INSTANTIATE_TEST_SUITE_P(Sqlite, StoreConformance,
//       ::testing::Values(StoreBackend{"memory", [] { return OpenSqliteStore(":memory:"); }}),
//       StoreBackendName);
//
// The tests use only the Store interface, and need no sleeps: when a test
// needs two distinct timestamps it waits for the wall clock to tick.
//
// Thread-safety: tests drive the store from several threads (the races in
// the contract); the factory is called from the test's main thread only.
#pragma once

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include <gtest/gtest.h>

#include "common/status.h"
#include "storage/store.h"

namespace af {

struct StoreBackend {
  std::string name;  // a test-name suffix: [A-Za-z0-9_]
  // Returns a fresh, empty store (or why it could not).
  std::function<Result<std::unique_ptr<Store>>()> open;
};

inline void PrintTo(const StoreBackend& b, std::ostream* os) { *os << b.name; }
inline std::string StoreBackendName(const ::testing::TestParamInfo<StoreBackend>& info) { return info.param.name; }

class StoreConformance : public ::testing::TestWithParam<StoreBackend> {
 protected:
  // testing::Test::Run() would otherwise hide af::Run in the tests.
  using Run = ::af::Run;

  void SetUp() override;
  void TearDown() override;

  Store& store() { return *store_; }

  // A live workflow with a small plan; name defaults to a unique one.
  Workflow MakeWorkflow(const std::string& name = "");
  // A PENDING run of `wf` (version 1 unless given).
  Run MakeRun(const Workflow& wf, const json& input = json::object(), const std::string& idempotency_key = "");
  // A run driven (through allowed transitions) to `status`.
  Run RunIn(const Workflow& wf, RunStatus status);
  // A RUNNING step execution of `run`; returns its id.
  int64_t StartStep(const Run& run, const std::string& step_id, std::optional<int> item_index = std::nullopt);

  std::unique_ptr<Store> store_;
  int next_name_ = 0;
};

}  // namespace af
