#include "storage/sqlite/sqlite_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <latch>
#include <mutex>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "storage/sqlite/migrations.h"
#include "storage/store_conformance.h"

namespace af {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------- temp files

// One private directory per test process, removed when the tests end.
class TempDirEnvironment : public ::testing::Environment {
 public:
  static fs::path Dir() {
    std::lock_guard<std::mutex> lock(mu_);
    if (dir_.empty()) {
      std::string tmpl = (fs::temp_directory_path() / "af-storage-test-XXXXXX").string();
      if (!mkdtemp(tmpl.data())) std::abort();
      dir_ = tmpl;
    }
    return dir_;
  }
  // A new, unused database path.
  static std::string NewDbPath() {
    static std::atomic<int> n{0};
    return (Dir() / ("db-" + std::to_string(n++) + ".sqlite")).string();
  }
  void TearDown() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
      dir_.clear();
    }
  }

 private:
  static inline std::mutex mu_;
  static inline fs::path dir_;
};

[[maybe_unused]] ::testing::Environment* const kTempDirEnv =
    ::testing::AddGlobalTestEnvironment(new TempDirEnvironment);

// ---------------------------------------------------------------- conformance

// ":memory:" is private to its connection, and the store has exactly one, so
// every open is a fresh database. The file backend exercises WAL for real.
INSTANTIATE_TEST_SUITE_P(
    Sqlite, StoreConformance,
    ::testing::Values(StoreBackend{"memory", [] { return OpenSqliteStore(":memory:"); }},
                      StoreBackend{"file", [] { return OpenSqliteStore(TempDirEnvironment::NewDbPath()); }}),
    StoreBackendName);

// ---------------------------------------------------------------- helpers

template <typename T>
T Must(Result<T> r) {
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (!r.ok()) throw std::runtime_error(r.status().ToString());
  return std::move(r).value();
}

// A raw connection, to look under the store.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) ADD_FAILURE() << "open " << path;
    // A store open on the same file has a checkpoint thread, whose
    // connection can hold the WAL's write lock for an instant
    // (wal_checkpointer.h): wait for it, as the store's own writer does.
    sqlite3_busy_timeout(db_, 5000);
  }
  ~RawDb() { sqlite3_close(db_); }
  sqlite3* get() { return db_; }

  // The rows of a query, each cell as text ("NULL" for null).
  std::vector<std::vector<std::string>> Query(const std::string& sql) {
    std::vector<std::vector<std::string>> rows;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
      return rows;
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      auto& row = rows.emplace_back();
      for (int c = 0; c < sqlite3_column_count(st); ++c) {
        const unsigned char* t = sqlite3_column_text(st, c);
        row.push_back(t ? reinterpret_cast<const char*>(t) : "NULL");
      }
    }
    if (rc != SQLITE_DONE) ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
    sqlite3_finalize(st);
    return rows;
  }
  bool HasTable(const std::string& name) {
    return !Query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '" + name + "'").empty();
  }

 private:
  sqlite3* db_ = nullptr;
};

// ---------------------------------------------------------------- the file

TEST(SqliteStoreTest, DataSurvivesCloseAndReopen) {
  std::string path = TempDirEnvironment::NewDbPath();
  Workflow wf;
  af::Run run;
  int64_t step_id = 0;
  Agent agent;
  {
    std::unique_ptr<Store> store = Must(OpenSqliteStore(path));
    wf = Must(store->CreateWorkflow(NewWorkflow{"persisted", "d", json{{"steps", json::array()}}}));
    wf = Must(store->UpdateWorkflow(wf.id, NewWorkflow{"persisted", "d2", json{{"v", 2}}}));
    run = Must(store->CreateRun(NewRun{"", wf.id, 2, json{{"x", "ü"}}, "key"})).run;
    run = Must(store->TransitionRun({run.id, RunStatus::kPending, RunStatus::kRunning}));
    StepExecution s;
    s.run_id = run.id;
    s.step_id = "a";
    step_id = Must(store->InsertStep(s));
    ASSERT_TRUE(store->FinishStep({run.id, step_id, StepStatus::kCompleted, json{{"ok", true}}, ""}).ok());
    Agent a;
    a.name = "echo";
    a.url = "http://127.0.0.1:1/echo";
    agent = Must(store->CreateAgent(a));
  }
  std::unique_ptr<Store> store = Must(OpenSqliteStore(path));
  Workflow wf2 = Must(store->GetWorkflow(wf.id));
  EXPECT_EQ(wf2.version, 2);
  EXPECT_EQ(wf2.plan, wf.plan);
  EXPECT_EQ(Must(store->GetWorkflow(wf.id, 1)).description, "d");
  af::Run run2 = Must(store->GetRun(run.id));
  EXPECT_EQ(run2.status, RunStatus::kRunning);
  EXPECT_EQ(run2.input, run.input);
  EXPECT_EQ(run2.started_at, run.started_at);
  EXPECT_FALSE(Must(store->CreateRun(NewRun{"", wf.id, 2, json::object(), "key"})).created)
      << "idempotency keys survive a restart";
  auto steps = Must(store->ListSteps(run.id));
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].id, step_id);
  EXPECT_EQ(steps[0].output, json({{"ok", true}}));
  EXPECT_EQ(Must(store->GetAgent("echo")).created_at, agent.created_at);
  EXPECT_EQ(Must(store->ListUnfinishedRuns(10)).size(), 1u) << "recovery finds the RUNNING run";
}

