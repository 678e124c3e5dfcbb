// PostgresStore against a real PostgreSQL 15 (tests/support/pg_server.h):
// the Store conformance suite, plus what only this backend has: migrations
// under concurrency, the connection pool, recovery after a server restart,
// parameterisation, and text PostgreSQL cannot store.
#include "storage/postgres/postgres_store.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <latch>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/time.h"
#include "storage/postgres/migrations.h"
#include "storage/store_conformance.h"
#include "support/pg_server.h"

namespace af {
namespace {

using test::PgServer;
using namespace std::chrono_literals;
// testing::Test::Run() would otherwise hide af::Run in TEST bodies.
using RunRecord = ::af::Run;

// ---------------------------------------------------------------- conformance

// The shared server's database, emptied before each test: as isolated as a
// new database, and much cheaper.
Result<std::unique_ptr<Store>> OpenConformanceStore() {
  auto pg = PgServer::Shared();
  if (!pg.ok()) return pg.status();
  auto url = (*pg)->CleanDatabase((*pg)->database());
  if (!url.ok()) return url.status();
  PostgresOptions o;
  o.url = *url;
  o.notify_run_ends = true;  // ListenForRunEndsWakesWhenARunEnds (the default is off)
  return OpenPostgresStore(o);
}

INSTANTIATE_TEST_SUITE_P(Postgres, StoreConformance, ::testing::Values(StoreBackend{"pg", OpenConformanceStore}),
                         StoreBackendName);

// ---------------------------------------------------------------- helpers

#define ASSERT_OK(expr)                                        \
  do {                                                         \
    const ::af::Status& af_s_ = (expr);                        \
    ASSERT_TRUE(af_s_.ok()) << #expr ": " << af_s_.ToString(); \
  } while (0)

template <typename T>
T Must(Result<T> r, const char* what = "call") {
  if (!r.ok()) throw std::runtime_error(std::string(what) + " failed: " + r.status().ToString());
  return std::move(r).value();
}

std::string DbName(const std::string& url) { return url.substr(url.rfind('/') + 1); }

std::vector<std::pair<std::string, std::string>> EmbeddedVersions() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& m : postgres::EmbeddedMigrations()) out.emplace_back(std::to_string(m.version), m.name);
  return out;
}

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pg = PgServer::Shared();
    ASSERT_TRUE(pg.ok()) << pg.status().ToString();
    pg_ = *pg;
  }

  std::string NewDb() { return Must(pg_->NewDatabase(), "NewDatabase"); }

  std::vector<std::vector<std::string>> Query(const std::string& url, const std::string& sql) {
    return Must(pg_->Query(DbName(url), sql), "Query");
  }

  std::vector<std::pair<std::string, std::string>> RecordedVersions(const std::string& url) {
    std::vector<std::pair<std::string, std::string>> out;
    for (auto& row : Query(url, "SELECT version, name FROM schema_migrations ORDER BY version")) {
      out.emplace_back(row[0], row[1]);
    }
    return out;
  }

  // A pg_stat_database column of `db` (-1 if it has no row), read from
  // another database so that the read is not counted in db's figures.
  int64_t DbStat(const std::string& db, const char* column) {
    auto rows = Must(pg_->Query("postgres", std::string("SELECT ") + column +
                                                " FROM pg_stat_database WHERE datname = '" + db + "'"),
                     "Query");
    return rows.empty() ? int64_t{-1} : std::stoll(rows[0][0]);
  }

  // DbStat once it settled: a session's statistics arrive when its server
  // process ends, so wait (bounded) until the column reaches `least`, then
  // until it holds still.
  int64_t SettledDbStat(const std::string& db, const char* column, int64_t least) {
    int64_t now = DbStat(db, column);
    for (int i = 0; i < 100 && now < least; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      now = DbStat(db, column);
    }
    for (int i = 0; i < 20; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      int64_t again = DbStat(db, column);
      if (again == now) break;
      now = again;
    }
    return now;
  }

  static std::unique_ptr<Store> Open(const std::string& url, int pool_size = 8) {
    PostgresOptions o;
    o.url = url;
    o.pool_size = pool_size;
    return Must(OpenPostgresStore(o), "OpenPostgresStore");
  }

  PgServer* pg_ = nullptr;
};

Workflow MakeWorkflow(Store& store, const std::string& name) {
  return Must(store.CreateWorkflow(NewWorkflow{name, "", json{{"steps", json::array()}}}), "CreateWorkflow");
}

// ---------------------------------------------------------------- migrations