TEST(SqliteStoreTest, FileIsInWalMode) {
  std::string path = TempDirEnvironment::NewDbPath();
  std::unique_ptr<Store> store = Must(OpenSqliteStore(path));
  ASSERT_TRUE(store->Ping().ok());
  RawDb raw(path);
  auto rows = raw.Query("PRAGMA journal_mode");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][0], "wal");
  EXPECT_EQ(raw.Query("PRAGMA foreign_key_list(step_executions)").size(), 1u);
}

TEST(SqliteStoreTest, FullSyncOpens) {
  std::unique_ptr<Store> store = Must(OpenSqliteStore(TempDirEnvironment::NewDbPath(), /*full_sync=*/true));
  EXPECT_TRUE(store->Ping().ok());
}

TEST(SqliteStoreTest, MigrationsAreRecordedAndAppliedOnce) {
  std::string path = TempDirEnvironment::NewDbPath();
  Must(OpenSqliteStore(path)).reset();
  RawDb raw(path);
  auto first = raw.Query("SELECT version, applied_at FROM schema_migrations ORDER BY version");
  auto embedded = sqlite::EmbeddedMigrations();
  ASSERT_EQ(first.size(), embedded.size());
  for (size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(first[i][0], std::to_string(embedded[i].version));
    EXPECT_GT(std::stoll(first[i][1]), 0);
  }
  for (const char* table : {"workflows", "workflow_versions", "workflow_runs", "step_executions", "agents"}) {
    EXPECT_TRUE(raw.HasTable(table)) << table;
  }
  // Reopening applies nothing again: the same rows, the same applied_at.
  Must(OpenSqliteStore(path)).reset();
  Must(OpenSqliteStore(path)).reset();
  EXPECT_EQ(raw.Query("SELECT version, applied_at FROM schema_migrations ORDER BY version"), first);
}

TEST(SqliteStoreTest, EmbeddedMigrationsAreNumberedFromOne) {
  auto embedded = sqlite::EmbeddedMigrations();
  ASSERT_FALSE(embedded.empty());
  for (size_t i = 0; i < embedded.size(); ++i) {
    EXPECT_EQ(embedded[i].version, static_cast<int>(i + 1)) << embedded[i].name;
    char prefix[16];
    std::snprintf(prefix, sizeof prefix, "%04d_", embedded[i].version);
    EXPECT_EQ(std::string(embedded[i].name).rfind(prefix, 0), 0u) << embedded[i].name;
    EXPECT_NE(std::string(embedded[i].sql).find(';'), std::string::npos) << "holds at least one statement";
  }
  EXPECT_STREQ(embedded[0].name, "0001_initial.sql");
}

TEST(SqliteMigrationsTest, AgentsOfAVersionOneDatabaseBecomeHttpAgentsOfUnknownHealth) {
  std::string path = TempDirEnvironment::NewDbPath();
  {
    RawDb raw(path);
    ASSERT_TRUE(sqlite::ApplyMigrations(raw.get(), sqlite::EmbeddedMigrations().first(1)).ok());
    raw.Query("INSERT INTO agents (name, url, timeout_ms, max_concurrency, metadata, created_at, updated_at) "
              "VALUES ('old', 'http://127.0.0.1:9/old', 100, 2, '{}', 5, 6)");
  }
  auto store = Must(OpenSqliteStore(path));
  Agent a = Must(store->GetAgent("old"));
  EXPECT_EQ(a.transport, AgentTransport::kHttp);
  EXPECT_EQ(a.url, "http://127.0.0.1:9/old");
  EXPECT_EQ(a.timeout_ms, 100);
  EXPECT_EQ(a.health, AgentHealth::kUnknown);
  EXPECT_EQ(a.last_seen_at, std::nullopt);
}

// Workflow "wf-1" with its version 1, written as an old binary would (any
// schema version).
void InsertWorkflowOne(RawDb& raw) {
  raw.Query("INSERT INTO workflows (id, name, latest_version, created_at, updated_at) VALUES ('wf-1', 'w', 1, 1, 1)");
  raw.Query("INSERT INTO workflow_versions (workflow_id, version, name, plan, created_at) "
            "VALUES ('wf-1', 1, 'w', '{}', 1)");
}

TEST(SqliteMigrationsTest, RunsOfAVersionTwoDatabaseGetNoTraceparentAndATraceIdFromTheirId) {
  std::string path = TempDirEnvironment::NewDbPath();
  {
    RawDb raw(path);
    ASSERT_TRUE(sqlite::ApplyMigrations(raw.get(), sqlite::EmbeddedMigrations().first(2)).ok());
    InsertWorkflowOne(raw);
    raw.Query("INSERT INTO workflow_runs (id, workflow_id, workflow_version, status, input, created_at, updated_at) "
              "VALUES ('run-3f2b8a4c-1d2e-4f5a-8b6c-7d8e9f0a1b2c', 'wf-1', 1, 'PENDING', '{}', 2, 2)");
  }
  auto store = Must(OpenSqliteStore(path));
  af::Run r = Must(store->GetRun("run-3f2b8a4c-1d2e-4f5a-8b6c-7d8e9f0a1b2c"));
  EXPECT_EQ(r.traceparent, "");
  EXPECT_EQ(TraceIdOf(r), "3f2b8a4c1d2e4f5a8b6c7d8e9f0a1b2c");
}

// Migration 7 rebuilds workflow_runs and step_executions (their status
// CHECKs): the rows of a version-6 database, their foreign keys and their
// constraints survive it.
TEST(SqliteMigrationsTest, RunsAndStepsOfAVersionSixDatabaseSurviveTheStatusCheckRebuild) {
  std::string path = TempDirEnvironment::NewDbPath();
  {
    RawDb raw(path);
    ASSERT_TRUE(sqlite::ApplyMigrations(raw.get(), sqlite::EmbeddedMigrations().first(6)).ok());
    InsertWorkflowOne(raw);
    raw.Query("INSERT INTO workflow_runs (id, workflow_id, workflow_version, status, input, created_at, updated_at, "
              "lease_owner, lease_token, redispatch_count) "
              "VALUES ('run-1', 'wf-1', 1, 'RUNNING', '{\"a\":1}', 2, 3, 'exec-1', 4, 5)");
    raw.Query("INSERT INTO step_executions (id, run_id, step_id, status, input, output, started_at, completed_at) "
              "VALUES (7, 'run-1', 's1', 'COMPLETED', '{}', '{\"ok\":true}', 3, 4), "
              "(8, 'run-1', 's2', 'RUNNING', '{}', NULL, 4, NULL)");
  }
  auto store = Must(OpenSqliteStore(path));
  af::Run r = Must(store->GetRun("run-1"));
  EXPECT_EQ(r.status, RunStatus::kRunning);
  EXPECT_EQ(r.input, nlohmann::json({{"a", 1}}));
  EXPECT_EQ(r.lease_owner, "exec-1");
  EXPECT_EQ(r.lease_token, 4);
  auto steps = Must(store->ListSteps("run-1"));
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].id, 7);
  EXPECT_EQ(steps[0].output, nlohmann::json({{"ok", true}}));
  EXPECT_EQ(steps[1].status, StepStatus::kRunning);

  RawDb raw(path);
  raw.Query("PRAGMA foreign_keys = ON");
  EXPECT_EQ(raw.Query("SELECT redispatch_count FROM workflow_runs WHERE id = 'run-1'"),
            (std::vector<std::vector<std::string>>{{"5"}}));
  EXPECT_EQ(raw.Query("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN "
                      "('workflow_runs', 'step_executions') AND name NOT LIKE 'sqlite_%' ORDER BY name"),
            (std::vector<std::vector<std::string>>{{"step_executions_run"},
                                                   {"workflow_runs_created"},
                                                   {"workflow_runs_idempotency"},
                                                   {"workflow_runs_lease_owner"},
                                                   {"workflow_runs_status"},
                                                   {"workflow_runs_workflow"}}));
  EXPECT_TRUE(raw.Query("PRAGMA foreign_key_check").empty());
  // The constraints still hold: an unknown status, a step of no run.
  for (const char* bad : {"UPDATE workflow_runs SET status = 'DONE' WHERE id = 'run-1'",
                          "UPDATE step_executions SET status = 'PENDING' WHERE id = 8",
                          "INSERT INTO step_executions (run_id, step_id, status, started_at) "
                          "VALUES ('run-x', 's1', 'RUNNING', 1)"}) {
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(raw.get(), bad, nullptr, nullptr, &err) & 0xff, SQLITE_CONSTRAINT) << bad;
    sqlite3_free(err);
  }
}