TEST_F(PostgresStoreTest, MigrationsAreRecordedAndIdempotent) {
  std::string url = NewDb();
  std::vector<std::string> applied;
  ASSERT_OK(MigratePostgres(url, &applied));
  std::vector<std::string> names;
  for (const auto& m : postgres::EmbeddedMigrations()) names.push_back(m.name);
  EXPECT_EQ(applied, names);
  EXPECT_EQ(RecordedVersions(url), EmbeddedVersions());
  auto when = Query(url, "SELECT applied_at FROM schema_migrations ORDER BY version");

  // Again, and through an open: nothing more is applied or recorded.
  applied.clear();
  ASSERT_OK(MigratePostgres(url, &applied));
  EXPECT_TRUE(applied.empty());
  auto store = Open(url);
  EXPECT_EQ(RecordedVersions(url), EmbeddedVersions());
  EXPECT_EQ(Query(url, "SELECT applied_at FROM schema_migrations ORDER BY version"), when);

  // The schema: the contract's tables; JSON as text (jsonb cannot hold
  // U+0000); ids ordered bytewise whatever the database collation.
  for (const char* table : {"workflows", "workflow_versions", "workflow_runs", "step_executions", "agents"}) {
    EXPECT_EQ(Query(url, std::string("SELECT to_regclass('") + table + "') IS NOT NULL")[0][0], "t") << table;
  }
  EXPECT_EQ(Query(url,
                  "SELECT data_type, collation_name FROM information_schema.columns "
                  "WHERE table_name = 'workflow_runs' AND column_name IN ('input', 'id') ORDER BY column_name"),
            (std::vector<std::vector<std::string>>{{"text", "C"}, {"text", ""}}));
}

TEST_F(PostgresStoreTest, ConcurrentMigrationsOfAnEmptyDatabaseAllSucceed) {
  constexpr int kMigrators = 6;
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::string url = NewDb();
    std::latch go(kMigrators + 2);
    std::vector<Status> results(kMigrators);
    std::vector<std::vector<std::string>> applied(kMigrators);
    std::vector<Result<std::unique_ptr<Store>>> opened;
    for (int i = 0; i < 2; ++i) opened.emplace_back(Status::Internal("not run"));
    std::vector<std::thread> threads;
    for (int i = 0; i < kMigrators; ++i) {
      threads.emplace_back([&, i] {
        go.arrive_and_wait();
        results[i] = MigratePostgres(url, &applied[i]);
      });
    }
    for (int i = 0; i < 2; ++i) {  // stores opening at the same time migrate too
      threads.emplace_back([&, i] {
        PostgresOptions o;
        o.url = url;
        go.arrive_and_wait();
        opened[i] = OpenPostgresStore(o);
      });
    }
    for (auto& t : threads) t.join();
    size_t applied_total = 0;
    for (int i = 0; i < kMigrators; ++i) {
      EXPECT_TRUE(results[i].ok()) << results[i].ToString();
      applied_total += applied[i].size();
    }
    for (auto& o : opened) ASSERT_TRUE(o.ok()) << o.status().ToString();
    EXPECT_LE(applied_total, postgres::EmbeddedMigrations().size()) << "each migration applied once";
    EXPECT_EQ(RecordedVersions(url), EmbeddedVersions());
    Workflow wf = MakeWorkflow(**opened[0], "wf");
    EXPECT_EQ(Must((*opened[1])->GetWorkflow(wf.id)).name, "wf");
  }
}

TEST_F(PostgresStoreTest, FailedMigrationAppliesNothing) {
  std::string url = NewDb();
  PGconn* conn = PQconnectdb(url.c_str());
  ASSERT_EQ(PQstatus(conn), CONNECTION_OK) << PQerrorMessage(conn);
  const postgres::Migration broken[] = {
      {1, "0001_good.sql", "CREATE TABLE good (x int);"},
      {2, "0002_bad.sql", "CREATE TABLE bad (x int); SELECT no_such_column FROM good;"},
  };
  Status s = postgres::ApplyMigrations(conn, broken, nullptr);
  EXPECT_EQ(s.code(), Code::kInternal) << s.ToString();
  EXPECT_NE(s.message().find("0002_bad.sql"), std::string::npos) << s.message();
  EXPECT_EQ(PQtransactionStatus(conn), PQTRANS_IDLE) << "rolled back";
  for (const char* table : {"good", "bad", "schema_migrations"}) {
    EXPECT_EQ(Query(url, std::string("SELECT to_regclass('") + table + "') IS NULL")[0][0], "t") << table;
  }
  const postgres::Migration unordered[] = {{2, "0002_a.sql", "SELECT 1"}, {1, "0001_b.sql", "SELECT 1"}};
  EXPECT_EQ(postgres::ApplyMigrations(conn, unordered, nullptr).code(), Code::kInternal);
  PQfinish(conn);
}

TEST_F(PostgresStoreTest, OpenWithoutMigrationsNeedsAMigratedDatabase) {
  std::string url = NewDb();
  PostgresOptions o;
  o.url = url;
  o.apply_migrations = false;
  auto refused = OpenPostgresStore(o);
  ASSERT_EQ(refused.status().code(), Code::kFailedPrecondition) << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("agentflow migrate"), std::string::npos) << refused.status().message();
  EXPECT_EQ(Query(url, "SELECT to_regclass('workflows') IS NULL")[0][0], "t") << "nothing was created";

  ASSERT_OK(MigratePostgres(url));
  auto store = OpenPostgresStore(o);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  MakeWorkflow(**store, "ready");
}