// The statements that check a status on every step and every run transition
// build no temporary b-tree (what `status IN (<five constants>)` in a CHECK
// made SQLite do on each execution).
TEST(SqliteMigrationsTest, StatusChecksNeedNoTemporaryTable) {
  std::string path = TempDirEnvironment::NewDbPath();
  RawDb raw(path);
  ASSERT_TRUE(sqlite::ApplyMigrations(raw.get(), sqlite::EmbeddedMigrations()).ok());
  for (const char* sql : {"UPDATE step_executions SET status = 'COMPLETED' WHERE id = 1",
                          "INSERT INTO step_executions (run_id, step_id, status, started_at) VALUES ('r', 's', "
                          "'RUNNING', 1)",
                          "UPDATE workflow_runs SET status = 'COMPLETED' WHERE id = 'r'",
                          "INSERT INTO workflow_runs (id, workflow_id, workflow_version, status, created_at, "
                          "updated_at) VALUES ('r', 'w', 1, 'PENDING', 1, 1)"}) {
    auto plan = raw.Query(std::string("EXPLAIN ") + sql);
    ASSERT_FALSE(plan.empty()) << sql;
    for (const auto& op : plan) EXPECT_NE(op.at(1), "OpenEphemeral") << sql;
  }
}

// A migration may rebuild a table other tables refer to (foreign keys are
// not enforced while migrations run), but one that leaves a row referring to
// nothing applies nothing; enforcement is on again afterwards either way.
TEST(SqliteMigrationsTest, ForeignKeysAreCheckedWhenMigrationsCommit) {
  std::string path = TempDirEnvironment::NewDbPath();
  RawDb raw(path);
  raw.Query("PRAGMA foreign_keys = ON");
  const sqlite::Migration v1[] = {
      {1, "0001_a.sql",
       "CREATE TABLE p (id INTEGER PRIMARY KEY); CREATE TABLE c (p_id INTEGER REFERENCES p (id));"
       "INSERT INTO p VALUES (1); INSERT INTO c VALUES (1);"}};
  ASSERT_TRUE(sqlite::ApplyMigrations(raw.get(), v1).ok());
  const sqlite::Migration rebuild[] = {
      v1[0],
      {2, "0002_rebuild.sql",
       "CREATE TABLE p_new (id INTEGER PRIMARY KEY, x TEXT); INSERT INTO p_new (id) SELECT id FROM p;"
       "DROP TABLE p; ALTER TABLE p_new RENAME TO p;"}};
  Status s = sqlite::ApplyMigrations(raw.get(), rebuild);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(raw.Query("SELECT id, x FROM p"), (std::vector<std::vector<std::string>>{{"1", "NULL"}}));
  EXPECT_EQ(raw.Query("PRAGMA foreign_keys"), (std::vector<std::vector<std::string>>{{"1"}}));

  const sqlite::Migration dangling[] = {rebuild[0], rebuild[1], {3, "0003_drop.sql", "DELETE FROM p;"}};
  s = sqlite::ApplyMigrations(raw.get(), dangling);
  EXPECT_EQ(s.code(), Code::kInternal);
  EXPECT_NE(s.message().find("foreign key"), std::string::npos) << s.message();
  EXPECT_EQ(raw.Query("SELECT id FROM p"), (std::vector<std::vector<std::string>>{{"1"}})) << "rolled back";
  EXPECT_EQ(raw.Query("SELECT max(version) FROM schema_migrations"), (std::vector<std::vector<std::string>>{{"2"}}));
  EXPECT_EQ(raw.Query("PRAGMA foreign_keys"), (std::vector<std::vector<std::string>>{{"1"}}));
  EXPECT_TRUE(sqlite3_get_autocommit(raw.get())) << "no transaction left open";
}

TEST(SqliteMigrationsTest, ReapplyingAppliesOnlyNewOnes) {
  std::string path = TempDirEnvironment::NewDbPath();
  RawDb raw(path);
  // Not idempotent SQL: running a migration twice would fail.
  const sqlite::Migration v1[] = {{1, "0001_a.sql", "CREATE TABLE a (x INTEGER);"}};
  const sqlite::Migration v2[] = {{1, "0001_a.sql", "CREATE TABLE a (x INTEGER);"},
                                  {2, "0002_b.sql", "CREATE TABLE b (y TEXT); INSERT INTO b VALUES ('seed');"}};
  ASSERT_TRUE(sqlite::ApplyMigrations(raw.get(), v1).ok());
  ASSERT_TRUE(sqlite::ApplyMigrations(raw.get(), v1).ok());
  EXPECT_TRUE(raw.HasTable("a"));
  EXPECT_FALSE(raw.HasTable("b"));
  Status s = sqlite::ApplyMigrations(raw.get(), v2);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(raw.HasTable("b"));
  EXPECT_EQ(raw.Query("SELECT y FROM b").size(), 1u);
  ASSERT_TRUE(sqlite::ApplyMigrations(raw.get(), v2).ok());
  EXPECT_EQ(raw.Query("SELECT y FROM b").size(), 1u) << "not applied twice";
  EXPECT_EQ(raw.Query("SELECT version FROM schema_migrations ORDER BY version"),
            (std::vector<std::vector<std::string>>{{"1"}, {"2"}}));
}

TEST(SqliteMigrationsTest, AFailingMigrationAppliesNothing) {
  std::string path = TempDirEnvironment::NewDbPath();
  RawDb raw(path);
  const sqlite::Migration ms[] = {{1, "0001_a.sql", "CREATE TABLE a (x INTEGER);"},
                                  {2, "0002_b.sql", "CREATE TABLE b (y TEXT); THIS IS NOT SQL;"}};
  Status s = sqlite::ApplyMigrations(raw.get(), ms);
  EXPECT_EQ(s.code(), Code::kInternal);
  EXPECT_NE(s.message().find("0002_b.sql"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("syntax error"), std::string::npos) << s.message();
  EXPECT_FALSE(raw.HasTable("a"));
  EXPECT_FALSE(raw.HasTable("b"));
  EXPECT_FALSE(raw.HasTable("schema_migrations"));
  EXPECT_TRUE(sqlite3_get_autocommit(raw.get())) << "no transaction left open";
}

TEST(SqliteMigrationsTest, ANewerDatabaseIsRefused) {
  std::string path = TempDirEnvironment::NewDbPath();
  RawDb raw(path);
  const sqlite::Migration v2[] = {{1, "0001_a.sql", "CREATE TABLE a (x);"}, {2, "0002_b.sql", "CREATE TABLE b (y);"}};
  ASSERT_TRUE(sqlite::ApplyMigrations(raw.get(), v2).ok());
  Status s = sqlite::ApplyMigrations(raw.get(), std::span(v2, 1));
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("Hint:"), std::string::npos);
}

TEST(SqliteMigrationsTest, OutOfOrderListIsABug) {
  RawDb raw(":memory:");
  const sqlite::Migration ms[] = {{2, "0002_b.sql", "SELECT 1;"}, {1, "0001_a.sql", "SELECT 1;"}};
  EXPECT_EQ(sqlite::ApplyMigrations(raw.get(), ms).code(), Code::kInternal);
}