TEST_F(PostgresStoreTest, NewerSchemaIsRefused) {
  std::string url = NewDb();
  ASSERT_OK(MigratePostgres(url));
  ASSERT_OK(pg_->Exec(DbName(url), "INSERT INTO schema_migrations VALUES (9999, '9999_future.sql', 0)"));
  Status s = MigratePostgres(url);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("9999"), std::string::npos) << s.message();
  PostgresOptions o;
  o.url = url;
  EXPECT_EQ(OpenPostgresStore(o).status().code(), Code::kFailedPrecondition);
  o.apply_migrations = false;
  EXPECT_EQ(OpenPostgresStore(o).status().code(), Code::kFailedPrecondition);
}

// ---------------------------------------------------------------- opening

TEST_F(PostgresStoreTest, OpenErrorsSayWhatIsWrong) {
  PostgresOptions o;
  o.url = "postgresql://postgres@127.0.0.1:5432/db?no_such_option=1";
  EXPECT_EQ(OpenPostgresStore(o).status().code(), Code::kInvalidArgument);

  o.url = "postgresql://someone:s3cret@127.0.0.1:1/db";  // nothing listens on port 1
  auto refused = OpenPostgresStore(o);
  ASSERT_EQ(refused.status().code(), Code::kUnavailable) << refused.status().ToString();
  EXPECT_TRUE(refused.status().IsRetryable());
  EXPECT_NE(refused.status().message().find("cannot connect to someone@127.0.0.1:1/db"), std::string::npos)
      << refused.status().message();
  EXPECT_EQ(refused.status().message().find("s3cret"), std::string::npos) << "no password in messages";

  o.url = pg_->UrlFor("no_such_database");
  auto missing = OpenPostgresStore(o);
  ASSERT_EQ(missing.status().code(), Code::kUnavailable);
  EXPECT_NE(missing.status().message().find("does not exist"), std::string::npos) << missing.status().message();

  o.url = NewDb();
  o.pool_size = 0;
  EXPECT_EQ(OpenPostgresStore(o).status().code(), Code::kInvalidArgument);

  ASSERT_OK(pg_->Exec("postgres",
                      "CREATE DATABASE latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
                      "TEMPLATE template0"));
  o.url = pg_->UrlFor("latin1");
  o.pool_size = 8;
  auto latin1 = OpenPostgresStore(o);
  ASSERT_EQ(latin1.status().code(), Code::kFailedPrecondition) << latin1.status().ToString();
  EXPECT_NE(latin1.status().message().find("UTF8"), std::string::npos);
}

TEST_F(PostgresStoreTest, OpenStoreDispatchesPostgresUrls) {
  std::string url = NewDb();
  for (std::string scheme : {"postgresql://", "postgres://"}) {
    SCOPED_TRACE(scheme);
    StoreOptions o;
    o.url = scheme + url.substr(std::string("postgresql://").size());
    auto store = OpenStore(o);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    MakeWorkflow(**store, "via-" + scheme.substr(0, scheme.size() - 3));
  }
  EXPECT_EQ(Query(url, "SELECT count(*) FROM workflows")[0][0], "2");
}

// ---------------------------------------------------------------- the pool

// ApplyRunWrites sends a batch as one pipelined implicit transaction and
// falls back to op-by-op statements only when that transaction fails (a
// fence or compare-and-set that matched nothing). Batches that succeed must
// take the one-round-trip path: the database then counts no rolled-back
// transaction for them (the fallback always leaves one). The conformance
// suite checks the results; this checks the path.
TEST_F(PostgresStoreTest, SuccessfulRunWriteBatchesAreNeverRolledBack) {
  const std::string url = NewDb();
  const std::string db = DbName(url);
  auto stat = [&](const char* column) { return DbStat(db, column); };
  RunRecord run;
  {
    auto store = Open(url, 1);
    Workflow wf = MakeWorkflow(*store, "batches");
    NewRun nr;
    nr.workflow_id = wf.id;
    nr.workflow_version = wf.version;
    run = Must(store->CreateRun(nr), "CreateRun").run;
  }  // closing the store ends its server process, which flushes its statistics
  std::this_thread::sleep_for(200ms);
  const int64_t rollbacks = stat("xact_rollback");
  const int64_t commits = stat("xact_commit");
  constexpr int kSteps = 20;
  {
    auto store = Open(url, 1);
    RunLease lease = Must(store->AcquireRunLease(run.id, "owner", 60000), "acquire");
    StepExecution row;
    row.run_id = run.id;
    row.agent_name = "echo";
    row.status = StepStatus::kRunning;
    RunWrites start{run.id, lease.token, {}};
    start.ops.push_back(RunWrite::Transition(RunTransition{run.id, RunStatus::kPending, RunStatus::kRunning}));
    row.step_id = "s0";
    start.ops.push_back(RunWrite::Insert(row));
    int64_t step = Must(store->ApplyRunWrites(start), "start").step_ids[1];
    for (int i = 1; i < kSteps; ++i) {
      RunWrites next{run.id, lease.token, {}};
      next.ops.push_back(RunWrite::Finish(StepFinish{run.id, step, StepStatus::kCompleted, json{{"i", i}}, ""}));
      row.step_id = "s" + std::to_string(i);
      next.ops.push_back(RunWrite::Insert(row));
      RunWritesResult r = Must(store->ApplyRunWrites(next), "step");
      ASSERT_GT(r.step_ids[1], step);
      step = r.step_ids[1];
    }
    RunWrites end{run.id, lease.token, {}};
    end.ops.push_back(RunWrite::Finish(StepFinish{run.id, step, StepStatus::kCompleted, json{{"i", kSteps}}, ""}));
    end.ops.push_back(RunWrite::Transition(RunTransition{run.id, RunStatus::kRunning, RunStatus::kCompleted}));
    RunWritesResult done = Must(store->ApplyRunWrites(end), "end");
    ASSERT_TRUE(done.run.has_value());
    EXPECT_EQ(done.run->status, RunStatus::kCompleted);
    EXPECT_EQ(Must(store->ListSteps(run.id), "ListSteps").size(), static_cast<size_t>(kSteps));
  }
  // The batches' commits reach the statistics when the store's server
  // process ends; wait (bounded) for them, then no rollback may be among them.
  for (int i = 0; i < 100 && stat("xact_commit") < commits + kSteps + 1; ++i) std::this_thread::sleep_for(100ms);
  ASSERT_GE(stat("xact_commit"), commits + kSteps + 1) << "the statistics never showed the batches' commits";
  EXPECT_EQ(stat("xact_rollback"), rollbacks) << "a successful batch went through the op-by-op fallback";
}

// Lease renewal and group commits lock the runs' rows in the same (id)
// order, so a renewal of many rows and groups of those runs' writes running
// at once never deadlock. (They did: each deadlock stalled both for
// deadlock_timeout and failed one, in the slow-agents benchmark.) The
// groups come in descending id order, the order most likely to cross.
TEST_F(PostgresStoreTest, LeaseRenewalsAndGroupCommitsNeverDeadlock) {
  const std::string url = NewDb();
  const std::string db = DbName(url);
  constexpr int kRuns = 200;
  constexpr int kRounds = 15;
  std::atomic<int> renewals{0};
  {
    auto store = Open(url, 4);
    Workflow wf = MakeWorkflow(*store, "locks");
    std::vector<RunWrites> batches(kRuns);
    for (int r = 0; r < kRuns; ++r) {
      NewRun nr;
      nr.workflow_id = wf.id;
      nr.workflow_version = wf.version;
      const std::string id = Must(store->CreateRun(nr), "CreateRun").run.id;
      batches[r].run_id = id;
      batches[r].lease_token = Must(store->AcquireRunLease(id, "owner", 60000), "acquire").token;
    }
    std::vector<const RunWrites*> group;
    for (const RunWrites& w : batches) group.push_back(&w);
    std::sort(group.begin(), group.end(), [](const RunWrites* a, const RunWrites* b) { return a->run_id > b->run_id; });
    std::atomic<bool> stop{false};
    std::thread renewer([&] {
      while (!stop.load()) {
        if (store->RenewRunLeases("owner", 60000).ok()) ++renewals;
      }
    });
    for (int round = 0; round < kRounds; ++round) {
      for (RunWrites& w : batches) {
        StepExecution row;
        row.run_id = w.run_id;
        row.step_id = "s" + std::to_string(round);
        row.agent_name = "echo";
        row.status = StepStatus::kRunning;
        w.ops = {RunWrite::Insert(row)};
      }
      auto res = store->ApplyRunWritesGroup(group);
      ASSERT_EQ(res.size(), group.size());
      for (const auto& r : res) EXPECT_TRUE(r.ok()) << r.status().ToString();
    }
    stop = true;
    renewer.join();
  }
  EXPECT_GT(renewals.load(), 0);
  // The sessions have ended: their statistics arrive shortly.
  EXPECT_EQ(SettledDbStat(db, "deadlocks", 0), 0) << "a renewal and a group commit waited for each other";
}