TEST(SqliteMigrationsTest, ConcurrentOpenersApplyOnce) {
  std::string path = TempDirEnvironment::NewDbPath();
  constexpr int kOpeners = 4;
  std::latch go(kOpeners);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < kOpeners; ++i) {
    threads.emplace_back([&] {
      go.arrive_and_wait();
      auto store = OpenSqliteStore(path);
      if (store.ok()) {
        ++ok;
      } else {
        ADD_FAILURE() << store.status().ToString();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kOpeners);
  RawDb raw(path);
  EXPECT_EQ(raw.Query("SELECT version FROM schema_migrations").size(), sqlite::EmbeddedMigrations().size());
}

// ---------------------------------------------------------------- errors

TEST(SqliteStoreTest, BusyAndLockedAreRetryable) {
  for (int rc : {SQLITE_BUSY, SQLITE_LOCKED, SQLITE_BUSY_SNAPSHOT, SQLITE_BUSY_TIMEOUT}) {
    Status s = sqlite::SqliteError(nullptr, rc, "write");
    EXPECT_EQ(s.code(), Code::kUnavailable) << rc;
    EXPECT_TRUE(s.IsRetryable());
  }
  for (int rc : {SQLITE_CORRUPT, SQLITE_IOERR, SQLITE_FULL, SQLITE_ERROR}) {
    Status s = sqlite::SqliteError(nullptr, rc, "write");
    EXPECT_EQ(s.code(), Code::kInternal) << rc;
    EXPECT_NE(s.message().find(sqlite3_errstr(rc)), std::string::npos) << s.message();
  }
}

TEST(SqliteStoreTest, UnopenablePathIsInvalidArgument) {
  auto store = OpenSqliteStore("/nonexistent-dir-for-agentflow/x/y.sqlite");
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kInvalidArgument) << store.status().ToString();
}

TEST(SqliteStoreTest, NotADatabaseFails) {
  std::string path = TempDirEnvironment::NewDbPath();
  {
    FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("this is not a SQLite database, just some text long enough to have a header......", f);
    std::fclose(f);
  }
  auto store = OpenSqliteStore(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kInternal) << store.status().ToString();
}

// ---------------------------------------------------------------- two connections

// Two stores on one file behave like two processes: the compare-and-set and
// the idempotency key hold across connections, not just inside one.
TEST(SqliteStoreTest, TwoConnectionsShareOneDatabase) {
  std::string path = TempDirEnvironment::NewDbPath();
  std::unique_ptr<Store> a = Must(OpenSqliteStore(path));
  std::unique_ptr<Store> b = Must(OpenSqliteStore(path));
  Workflow wf = Must(a->CreateWorkflow(NewWorkflow{"shared", "", json::object()}));
  EXPECT_EQ(Must(b->GetWorkflowByName("shared")).id, wf.id);
  EXPECT_EQ(b->CreateWorkflow(NewWorkflow{"shared", "", json::object()}).status().code(), Code::kAlreadyExists);

  for (int round = 0; round < 10; ++round) {
    std::string key = "k" + std::to_string(round);
    std::latch go(2);
    Result<Store::CreatedRun> ra = Status::Internal("unset"), rb = Status::Internal("unset");
    std::thread ta([&] {
      go.arrive_and_wait();
      ra = a->CreateRun(NewRun{"", wf.id, 1, json::object(), key});
    });
    std::thread tb([&] {
      go.arrive_and_wait();
      rb = b->CreateRun(NewRun{"", wf.id, 1, json::object(), key});
    });
    ta.join();
    tb.join();
    ASSERT_TRUE(ra.ok()) << ra.status().ToString();
    ASSERT_TRUE(rb.ok()) << rb.status().ToString();
    EXPECT_EQ(ra->run.id, rb->run.id);
    EXPECT_EQ(ra->created + rb->created, 1);

    std::latch go2(2);
    Result<af::Run> wa = Status::Internal("unset"), wb = Status::Internal("unset");
    std::string id = ra->run.id;
    std::thread tc([&] {
      go2.arrive_and_wait();
      wa = a->TransitionRun({id, RunStatus::kPending, RunStatus::kRunning});
    });
    std::thread td([&] {
      go2.arrive_and_wait();
      wb = b->TransitionRun({id, RunStatus::kPending, RunStatus::kRunning});
    });
    tc.join();
    td.join();
    EXPECT_EQ(wa.ok() + wb.ok(), 1) << wa.status().ToString() << " / " << wb.status().ToString();
    const Status& loser = wa.ok() ? wb.status() : wa.status();
    EXPECT_EQ(loser.code(), Code::kFailedPrecondition) << loser.ToString();
  }
}

// ---------------------------------------------------------------- OpenStore

TEST(OpenStoreTest, SelectsTheBackendFromTheUrl) {
  auto memory = OpenStore(StoreOptions{});
  ASSERT_TRUE(memory.ok()) << memory.status().ToString();
  EXPECT_TRUE((*memory)->Ping().ok());

  std::string path = TempDirEnvironment::NewDbPath();
  auto file = OpenStore(StoreOptions{"sqlite://" + path, true});
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_TRUE(fs::exists(path));

  // postgresql:// selects PostgreSQL: nothing listens on port 1, so the
  // open fails as a connection problem, not as an unknown URL.
  auto pg = OpenStore(StoreOptions{"postgresql://u@127.0.0.1:1/db", false});
  ASSERT_FALSE(pg.ok());
  EXPECT_EQ(pg.status().code(), Code::kUnavailable) << pg.status().ToString();
}

}  // namespace
}  // namespace af