// ApplyRunWritesGroup commits a group of runs' batches in one transaction:
// the same 10 rounds of 5 runs' batches make about 40 fewer commits as 10
// groups than as 50 single calls, and none rolls back.
TEST_F(PostgresStoreTest, AGroupOfBatchesIsOneTransaction) {
  const std::string url = NewDb();
  const std::string db = DbName(url);
  auto stat = [&](const char* column) { return DbStat(db, column); };
  // At least `least` more commits than `from`, settled.
  auto settled_commits = [&](int64_t from, int64_t least) { return SettledDbStat(db, "xact_commit", from + least); };
  Workflow wf;
  {
    auto store = Open(url, 1);
    wf = MakeWorkflow(*store, "groups");
  }
  constexpr int kRuns = 5;
  constexpr int kRounds = 10;
  // One session: open, kRuns new runs leased, kRounds rounds of one batch
  // per run (as a group or one call each). Returns its commit count.
  auto session = [&](bool grouped) -> int64_t {
    const int64_t before = settled_commits(stat("xact_commit"), 0);
    {
      auto store = Open(url, 1);
      std::vector<RunRecord> runs;
      std::vector<RunWrites> batches(kRuns);
      std::vector<int64_t> steps(kRuns, 0);
      for (int r = 0; r < kRuns; ++r) {
        NewRun nr;
        nr.workflow_id = wf.id;
        nr.workflow_version = wf.version;
        runs.push_back(Must(store->CreateRun(nr), "CreateRun").run);
        RunLease lease = Must(store->AcquireRunLease(runs[r].id, "owner", 60000), "acquire");
        batches[r].run_id = runs[r].id;
        batches[r].lease_token = lease.token;
      }
      for (int round = 0; round < kRounds; ++round) {
        std::vector<const RunWrites*> group;
        for (int r = 0; r < kRuns; ++r) {
          RunWrites& w = batches[r];
          w.ops.clear();
          if (round == 0) {
            w.ops.push_back(RunWrite::Transition(RunTransition{runs[r].id, RunStatus::kPending, RunStatus::kRunning}));
          } else {
            w.ops.push_back(
                RunWrite::Finish(StepFinish{runs[r].id, steps[r], StepStatus::kCompleted, json{{"r", round}}, ""}));
          }
          StepExecution row;
          row.run_id = runs[r].id;
          row.step_id = "s" + std::to_string(round);
          row.agent_name = "echo";
          row.status = StepStatus::kRunning;
          w.ops.push_back(RunWrite::Insert(row));
          group.push_back(&w);
        }
        std::vector<Result<RunWritesResult>> res;
        if (grouped) {
          res = store->ApplyRunWritesGroup(group);
        } else {
          for (const RunWrites* w : group) res.push_back(store->ApplyRunWrites(*w));
        }
        EXPECT_EQ(res.size(), static_cast<size_t>(kRuns));
        for (size_t r = 0; r < res.size(); ++r) {
          if (!res[r].ok()) {
            ADD_FAILURE() << res[r].status().ToString();
            return -1;
          }
          steps[r] = res[r]->step_ids[1];
        }
      }
      for (const RunRecord& run : runs) {
        EXPECT_EQ(Must(store->ListSteps(run.id), "ListSteps").size(), static_cast<size_t>(kRounds));
      }
    }
    return settled_commits(before, kRounds) - before;
  };
  const int64_t rollbacks = stat("xact_rollback");
  const int64_t single = session(false);
  const int64_t grouped = session(true);
  ASSERT_GT(single, 0);
  ASSERT_GT(grouped, 0);
  EXPECT_GE(single - grouped, 30) << "one call each: " << single << " commits; grouped: " << grouped;
  EXPECT_EQ(stat("xact_rollback"), rollbacks);
}

// Migration 0007: a step's result is written in place (HOT) when it is about
// the size of the row's input. The update leaves the row in its page (the
// block of its ctid stays), so no index entry is added. Measured here: 39 of
// 300 rows moved at fillfactor 70, 122 of 300 at the default 100 (the pages
// are full of later rows).
TEST_F(PostgresStoreTest, StepResultsStayInTheirRowsPage) {
  const std::string url = NewDb();
  auto store = Open(url, 1);
  Workflow wf = MakeWorkflow(*store, "hot");
  NewRun nr;
  nr.workflow_id = wf.id;
  nr.workflow_version = wf.version;
  RunRecord run = Must(store->CreateRun(nr), "CreateRun").run;
  RunLease lease = Must(store->AcquireRunLease(run.id, "owner", 60000), "acquire");
  RunWrites start{run.id, lease.token, {}};
  start.ops.push_back(RunWrite::Transition(RunTransition{run.id, RunStatus::kPending, RunStatus::kRunning}));
  constexpr int kSteps = 300;  // several pages
  const std::string payload(120, 'x');
  for (int i = 0; i < kSteps; ++i) {
    StepExecution row;
    row.run_id = run.id;
    row.step_id = "s" + std::to_string(i);
    row.agent_name = "echo";
    row.status = StepStatus::kRunning;
    row.input = json{{"in", payload}};
    start.ops.push_back(RunWrite::Insert(row));
  }
  RunWritesResult started = Must(store->ApplyRunWrites(start), "start");
  auto blocks = [&] {
    std::map<std::string, std::string> out;  // row id -> block of its ctid
    for (auto& row : Query(url, "SELECT id, (ctid::text::point)[0] FROM step_executions")) out[row[0]] = row[1];
    return out;
  };
  const auto before = blocks();
  ASSERT_EQ(before.size(), static_cast<size_t>(kSteps));
  std::set<std::string> pages;
  for (const auto& [id, block] : before) pages.insert(block);
  ASSERT_GE(pages.size(), 3u) << "the rows should span several pages";
  // One result per commit, in order, as a chain of steps writes them.
  for (int i = 0; i < kSteps; ++i) {
    RunWrites w{run.id, lease.token, {}};
    w.ops.push_back(RunWrite::Finish(
        StepFinish{run.id, started.step_ids[1 + i], StepStatus::kCompleted, json{{"out", payload}}, ""}));
    Must(store->ApplyRunWrites(w), "finish");
  }
  const auto after = blocks();
  ASSERT_EQ(after.size(), static_cast<size_t>(kSteps));
  int moved = 0;
  for (const auto& [id, block] : before) moved += after.at(id) != block ? 1 : 0;
  EXPECT_LE(moved, kSteps / 5) << moved << " of " << kSteps << " results moved their row to another page";
}

TEST_F(PostgresStoreTest, PoolServesManyThreadsWithFewConnections) {
  std::string url = NewDb();
  auto store = Open(url, /*pool_size=*/3);
  Workflow wf = MakeWorkflow(*store, "busy");
  constexpr int kThreads = 12;
  constexpr int kRuns = 20;
  std::latch go(kThreads);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      go.arrive_and_wait();
      for (int i = 0; i < kRuns; ++i) {
        auto created = store->CreateRun(NewRun{"", wf.id, 1, json{{"t", t}, {"i", i}}, ""});
        bool ok = created.ok() &&
                  store->TransitionRun({created->run.id, RunStatus::kPending, RunStatus::kRunning}).ok() &&
                  store->GetRun(created->run.id).ok();
        if (!ok) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  RunFilter f;
  f.limit = 1000;
  EXPECT_EQ(Must(store->ListRuns(f)).items.size(), static_cast<size_t>(kThreads * kRuns));
  int open = std::stoi(Query(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = '" + DbName(url) +
                                      "' AND application_name = 'agentflow'")[0][0]);
  EXPECT_GE(open, 1);
  EXPECT_LE(open, 3) << "never more connections than pool_size";
}

TEST_F(PostgresStoreTest, CallsWaitForAFreeConnectionBoundedly) {
  std::string url = NewDb();
  PostgresOptions o;
  o.url = url;
  o.pool_size = 1;
  o.acquire_timeout = 300ms;
  auto store = Must(OpenPostgresStore(o));
  // Another session locks the agents table, so a ListAgents holds the only
  // connection until that session ends.
  PGconn* locker = PQconnectdb(url.c_str());
  ASSERT_EQ(PQstatus(locker), CONNECTION_OK);
  PQclear(PQexec(locker, "BEGIN; LOCK TABLE agents IN ACCESS EXCLUSIVE MODE"));
  std::atomic<bool> listed{false};
  std::thread blocked([&] { listed = store->ListAgents().ok(); });
  // Wait until the ListAgents waits on the lock, i.e. holds the connection.
  for (int i = 0; i < 500; ++i) {
    if (Query(url, "SELECT count(*) FROM pg_locks WHERE NOT granted")[0][0] != "0") break;
    std::this_thread::sleep_for(10ms);
  }
  Status busy = store->Ping();
  EXPECT_EQ(busy.code(), Code::kUnavailable) << busy.ToString();
  EXPECT_NE(busy.message().find("busy"), std::string::npos) << busy.message();
  PQclear(PQexec(locker, "COMMIT"));
  blocked.join();
  PQfinish(locker);
  EXPECT_TRUE(listed.load());
  ASSERT_OK(store->Ping());
}

// ---------------------------------------------------------------- outages

// Calls until one succeeds (at most ~30 s); every failure must be a
// retryable Unavailable. Returns the number of failures.
int CallUntilOk(const std::function<Status()>& call) {
  auto deadline = std::chrono::steady_clock::now() + 30s;
  int failures = 0;
  for (;;) {
    Status s = call();
    if (s.ok()) return failures;
    ++failures;
    EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
    if (s.code() != Code::kUnavailable || std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "no recovery: " << s.ToString();
      return failures;
    }
    std::this_thread::sleep_for(20ms);
  }
}

TEST(PostgresOutageTest, StoreRecoversAfterImmediateRestart) {
  auto pg = PgServer::Launch();  // its own server: restarting the shared one would disturb other tests
  ASSERT_TRUE(pg.ok()) << pg.status().ToString();
  PostgresOptions o;
  o.url = (*pg)->url();
  o.pool_size = 4;
  auto store = Must(OpenPostgresStore(o));
  Workflow wf = MakeWorkflow(*store, "survivor");
  RunRecord run = Must(store->CreateRun(NewRun{"", wf.id, 1, json{{"x", 1}}, ""})).run;
  // Open every pooled connection, so all of them die with the server.
  {
    std::latch go(4);
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([&] {
        go.arrive_and_wait();
        for (int k = 0; k < 20; ++k) EXPECT_TRUE(store->GetRun(run.id).ok());
      });
    }
    for (auto& t : threads) t.join();
  }

  for (int restart = 0; restart < 2; ++restart) {
    SCOPED_TRACE("restart " + std::to_string(restart));
    ASSERT_OK((*pg)->Restart(/*immediate=*/true));
    int failures = CallUntilOk([&] { return store->GetRun(run.id).status(); });
    EXPECT_LE(failures, 4) << "at most one failure per dead connection";
    // Now every connection works again, from several threads at once.
    std::atomic<int> bad{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([&] {
        for (int k = 0; k < 10; ++k) {
          if (!store->GetRun(run.id).ok()) ++bad;
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(bad.load(), 0);
  }
  // What was committed before the crashes is still there; writes work.
  EXPECT_EQ(Must(store->GetRun(run.id)).input, json({{"x", 1}}));
  RunRecord running = Must(store->TransitionRun({run.id, RunStatus::kPending, RunStatus::kRunning}));
  EXPECT_EQ(running.status, RunStatus::kRunning);
}

TEST(PostgresOutageTest, EveryFailureDuringAnOutageIsUnavailable) {
  auto pg = PgServer::Launch();
  ASSERT_TRUE(pg.ok()) << pg.status().ToString();
  PostgresOptions o;
  o.url = (*pg)->url();
  o.pool_size = 3;
  auto store = Must(OpenPostgresStore(o));
  Workflow wf = MakeWorkflow(*store, "hammered");

  // While the server is down: Unavailable, naming the cause.
  ASSERT_OK((*pg)->Stop(/*immediate=*/false));
  Status down = store->Ping();
  EXPECT_EQ(down.code(), Code::kUnavailable) << down.ToString();
  EXPECT_NE(down.message().find("postgres"), std::string::npos) << down.message();
  auto create = store->CreateRun(NewRun{"", wf.id, 1, json::object(), ""});
  EXPECT_EQ(create.status().code(), Code::kUnavailable) << create.status().ToString();
  ASSERT_OK((*pg)->Start());
  EXPECT_EQ(CallUntilOk([&] { return store->Ping(); }), 0) << "idle connections are checked before use";

  // Restarts while four threads keep calling: whatever fails is Unavailable.
  std::atomic<bool> stop{false};
  std::atomic<int> ok_calls{0};
  std::mutex mu;
  std::map<Code, int> failures;
  std::vector<std::string> unexpected;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      int i = 0;
      while (!stop) {
        Status s;
        switch (i++ % 3) {
          case 0:
            s = store->CreateRun(NewRun{"", wf.id, 1, json{{"t", t}}, ""}).status();
            break;
          case 1:
            s = store->ListRuns(RunFilter{}).status();
            break;
          default:
            s = store->Ping();
        }
        if (s.ok()) {
          ++ok_calls;
          continue;
        }
        std::lock_guard<std::mutex> lock(mu);
        ++failures[s.code()];
        if (s.code() != Code::kUnavailable && unexpected.size() < 5) unexpected.push_back(s.ToString());
        std::this_thread::sleep_for(5ms);
      }
    });
  }
  for (bool immediate : {true, false, true}) {
    std::this_thread::sleep_for(100ms);
    ASSERT_OK((*pg)->Restart(immediate));
  }
  std::this_thread::sleep_for(300ms);
  stop = true;
  for (auto& t : threads) t.join();
  for (const auto& [code, n] : failures) EXPECT_EQ(code, Code::kUnavailable) << n << " x " << CodeName(code);
  EXPECT_TRUE(unexpected.empty()) << unexpected.front();
  EXPECT_GT(ok_calls.load(), 0);
  ASSERT_OK(store->Ping());
}

// ---------------------------------------------------------------- values

TEST_F(PostgresStoreTest, SqlInjectionAttemptsAreStoredVerbatim) {
  std::string url = NewDb();
  auto store = Open(url);
  const std::string name = "x'); DROP TABLE workflow_runs; --";
  const std::string description = "'; DELETE FROM workflows; -- $1 %s \\ \"";
  Workflow wf = Must(store->CreateWorkflow(NewWorkflow{name, description, json{{"q", "' OR 1=1 --"}}}));
  EXPECT_EQ(Must(store->GetWorkflowByName(name)).description, description);
  EXPECT_EQ(store->GetWorkflowByName("' OR '1'='1").status().code(), Code::kNotFound);
  EXPECT_EQ(store->GetWorkflow("' OR '1'='1").status().code(), Code::kNotFound);

  // Run ids with every character the text[] literal of ListCancelRequests
  // must quote, and quoting of SQL itself.
  const std::vector<std::string> ids = {
      "run-\"{a,b}\"", "run-\\\\\\", "run-'||(SELECT 1)||'", "run-NULL", "run- spaced ", "run-}{", "run-,"};
  const json input = {{"sql", "'; DROP TABLE agents; --"}, {"$1", "$2"}, {"brace", "{\"a\"}"}};
  for (const std::string& id : ids) {
    Store::CreatedRun created = Must(store->CreateRun(NewRun{id, wf.id, 1, input, "key' OR 'x'='x" + id}));
    ASSERT_TRUE(created.created) << id;
    RunRecord got = Must(store->GetRun(id));
    EXPECT_EQ(got.id, id);
    EXPECT_EQ(got.input, input);
    EXPECT_EQ(got.idempotency_key, "key' OR 'x'='x" + id);
    Must(store->RequestCancel({id, "Robert'); DROP TABLE Students;--", "why\"not'" + id}));
  }
  auto requests = Must(store->ListCancelRequests(ids));
  std::map<std::string, std::string> reasons;
  for (const auto& c : requests) reasons[c.run_id] = c.reason;
  ASSERT_EQ(reasons.size(), ids.size());
  for (const std::string& id : ids) EXPECT_EQ(reasons[id], "why\"not'" + id) << id;
  EXPECT_TRUE(Must(store->ListCancelRequests({"run-\"{a", "b}\""})).empty()) << "elements are not split";

  // Page tokens carry those ids and still page correctly.
  RunFilter f;
  f.limit = 1;
  size_t seen = 0;
  do {
    Page<RunRecord> page = Must(store->ListRuns(f));
    seen += page.items.size();
    f.page_token = page.next_page_token;
  } while (!f.page_token.empty() && seen < 100);
  EXPECT_EQ(seen, ids.size());

  StepExecution e;
  e.run_id = ids[0];
  e.step_id = "s'; --";
  e.agent_name = "a\"; DROP TABLE agents; --";
  e.input = input;
  int64_t step = Must(store->InsertStep(e));
  ASSERT_OK(store->FinishStep({ids[0], step, StepStatus::kFailed, nullptr, "e\\'x\"; --"}));
  StepExecution got = Must(store->ListSteps(ids[0])).at(0);
  EXPECT_EQ(got.step_id, e.step_id);
  EXPECT_EQ(got.agent_name, e.agent_name);
  EXPECT_EQ(got.error_message, "e\\'x\"; --");

  Agent a;
  a.name = "agent'); DELETE FROM agents; --";
  a.url = "http://x/'--";
  a.metadata = input;
  Must(store->CreateAgent(a));
  Agent fetched = Must(store->GetAgent(a.name));
  EXPECT_EQ(fetched.url, a.url);
  EXPECT_EQ(fetched.metadata, input);

  // Everything is still there.
  EXPECT_EQ(Query(url, "SELECT count(*) FROM workflow_runs")[0][0], std::to_string(ids.size()));
  EXPECT_EQ(Query(url, "SELECT count(*) FROM workflows")[0][0], "1");
  EXPECT_EQ(Query(url, "SELECT count(*) FROM agents")[0][0], "1");
}

TEST_F(PostgresStoreTest, TextPostgresCannotStoreIsRefusedOrReplaced) {
  auto store = Open(NewDb());
  const std::string nul("a\0b", 3);
  // Keys: refused, nothing written.
  auto bad_name = store->CreateWorkflow(NewWorkflow{nul, "", json::object()});
  EXPECT_EQ(bad_name.status().code(), Code::kInvalidArgument) << bad_name.status().ToString();
  EXPECT_EQ(store->GetRun("run-\xff").status().code(), Code::kInvalidArgument);
  Agent a;
  a.name = "ok";
  a.url = "http://x/\xc3";
  EXPECT_EQ(store->CreateAgent(a).status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(Must(store->ListAgents()).empty());

  // Free text: stored with U+FFFD instead, so the run still ends.
  Workflow wf = MakeWorkflow(*store, "texts");
  RunRecord run = Must(store->CreateRun(NewRun{"", wf.id, 1, json{{"nul", nul}}, ""})).run;
  Must(store->RequestCancel({run.id, "op\xff", "because " + nul}));
  Must(store->TransitionRun({run.id, RunStatus::kPending, RunStatus::kRunning}));
  RunTransition fail{run.id, RunStatus::kRunning, RunStatus::kFailed};
  fail.error_message = "agent said \xc3\x28 and " + nul;
  RunRecord failed = Must(store->TransitionRun(fail));
  EXPECT_EQ(failed.error_message,
            "agent said \xEF\xBF\xBD( and a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(failed.cancelled_by, "op\xEF\xBF\xBD");
  EXPECT_EQ(failed.cancel_reason,
            "because a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(failed.input, json({{"nul", nul}})) << "JSON keeps U+0000 exactly";
}

}  // namespace
}  // namespace af
