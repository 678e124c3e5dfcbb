#include "storage/store_conformance.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <latch>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <vector>

#include "common/time.h"
#include "model/status_machine.h"

namespace af {
namespace {

// Test helpers throw on failure: GoogleTest reports an exception escaping a
// test body as a failure, with the message, and stops that test.
template <typename T>
T Must(Result<T> r, const char* what = "store call") {
  if (!r.ok()) throw std::runtime_error(std::string(what) + " failed: " + r.status().ToString());
  return std::move(r).value();
}
void MustOk(const Status& s, const char* what = "store call") {
  if (!s.ok()) throw std::runtime_error(std::string(what) + " failed: " + s.ToString());
}

template <typename T>
Code CodeOf(const Result<T>& r) {
  return r.status().code();
}

// Blocks until the wall clock has moved past the current millisecond, so the
// next store write gets a strictly later timestamp than the previous one.
void WaitForNextMs() {
  TimeMs start = NowMs();
  while (NowMs() <= start) std::this_thread::yield();
}

constexpr RunStatus kAllRunStatuses[] = {RunStatus::kPending, RunStatus::kRunning, RunStatus::kCompleted,
                                         RunStatus::kFailed, RunStatus::kCancelled};
constexpr StepStatus kAllStepStatuses[] = {StepStatus::kRunning, StepStatus::kCompleted, StepStatus::kFailed,
                                           StepStatus::kSkipped, StepStatus::kCancelled};

void ExpectSameRun(const Run& a, const Run& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.workflow_id, b.workflow_id);
  EXPECT_EQ(a.workflow_version, b.workflow_version);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.input, b.input);
  EXPECT_EQ(a.output, b.output);
  EXPECT_EQ(a.error_message, b.error_message);
  EXPECT_EQ(a.idempotency_key, b.idempotency_key);
  EXPECT_EQ(a.cancel_requested, b.cancel_requested);
  EXPECT_EQ(a.cancelled_by, b.cancelled_by);
  EXPECT_EQ(a.cancel_reason, b.cancel_reason);
  EXPECT_EQ(a.attempt, b.attempt);
  EXPECT_EQ(a.created_at, b.created_at);
  EXPECT_EQ(a.started_at, b.started_at);
  EXPECT_EQ(a.completed_at, b.completed_at);
  EXPECT_EQ(a.updated_at, b.updated_at);
  EXPECT_EQ(a.traceparent, b.traceparent);
}

void ExpectSameWorkflow(const Workflow& a, const Workflow& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.description, b.description);
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.latest_version, b.latest_version);
  EXPECT_EQ(a.plan, b.plan);
  EXPECT_EQ(a.created_at, b.created_at);
  EXPECT_EQ(a.updated_at, b.updated_at);
}

void ExpectSameStep(const StepExecution& a, const StepExecution& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.run_id, b.run_id);
  EXPECT_EQ(a.step_id, b.step_id);
  EXPECT_EQ(a.item_index, b.item_index);
  EXPECT_EQ(a.agent_name, b.agent_name);
  EXPECT_EQ(a.attempt, b.attempt);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.input, b.input);
  EXPECT_EQ(a.output, b.output);
  EXPECT_EQ(a.error_message, b.error_message);
  EXPECT_EQ(a.started_at, b.started_at);
  EXPECT_EQ(a.completed_at, b.completed_at);
}

void ExpectSameAgent(const Agent& a, const Agent& b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.url, b.url);
  EXPECT_EQ(a.timeout_ms, b.timeout_ms);
  EXPECT_EQ(a.max_concurrency, b.max_concurrency);
  EXPECT_EQ(a.metadata, b.metadata);
  EXPECT_EQ(a.created_at, b.created_at);
  EXPECT_EQ(a.updated_at, b.updated_at);
  EXPECT_EQ(a.transport, b.transport);
  EXPECT_EQ(a.topic, b.topic);
  EXPECT_EQ(a.health_url, b.health_url);
  EXPECT_EQ(a.health, b.health);
  EXPECT_EQ(a.health_error, b.health_error);
  EXPECT_EQ(a.last_seen_at, b.last_seen_at);
  EXPECT_EQ(a.health_checked_at, b.health_checked_at);
}

json SamplePlan(const std::string& tag) {
  return json{{"name", tag},
              {"steps", json::array({json{{"id", "a"}, {"agent", "echo"}, {"input", {{"x", "${input.x}"}}}},
                                     json{{"id", "b"}, {"agent", "echo"}, {"depends_on", {"a"}}}})}};
}

// Newest first, as ListRuns and ListWorkflows order.
bool NewerFirst(TimeMs a_created, const std::string& a_id, TimeMs b_created, const std::string& b_id) {
  return std::tie(a_created, a_id) > std::tie(b_created, b_id);
}

// Every page of runs matching `f`, concatenated; fails on a repeated token.
std::vector<Run> AllRunPages(Store& store, RunFilter f, int* pages = nullptr) {
  std::vector<Run> out;
  std::set<std::string> tokens;
  int n = 0;
  do {
    Page<Run> page = Must(store.ListRuns(f), "ListRuns");
    ++n;
    EXPECT_LE(static_cast<int>(page.items.size()), std::clamp(f.limit, 1, 1000));
    out.insert(out.end(), page.items.begin(), page.items.end());
    if (!page.next_page_token.empty() && !tokens.insert(page.next_page_token).second) {
      ADD_FAILURE() << "page token repeated";
      break;
    }
    f.page_token = page.next_page_token;
  } while (!f.page_token.empty() && n < 10000);
  if (pages) *pages = n;
  return out;
}

std::vector<std::string> Ids(const std::vector<Run>& runs) {
  std::vector<std::string> ids;
  for (const Run& r : runs) ids.push_back(r.id);
  return ids;
}

std::vector<std::string> Ids(const std::vector<Workflow>& wfs) {
  std::vector<std::string> ids;
  for (const Workflow& w : wfs) ids.push_back(w.id);
  return ids;
}

}  // namespace

// ---------------------------------------------------------------- fixture

void StoreConformance::SetUp() {
  auto opened = GetParam().open();
  ASSERT_TRUE(opened.ok()) << "opening a " << GetParam().name << " store: " << opened.status().ToString();
  store_ = std::move(opened).value();
  ASSERT_NE(store_, nullptr);
}

void StoreConformance::TearDown() { store_.reset(); }

Workflow StoreConformance::MakeWorkflow(const std::string& name) {
  std::string n = name.empty() ? "workflow-" + std::to_string(next_name_++) : name;
  return Must(store().CreateWorkflow(NewWorkflow{n, "about " + n, SamplePlan(n)}), "CreateWorkflow");
}

Run StoreConformance::MakeRun(const Workflow& wf, const json& input, const std::string& idempotency_key) {
  NewRun r;
  r.workflow_id = wf.id;
  r.workflow_version = wf.version;
  r.input = input;
  r.idempotency_key = idempotency_key;
  Store::CreatedRun created = Must(store().CreateRun(r), "CreateRun");
  if (!created.created) throw std::runtime_error("CreateRun returned an existing run");
  return created.run;
}

Run StoreConformance::RunIn(const Workflow& wf, RunStatus status) {
  Run run = MakeRun(wf, json{{"x", 1}});
  auto step = [&](RunStatus from, RunStatus to) {
    RunTransition t{run.id, from, to};
    if (to == RunStatus::kCompleted) t.output = json{{"result", "done"}};
    if (to == RunStatus::kFailed) t.error_message = "step a failed";
    if (to == RunStatus::kCancelled) t.error_message = "cancelled by test";
    run = Must(store().TransitionRun(t), "TransitionRun");
  };
  switch (status) {
    case RunStatus::kPending:
      break;
    case RunStatus::kRunning:
      step(RunStatus::kPending, RunStatus::kRunning);
      break;
    case RunStatus::kCompleted:
    case RunStatus::kFailed:
    case RunStatus::kCancelled:
      step(RunStatus::kPending, RunStatus::kRunning);
      step(RunStatus::kRunning, status);
      break;
  }
  return run;
}

int64_t StoreConformance::StartStep(const Run& run, const std::string& step_id, std::optional<int> item_index) {
  StepExecution s;
  s.run_id = run.id;
  s.step_id = step_id;
  s.item_index = item_index;
  s.agent_name = "echo";
  s.status = StepStatus::kRunning;
  s.input = json{{"step", step_id}};
  return Must(store().InsertStep(s), "InsertStep");
}

// ---------------------------------------------------------------- workflows

TEST_P(StoreConformance, CreateWorkflowIsVersionOne) {
  json plan = SamplePlan("first");
  Workflow wf = Must(store().CreateWorkflow(NewWorkflow{"first", "the first one", plan}));
  EXPECT_EQ(wf.id.rfind("wf-", 0), 0u) << wf.id;
  EXPECT_EQ(wf.name, "first");
  EXPECT_EQ(wf.description, "the first one");
  EXPECT_EQ(wf.version, 1);
  EXPECT_EQ(wf.latest_version, 1);
  EXPECT_EQ(wf.plan, plan);
  EXPECT_GT(wf.created_at, 0);
  EXPECT_EQ(wf.updated_at, wf.created_at);

  ExpectSameWorkflow(Must(store().GetWorkflow(wf.id)), wf);
  ExpectSameWorkflow(Must(store().GetWorkflow(wf.id, 1)), wf);
  ExpectSameWorkflow(Must(store().GetWorkflowByName("first")), wf);

  Workflow other = MakeWorkflow();
  EXPECT_NE(other.id, wf.id);
}

TEST_P(StoreConformance, CreateWorkflowRejectsNameOfLiveWorkflow) {
  Workflow wf = MakeWorkflow("taken");
  EXPECT_EQ(CodeOf(store().CreateWorkflow(NewWorkflow{"taken", "", json::object()})), Code::kAlreadyExists);
  // Nothing was written by the failed create.
  EXPECT_EQ(Must(store().ListWorkflows(100, "")).items.size(), 1u);

  // A deleted workflow's name is free again.
  MustOk(store().DeleteWorkflow(wf.id));
  Workflow again = MakeWorkflow("taken");
  EXPECT_NE(again.id, wf.id);
  ExpectSameWorkflow(Must(store().GetWorkflowByName("taken")), again);
  // ... and is taken again by the new one.
  EXPECT_EQ(CodeOf(store().CreateWorkflow(NewWorkflow{"taken", "", json::object()})), Code::kAlreadyExists);
}

TEST_P(StoreConformance, UpdateWorkflowWritesNewVersions) {
  Workflow v1 = MakeWorkflow("orig");
  WaitForNextMs();
  json plan2 = SamplePlan("second");
  Workflow v2 = Must(store().UpdateWorkflow(v1.id, NewWorkflow{"renamed", "desc 2", plan2}));
  EXPECT_EQ(v2.id, v1.id);
  EXPECT_EQ(v2.version, 2);
  EXPECT_EQ(v2.latest_version, 2);
  EXPECT_EQ(v2.name, "renamed");
  EXPECT_EQ(v2.description, "desc 2");
  EXPECT_EQ(v2.plan, plan2);
  EXPECT_EQ(v2.created_at, v1.created_at) << "created_at is when the workflow was first created";
  EXPECT_GT(v2.updated_at, v1.updated_at) << "updated_at is when this version was written";
  Workflow v3 = Must(store().UpdateWorkflow(v1.id, NewWorkflow{"renamed", "desc 3", SamplePlan("third")}));
  EXPECT_EQ(v3.version, 3);

  ExpectSameWorkflow(Must(store().GetWorkflow(v1.id)), v3);
  ExpectSameWorkflow(Must(store().GetWorkflow(v1.id, 3)), v3);
  // Older versions keep their own content but report the latest version.
  Workflow old = Must(store().GetWorkflow(v1.id, 1));
  EXPECT_EQ(old.version, 1);
  EXPECT_EQ(old.latest_version, 3);
  EXPECT_EQ(old.name, "orig");
  EXPECT_EQ(old.description, v1.description);
  EXPECT_EQ(old.plan, v1.plan);
  EXPECT_EQ(old.created_at, v1.created_at);
  EXPECT_EQ(old.updated_at, v1.updated_at);
  Workflow mid = Must(store().GetWorkflow(v1.id, 2));
  EXPECT_EQ(mid.plan, plan2);
  EXPECT_EQ(mid.latest_version, 3);

  std::vector<Workflow> versions = Must(store().ListWorkflowVersions(v1.id));
  ASSERT_EQ(versions.size(), 3u);
  EXPECT_EQ(versions[0].version, 3);
  EXPECT_EQ(versions[1].version, 2);
  EXPECT_EQ(versions[2].version, 1);
  ExpectSameWorkflow(versions[0], v3);
  for (const Workflow& w : versions) EXPECT_EQ(w.latest_version, 3);

  // Names follow the latest version.
  ExpectSameWorkflow(Must(store().GetWorkflowByName("renamed")), v3);
  EXPECT_EQ(CodeOf(store().GetWorkflowByName("orig")), Code::kNotFound);
  Page<Workflow> page = Must(store().ListWorkflows(10, ""));
  ASSERT_EQ(page.items.size(), 1u);
  ExpectSameWorkflow(page.items[0], v3);
}

TEST_P(StoreConformance, UpdateWorkflowErrors) {
  EXPECT_EQ(CodeOf(store().UpdateWorkflow("wf-missing", NewWorkflow{"x", "", json::object()})), Code::kNotFound);

  Workflow a = MakeWorkflow("a");
  Workflow b = MakeWorkflow("b");
  // Taking another live workflow's name fails and writes no version.
  EXPECT_EQ(CodeOf(store().UpdateWorkflow(b.id, NewWorkflow{"a", "", json::object()})), Code::kAlreadyExists);
  EXPECT_EQ(Must(store().GetWorkflow(b.id)).latest_version, 1);
  EXPECT_EQ(CodeOf(store().GetWorkflow(b.id, 2)), Code::kNotFound);
  EXPECT_EQ(Must(store().ListWorkflowVersions(b.id)).size(), 1u);

  // Keeping one's own name is fine.
  EXPECT_EQ(Must(store().UpdateWorkflow(b.id, NewWorkflow{"b", "new", json::object()})).version, 2);

  // A deleted workflow's name can be taken; a deleted workflow cannot be updated.
  MustOk(store().DeleteWorkflow(a.id));
  EXPECT_EQ(Must(store().UpdateWorkflow(b.id, NewWorkflow{"a", "", json::object()})).name, "a");
  EXPECT_EQ(CodeOf(store().UpdateWorkflow(a.id, NewWorkflow{"zzz", "", json::object()})), Code::kNotFound);
}

TEST_P(StoreConformance, GetWorkflowNotFound) {
  EXPECT_EQ(CodeOf(store().GetWorkflow("wf-missing")), Code::kNotFound);
  EXPECT_EQ(CodeOf(store().GetWorkflow("wf-missing", 1)), Code::kNotFound);
  EXPECT_EQ(CodeOf(store().GetWorkflowByName("missing")), Code::kNotFound);
  EXPECT_EQ(CodeOf(store().ListWorkflowVersions("wf-missing")), Code::kNotFound);
  Workflow wf = MakeWorkflow();
  for (int v : {0, 2, -1, std::numeric_limits<int>::max()}) {
    EXPECT_EQ(CodeOf(store().GetWorkflow(wf.id, v)), Code::kNotFound) << "version " << v;
  }
}

TEST_P(StoreConformance, DeleteWorkflowKeepsVersionsForRuns) {
  Workflow wf = MakeWorkflow("doomed");
  Workflow v2 = Must(store().UpdateWorkflow(wf.id, NewWorkflow{"doomed", "v2", SamplePlan("v2")}));
  Run run = MakeRun(v2);
  Workflow keep = MakeWorkflow("kept");

  MustOk(store().DeleteWorkflow(wf.id));
  EXPECT_EQ(store().DeleteWorkflow(wf.id).code(), Code::kNotFound) << "already deleted";
  EXPECT_EQ(store().DeleteWorkflow("wf-missing").code(), Code::kNotFound);

  EXPECT_EQ(CodeOf(store().GetWorkflow(wf.id)), Code::kNotFound) << "no version given: deleted means gone";
  EXPECT_EQ(CodeOf(store().GetWorkflowByName("doomed")), Code::kNotFound);
  EXPECT_EQ(CodeOf(store().ListWorkflowVersions(wf.id)), Code::kNotFound);
  // An explicit version is still served: runs keep theirs.
  ExpectSameWorkflow(Must(store().GetWorkflow(wf.id, 2)), v2);
  EXPECT_EQ(Must(store().GetWorkflow(wf.id, 1)).plan, wf.plan);
  ExpectSameRun(Must(store().GetRun(run.id)), run);
  EXPECT_EQ(CodeOf(store().GetWorkflow(wf.id, 3)), Code::kNotFound);

  Page<Workflow> page = Must(store().ListWorkflows(100, ""));
  ASSERT_EQ(page.items.size(), 1u);
  EXPECT_EQ(page.items[0].id, keep.id);
}

TEST_P(StoreConformance, ListWorkflowsPagesNewestFirst) {
  std::vector<Workflow> made;
  for (int i = 0; i < 7; ++i) {
    made.push_back(MakeWorkflow());
    if (i == 3) WaitForNextMs();  // both ties and distinct timestamps
  }
  // An update writes a new version but does not move the workflow: order is
  // by creation, so pages stay stable while workflows are edited.
  made[0] = Must(store().UpdateWorkflow(made[0].id, NewWorkflow{made[0].name, "v2", SamplePlan("v2")}));
  MustOk(store().DeleteWorkflow(made[5].id));
  std::vector<Workflow> expected;
  for (size_t i = 0; i < made.size(); ++i) {
    if (i != 5) expected.push_back(made[i]);
  }
  std::sort(expected.begin(), expected.end(), [](const Workflow& a, const Workflow& b) {
    return NewerFirst(a.created_at, a.id, b.created_at, b.id);
  });

  std::vector<Workflow> got;
  std::string token;
  int pages = 0;
  do {
    Page<Workflow> page = Must(store().ListWorkflows(2, token));
    EXPECT_LE(page.items.size(), 2u);
    got.insert(got.end(), page.items.begin(), page.items.end());
    token = page.next_page_token;
    ++pages;
  } while (!token.empty() && pages < 100);
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(Ids(got), Ids(expected));
  for (size_t i = 0; i < got.size(); ++i) ExpectSameWorkflow(got[i], expected[i]);  // made[0] at version 2
}

TEST_P(StoreConformance, ListWorkflowsStableWhileCreating) {
  std::vector<std::string> before;
  for (int i = 0; i < 6; ++i) before.push_back(MakeWorkflow().id);
  Page<Workflow> first = Must(store().ListWorkflows(3, ""));
  ASSERT_EQ(first.items.size(), 3u);
  ASSERT_FALSE(first.next_page_token.empty());
  WaitForNextMs();
  Workflow late = MakeWorkflow();  // newer than every listed one
  Page<Workflow> second = Must(store().ListWorkflows(3, first.next_page_token));
  std::vector<std::string> seen = Ids(first.items);
  for (const Workflow& w : second.items) seen.push_back(w.id);
  if (!second.next_page_token.empty()) {
    for (const Workflow& w : Must(store().ListWorkflows(3, second.next_page_token)).items) seen.push_back(w.id);
  }
  std::sort(seen.begin(), seen.end());
  std::sort(before.begin(), before.end());
  EXPECT_EQ(seen, before) << "no duplicates, no omissions, the new workflow not in later pages";
  EXPECT_EQ(Must(store().ListWorkflows(1, "")).items.at(0).id, late.id);
}

TEST_P(StoreConformance, ListWorkflowsLimitIsClamped) {
  Page<Workflow> empty = Must(store().ListWorkflows(10, ""));
  EXPECT_TRUE(empty.items.empty());
  EXPECT_TRUE(empty.next_page_token.empty());
  for (int i = 0; i < 3; ++i) MakeWorkflow();
  for (int limit : {0, -5, std::numeric_limits<int>::min()}) {
    Page<Workflow> p = Must(store().ListWorkflows(limit, ""));
    EXPECT_EQ(p.items.size(), 1u) << "limit " << limit << " acts as 1";
    EXPECT_FALSE(p.next_page_token.empty());
  }
  for (int limit : {3, 1000, 1001, std::numeric_limits<int>::max()}) {
    Page<Workflow> p = Must(store().ListWorkflows(limit, ""));
    EXPECT_EQ(p.items.size(), 3u) << "limit " << limit;
    EXPECT_TRUE(p.next_page_token.empty()) << "limit " << limit;
  }
}

TEST_P(StoreConformance, MalformedPageTokensAreInvalidArgument) {
  Workflow wf = MakeWorkflow();
  MakeRun(wf);
  for (const std::string& token :
       std::vector<std::string>{"not a token!", "%%%", "\x01\x02", "====", std::string(5000, '!')}) {
    EXPECT_EQ(CodeOf(store().ListWorkflows(10, token)), Code::kInvalidArgument) << token;
    RunFilter f;
    f.page_token = token;
    EXPECT_EQ(CodeOf(store().ListRuns(f)), Code::kInvalidArgument) << token;
  }
}

// ---------------------------------------------------------------- runs

TEST_P(StoreConformance, CreateRunIsPending) {
  Workflow wf = MakeWorkflow();
  TimeMs before = NowMs();
  json input{{"x", 42}, {"nested", {{"list", {1, 2, 3}}}}};
  Store::CreatedRun created = Must(store().CreateRun(NewRun{"", wf.id, 1, input, ""}));
  EXPECT_TRUE(created.created);
  const Run& run = created.run;
  EXPECT_EQ(run.id.rfind("run-", 0), 0u) << run.id;
  EXPECT_EQ(run.workflow_id, wf.id);
  EXPECT_EQ(run.workflow_version, 1);
  EXPECT_EQ(run.status, RunStatus::kPending);
  EXPECT_EQ(run.input, input);
  EXPECT_TRUE(run.output.is_null());
  EXPECT_EQ(run.error_message, "");
  EXPECT_EQ(run.idempotency_key, "");
  EXPECT_FALSE(run.cancel_requested);
  EXPECT_EQ(run.cancelled_by, "");
  EXPECT_EQ(run.cancel_reason, "");
  EXPECT_EQ(run.attempt, 1);
  EXPECT_GE(run.created_at, before);
  EXPECT_LE(run.created_at, NowMs());
  EXPECT_EQ(run.updated_at, run.created_at);
  EXPECT_FALSE(run.started_at.has_value());
  EXPECT_FALSE(run.completed_at.has_value());
  ExpectSameRun(Must(store().GetRun(run.id)), run);

  Run other = MakeRun(wf);
  EXPECT_NE(other.id, run.id);
  // The default input is an empty object, and stays one.
  EXPECT_EQ(Must(store().GetRun(other.id)).input, json::object());
}

TEST_P(StoreConformance, TheRunsTraceparentIsKeptThroughItsLife) {
  Workflow wf = MakeWorkflow();
  const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  NewRun nr{"", wf.id, 1, json::object(), "trace-key"};
  nr.traceparent = tp;
  Run run = Must(store().CreateRun(nr)).run;
  EXPECT_EQ(run.traceparent, tp);
  EXPECT_EQ(Must(store().GetRun(run.id)).traceparent, tp);
  // An idempotent repeat with another traceparent returns the first run's.
  nr.traceparent = "00-11111111111111111111111111111111-2222222222222222-00";
  Store::CreatedRun again = Must(store().CreateRun(nr));
  EXPECT_FALSE(again.created);
  EXPECT_EQ(again.run.traceparent, tp);
  // Transitions (through a retry) and lists keep it.
  Run moved = Must(store().TransitionRun({run.id, RunStatus::kPending, RunStatus::kRunning}));
  EXPECT_EQ(moved.traceparent, tp);
  RunTransition fail{run.id, RunStatus::kRunning, RunStatus::kFailed};
  fail.error_message = "x";
  EXPECT_EQ(Must(store().TransitionRun(fail)).traceparent, tp);
  EXPECT_EQ(Must(store().TransitionRun({run.id, RunStatus::kFailed, RunStatus::kPending})).traceparent, tp);
  EXPECT_EQ(Must(store().RequestCancel({run.id, "me", "why"})).traceparent, tp);
  RunFilter f;
  f.workflow_id = wf.id;
  auto page = Must(store().ListRuns(f));
  ASSERT_EQ(page.items.size(), 1u);
  EXPECT_EQ(page.items[0].traceparent, tp);
  auto unfinished = Must(store().ListUnfinishedRuns(10));
  ASSERT_FALSE(unfinished.empty());
  EXPECT_EQ(unfinished[0].traceparent, tp);
  // Without one: empty (NULL), and the trace id comes from the run id.
  Run plain = MakeRun(wf);
  EXPECT_EQ(plain.traceparent, "");
  EXPECT_EQ(Must(store().GetRun(plain.id)).traceparent, "");
  EXPECT_EQ(TraceIdOf(plain).size(), 32u);
  EXPECT_EQ(TraceIdOf(run), "4bf92f3577b34da6a3ce929d0e0e4736");
}

TEST_P(StoreConformance, CreateRunWithExplicitId) {
  Workflow wf = MakeWorkflow();
  Store::CreatedRun created = Must(store().CreateRun(NewRun{"run-explicit-1", wf.id, 1, json::object(), ""}));
  EXPECT_TRUE(created.created);
  EXPECT_EQ(created.run.id, "run-explicit-1");
  EXPECT_EQ(Must(store().GetRun("run-explicit-1")).workflow_id, wf.id);
  EXPECT_EQ(CodeOf(store().CreateRun(NewRun{"run-explicit-1", wf.id, 1, json{{"other", 1}}, ""})),
            Code::kAlreadyExists);
  EXPECT_EQ(Must(store().GetRun("run-explicit-1")).input, json::object()) << "unchanged";
}

TEST_P(StoreConformance, CreateRunNeedsTheWorkflowVersion) {
  Workflow wf = MakeWorkflow();
  EXPECT_EQ(CodeOf(store().CreateRun(NewRun{"", "wf-missing", 1, json::object(), ""})), Code::kNotFound);
  EXPECT_EQ(CodeOf(store().CreateRun(NewRun{"", wf.id, 2, json::object(), ""})), Code::kNotFound);
  EXPECT_TRUE(Must(store().ListRuns(RunFilter{})).items.empty());
}

TEST_P(StoreConformance, CreateRunIsIdempotentPerWorkflowAndKey) {
  Workflow wf = MakeWorkflow();
  Workflow other_wf = MakeWorkflow();
  Run first = MakeRun(wf, json{{"n", 1}}, "key-1");
  EXPECT_EQ(first.idempotency_key, "key-1");

  Store::CreatedRun again = Must(store().CreateRun(NewRun{"", wf.id, 1, json{{"n", 2}}, "key-1"}));
  EXPECT_FALSE(again.created);
  ExpectSameRun(again.run, first);  // the existing run, not the new input

  // The existing run is returned in whatever state it is now.
  Run running = Must(store().TransitionRun({first.id, RunStatus::kPending, RunStatus::kRunning}));
  again = Must(store().CreateRun(NewRun{"", wf.id, 1, json::object(), "key-1"}));
  EXPECT_FALSE(again.created);
  ExpectSameRun(again.run, running);

  // The key is per workflow.
  Store::CreatedRun elsewhere = Must(store().CreateRun(NewRun{"", other_wf.id, 1, json::object(), "key-1"}));
  EXPECT_TRUE(elsewhere.created);
  EXPECT_NE(elsewhere.run.id, first.id);
  // Other keys and no key always create.
  EXPECT_TRUE(Must(store().CreateRun(NewRun{"", wf.id, 1, json::object(), "key-2"})).created);
  Run a = MakeRun(wf);
  Run b = MakeRun(wf);
  EXPECT_NE(a.id, b.id);

  RunFilter f;
  f.workflow_id = wf.id;
  EXPECT_EQ(AllRunPages(store(), f).size(), 4u);
}

TEST_P(StoreConformance, CreateRunIdempotencyRaceCreatesOneRun) {
  Workflow wf = MakeWorkflow();
  constexpr int kThreads = 8;
  for (int round = 0; round < 5; ++round) {
    std::string key = "race-" + std::to_string(round);
    std::latch go(kThreads);
    std::vector<Result<Store::CreatedRun>> results(kThreads, Status::Internal("not run"));
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        go.arrive_and_wait();
        results[i] = store().CreateRun(NewRun{"", wf.id, 1, json{{"thread", i}}, key});
      });
    }
    for (auto& t : threads) t.join();
    int created = 0;
    std::set<std::string> ids;
    for (auto& r : results) {
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      created += r->created ? 1 : 0;
      ids.insert(r->run.id);
    }
    EXPECT_EQ(created, 1) << key;
    EXPECT_EQ(ids.size(), 1u) << key;
  }
  RunFilter f;
  f.workflow_id = wf.id;
  EXPECT_EQ(AllRunPages(store(), f).size(), 5u);
}

TEST_P(StoreConformance, GetRunNotFound) {
  EXPECT_EQ(CodeOf(store().GetRun("run-missing")), Code::kNotFound);
  EXPECT_EQ(CodeOf(store().GetRun("")), Code::kNotFound);
}

TEST_P(StoreConformance, ListRunsFiltersAndPagesWithoutGapsOrRepeats) {
  Workflow a = MakeWorkflow();
  Workflow b = MakeWorkflow();
  std::vector<Run> all;
  for (int i = 0; i < 15; ++i) {
    const Workflow& wf = i % 3 == 0 ? b : a;
    RunStatus s = kAllRunStatuses[i % 4];  // PENDING RUNNING COMPLETED FAILED
    all.push_back(RunIn(wf, s));
    if (i % 5 == 4) WaitForNextMs();  // both ties and distinct timestamps
  }
  for (Run& r : all) r = Must(store().GetRun(r.id));
  std::sort(all.begin(), all.end(),
            [](const Run& x, const Run& y) { return NewerFirst(x.created_at, x.id, y.created_at, y.id); });

  std::vector<std::string> workflow_filters = {"", a.id, b.id, "wf-missing"};
  std::vector<std::optional<RunStatus>> status_filters = {std::nullopt};
  for (RunStatus s : kAllRunStatuses) status_filters.push_back(s);
  for (const std::string& wf : workflow_filters) {
    for (const auto& status : status_filters) {
      for (int limit : {1, 4, 50}) {
        SCOPED_TRACE("workflow '" + wf + "' status " + (status ? ToString(*status) : "any") + " limit " +
                     std::to_string(limit));
        std::vector<Run> expected;
        for (const Run& r : all) {
          if ((wf.empty() || r.workflow_id == wf) && (!status || r.status == *status)) expected.push_back(r);
        }
        RunFilter f;
        f.workflow_id = wf;
        f.status = status;
        f.limit = limit;
        int pages = 0;
        std::vector<Run> got = AllRunPages(store(), f, &pages);
        ASSERT_EQ(Ids(got), Ids(expected));
        for (size_t i = 0; i < got.size(); ++i) ExpectSameRun(got[i], expected[i]);
        size_t full_pages = (expected.size() + limit - 1) / limit;
        EXPECT_EQ(static_cast<size_t>(pages), std::max<size_t>(full_pages, 1));
      }
    }
  }
}

TEST_P(StoreConformance, ListRunsStableWhileCreating) {
  Workflow wf = MakeWorkflow();
  std::set<std::string> before;
  for (int i = 0; i < 6; ++i) before.insert(MakeRun(wf).id);
  RunFilter f;
  f.limit = 4;
  Page<Run> first = Must(store().ListRuns(f));
  ASSERT_EQ(first.items.size(), 4u);
  WaitForNextMs();
  Run late = MakeRun(wf);
  f.page_token = first.next_page_token;
  Page<Run> second = Must(store().ListRuns(f));
  EXPECT_TRUE(second.next_page_token.empty());
  std::multiset<std::string> seen;
  for (const Run& r : first.items) seen.insert(r.id);
  for (const Run& r : second.items) seen.insert(r.id);
  EXPECT_EQ(seen, std::multiset<std::string>(before.begin(), before.end()));
  f.page_token.clear();
  f.limit = 1;
  EXPECT_EQ(Must(store().ListRuns(f)).items.at(0).id, late.id);
}

TEST_P(StoreConformance, ListRunsLimitIsClamped) {
  Workflow wf = MakeWorkflow();
  RunFilter f;
  Page<Run> empty = Must(store().ListRuns(f));
  EXPECT_TRUE(empty.items.empty());
  EXPECT_TRUE(empty.next_page_token.empty());
  for (int i = 0; i < 3; ++i) MakeRun(wf);
  for (int limit : {0, -1, std::numeric_limits<int>::min()}) {
    f.limit = limit;
    Page<Run> p = Must(store().ListRuns(f));
    EXPECT_EQ(p.items.size(), 1u) << "limit " << limit << " acts as 1";
    EXPECT_FALSE(p.next_page_token.empty());
  }
  for (int limit : {1000, 1001, std::numeric_limits<int>::max()}) {
    f.limit = limit;
    Page<Run> p = Must(store().ListRuns(f));
    EXPECT_EQ(p.items.size(), 3u);
    EXPECT_TRUE(p.next_page_token.empty());
  }
}

TEST_P(StoreConformance, ListRunsReturnsAtMostAThousand) {
  Workflow wf = MakeWorkflow();
  for (int i = 0; i < 1001; ++i) MakeRun(wf);
  RunFilter f;
  f.limit = 5000;
  Page<Run> p = Must(store().ListRuns(f));
  EXPECT_EQ(p.items.size(), 1000u);
  ASSERT_FALSE(p.next_page_token.empty());
  f.page_token = p.next_page_token;
  Page<Run> rest = Must(store().ListRuns(f));
  EXPECT_EQ(rest.items.size(), 1u);
  EXPECT_TRUE(rest.next_page_token.empty());
}

TEST_P(StoreConformance, ListUnfinishedRunsOldestFirst) {
  Workflow wf = MakeWorkflow();
  std::vector<Run> unfinished;
  for (int i = 0; i < 10; ++i) {
    RunStatus s = kAllRunStatuses[i % 5];
    Run r = RunIn(wf, s);
    if (!IsTerminal(s)) unfinished.push_back(r);
    if (i == 4) WaitForNextMs();
  }
  // A retried run is unfinished again.
  Run retried = RunIn(wf, RunStatus::kFailed);
  retried = Must(store().TransitionRun({retried.id, RunStatus::kFailed, RunStatus::kPending}));
  unfinished.push_back(retried);
  for (Run& r : unfinished) r = Must(store().GetRun(r.id));
  std::sort(unfinished.begin(), unfinished.end(), [](const Run& x, const Run& y) {
    return std::tie(x.created_at, x.id) < std::tie(y.created_at, y.id);
  });

  std::vector<Run> got = Must(store().ListUnfinishedRuns(100));
  ASSERT_EQ(Ids(got), Ids(unfinished));
  for (size_t i = 0; i < got.size(); ++i) ExpectSameRun(got[i], unfinished[i]);
  std::vector<Run> two = Must(store().ListUnfinishedRuns(2));
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].id, unfinished[0].id);
  EXPECT_EQ(two[1].id, unfinished[1].id);
}

// ---------------------------------------------------------------- transitions

TEST_P(StoreConformance, EveryTransitionFollowsTheStatusMachine) {
  Workflow wf = MakeWorkflow();
  int allowed = 0;
  for (RunStatus from : kAllRunStatuses) {
    for (RunStatus to : kAllRunStatuses) {
      SCOPED_TRACE(std::string(ToString(from)) + " -> " + ToString(to));
      Run run = RunIn(wf, from);
      Run before = Must(store().GetRun(run.id));
      auto res = store().TransitionRun({run.id, from, to});
      if (CanTransition(from, to)) {
        ++allowed;
        ASSERT_TRUE(res.ok()) << res.status().ToString();
        EXPECT_EQ(res->status, to);
        EXPECT_GE(res->updated_at, before.updated_at);
        ExpectSameRun(Must(store().GetRun(run.id)), *res);
      } else {
        EXPECT_EQ(CodeOf(res), Code::kFailedPrecondition);
        ExpectSameRun(Must(store().GetRun(run.id)), before);
      }
    }
  }
  EXPECT_EQ(allowed, 8) << "the status machine allows 8 run transitions";
}

TEST_P(StoreConformance, TransitionIsCompareAndSet) {
  Workflow wf = MakeWorkflow();
  Run run = RunIn(wf, RunStatus::kRunning);
  // Allowed transitions whose `from` is not the current status.
  for (auto [from, to] : {std::pair{RunStatus::kPending, RunStatus::kRunning},
                          std::pair{RunStatus::kPending, RunStatus::kCancelled},
                          std::pair{RunStatus::kFailed, RunStatus::kPending}}) {
    auto res = store().TransitionRun({run.id, from, to});
    ASSERT_EQ(CodeOf(res), Code::kFailedPrecondition) << ToString(from) << " -> " << ToString(to);
    EXPECT_EQ(res.status().details().value("current", ""), "RUNNING") << res.status().details().dump();
    ExpectSameRun(Must(store().GetRun(run.id)), run);
  }
  Run done = RunIn(wf, RunStatus::kCompleted);
  auto res = store().TransitionRun({done.id, RunStatus::kRunning, RunStatus::kFailed});
  ASSERT_EQ(CodeOf(res), Code::kFailedPrecondition);
  EXPECT_EQ(res.status().details().value("current", ""), "COMPLETED");
  ExpectSameRun(Must(store().GetRun(done.id)), done);
}

TEST_P(StoreConformance, TransitionUnknownRunIsNotFound) {
  EXPECT_EQ(CodeOf(store().TransitionRun({"run-missing", RunStatus::kPending, RunStatus::kRunning})),
            Code::kNotFound);
  EXPECT_EQ(CodeOf(store().TransitionRun({"run-missing", RunStatus::kFailed, RunStatus::kPending})),
            Code::kNotFound);
}

TEST_P(StoreConformance, ConcurrentTransitionsHaveOneWinner) {
  Workflow wf = MakeWorkflow();
  constexpr int kThreads = 8;
  for (int round = 0; round < 10; ++round) {
    Run run = MakeRun(wf);
    // All threads try PENDING → RUNNING; then all try to end the run, half
    // COMPLETED and half CANCELLED.
    for (int phase = 0; phase < 2; ++phase) {
      std::latch go(kThreads);
      std::vector<Result<Run>> results(kThreads, Status::Internal("not run"));
      std::vector<std::thread> threads;
      for (int i = 0; i < kThreads; ++i) {
        threads.emplace_back([&, i] {
          RunTransition t{run.id, RunStatus::kPending, RunStatus::kRunning};
          if (phase == 1) {
            t.from = RunStatus::kRunning;
            t.to = i % 2 ? RunStatus::kCompleted : RunStatus::kCancelled;
          }
          go.arrive_and_wait();
          results[i] = store().TransitionRun(t);
        });
      }
      for (auto& t : threads) t.join();
      int wins = 0;
      RunStatus winner = RunStatus::kPending;
      for (auto& r : results) {
        if (r.ok()) {
          ++wins;
          winner = r->status;
        } else {
          EXPECT_EQ(r.status().code(), Code::kFailedPrecondition) << r.status().ToString();
        }
      }
      ASSERT_EQ(wins, 1) << "round " << round << " phase " << phase;
      for (auto& r : results) {
        if (!r.ok()) {
          EXPECT_EQ(r.status().details().value("current", ""), ToString(winner));
        }
      }
      EXPECT_EQ(Must(store().GetRun(run.id)).status, winner);
    }
  }
}

TEST_P(StoreConformance, TransitionTimestampsAndOutput) {
  Workflow wf = MakeWorkflow();
  Run run = MakeRun(wf, json{{"x", 1}});
  WaitForNextMs();
  Run running = Must(store().TransitionRun({run.id, RunStatus::kPending, RunStatus::kRunning}));
  ASSERT_TRUE(running.started_at.has_value());
  EXPECT_GT(*running.started_at, run.created_at);
  EXPECT_FALSE(running.completed_at.has_value());
  EXPECT_EQ(running.updated_at, *running.started_at);
  EXPECT_EQ(running.created_at, run.created_at);
  EXPECT_EQ(running.input, run.input);
  EXPECT_TRUE(running.output.is_null());

  WaitForNextMs();
  RunTransition done{run.id, RunStatus::kRunning, RunStatus::kCompleted};
  done.output = json{{"answer", 42}, {"list", {1, "two", nullptr}}};
  Run completed = Must(store().TransitionRun(done));
  EXPECT_EQ(completed.status, RunStatus::kCompleted);
  EXPECT_EQ(completed.output, *done.output);
  EXPECT_EQ(completed.started_at, running.started_at) << "started_at is set once";
  ASSERT_TRUE(completed.completed_at.has_value());
  EXPECT_GT(*completed.completed_at, *running.started_at);
  EXPECT_EQ(completed.updated_at, *completed.completed_at);
  EXPECT_EQ(completed.error_message, "");
  EXPECT_EQ(completed.attempt, 1);
  ExpectSameRun(Must(store().GetRun(run.id)), completed);

  // PENDING → FAILED / CANCELLED directly: completed, never started.
  for (RunStatus end : {RunStatus::kFailed, RunStatus::kCancelled}) {
    Run r = MakeRun(wf);
    RunTransition t{r.id, RunStatus::kPending, end};
    t.error_message = "gave up";
    Run ended = Must(store().TransitionRun(t));
    EXPECT_EQ(ended.status, end);
    EXPECT_FALSE(ended.started_at.has_value());
    EXPECT_TRUE(ended.completed_at.has_value());
    EXPECT_EQ(ended.error_message, "gave up");
    EXPECT_TRUE(ended.output.is_null());
    ExpectSameRun(Must(store().GetRun(r.id)), ended);
  }
}

TEST_P(StoreConformance, FailedRunKeepsErrorAndOptionalOutput) {
  Workflow wf = MakeWorkflow();
  Run run = RunIn(wf, RunStatus::kRunning);
  RunTransition t{run.id, RunStatus::kRunning, RunStatus::kFailed};
  t.error_message = "step b: agent returned 500";
  t.output = json{{"partial", true}};
  Run failed = Must(store().TransitionRun(t));
  EXPECT_EQ(failed.error_message, "step b: agent returned 500");
  EXPECT_EQ(failed.output, json({{"partial", true}}));
  EXPECT_EQ(failed.input, run.input) << "input is kept unless replaced";
  ExpectSameRun(Must(store().GetRun(run.id)), failed);
}

TEST_P(StoreConformance, RetryToPendingResetsTheRun) {
  Workflow wf = MakeWorkflow();
  Run run = MakeRun(wf, json{{"x", 1}});
  Run running = Must(store().TransitionRun({run.id, RunStatus::kPending, RunStatus::kRunning}));
  Must(store().RequestCancel({run.id, "alice", "wrong input"}));
  RunTransition cancel{run.id, RunStatus::kRunning, RunStatus::kCancelled};
  cancel.error_message = "cancelled by alice";
  cancel.output = json{{"partial", 1}};
  Run cancelled = Must(store().TransitionRun(cancel));
  EXPECT_TRUE(cancelled.cancel_requested);
  EXPECT_EQ(cancelled.cancelled_by, "alice");
  EXPECT_EQ(cancelled.cancel_reason, "wrong input");

  WaitForNextMs();
  RunTransition retry{run.id, RunStatus::kCancelled, RunStatus::kPending};
  retry.input = json{{"x", 2}};
  Run pending = Must(store().TransitionRun(retry));
  EXPECT_EQ(pending.status, RunStatus::kPending);
  EXPECT_EQ(pending.attempt, 2);
  EXPECT_EQ(pending.input, json({{"x", 2}}));
  EXPECT_TRUE(pending.output.is_null());
  EXPECT_EQ(pending.error_message, "");
  EXPECT_FALSE(pending.cancel_requested);
  EXPECT_EQ(pending.cancelled_by, "");
  EXPECT_EQ(pending.cancel_reason, "");
  EXPECT_FALSE(pending.completed_at.has_value());
  EXPECT_EQ(pending.started_at, running.started_at) << "started_at records the first start";
  EXPECT_EQ(pending.created_at, run.created_at);
  EXPECT_GT(pending.updated_at, cancelled.updated_at);
  ExpectSameRun(Must(store().GetRun(run.id)), pending);

  WaitForNextMs();
  Run again = Must(store().TransitionRun({run.id, RunStatus::kPending, RunStatus::kRunning}));
  EXPECT_EQ(again.started_at, running.started_at) << "started_at is set on the first → RUNNING only";
  RunTransition fail{run.id, RunStatus::kRunning, RunStatus::kFailed};
  fail.error_message = "boom";
  Run failed = Must(store().TransitionRun(fail));
  EXPECT_TRUE(failed.completed_at.has_value());
  // Retrying without new input keeps the input.
  Run third = Must(store().TransitionRun({run.id, RunStatus::kFailed, RunStatus::kPending}));
  EXPECT_EQ(third.attempt, 3);
  EXPECT_EQ(third.input, json({{"x", 2}}));
  EXPECT_EQ(third.error_message, "");
  EXPECT_FALSE(third.completed_at.has_value());
}

// ---------------------------------------------------------------- cancel

TEST_P(StoreConformance, RequestCancelRecordsWhoAndWhy) {
  Workflow wf = MakeWorkflow();
  for (RunStatus s : {RunStatus::kPending, RunStatus::kRunning}) {
    SCOPED_TRACE(ToString(s));
    Run run = RunIn(wf, s);
    Run got = Must(store().RequestCancel({run.id, "bob@example.com", "not needed"}));
    EXPECT_EQ(got.status, s) << "the status does not change";
    EXPECT_TRUE(got.cancel_requested);
    EXPECT_EQ(got.cancelled_by, "bob@example.com");
    EXPECT_EQ(got.cancel_reason, "not needed");
    EXPECT_GE(got.updated_at, run.updated_at);
    EXPECT_EQ(got.completed_at, run.completed_at);
    EXPECT_EQ(got.attempt, run.attempt);
    ExpectSameRun(Must(store().GetRun(run.id)), got);

    // A repeated request replaces who and why.
    Run again = Must(store().RequestCancel({run.id, "carol", "really"}));
    EXPECT_TRUE(again.cancel_requested);
    EXPECT_EQ(again.cancelled_by, "carol");
    EXPECT_EQ(again.cancel_reason, "really");

    // The executor then ends the run; the request stays recorded.
    RunTransition t{run.id, s, RunStatus::kCancelled};
    t.error_message = "cancelled";
    Run ended = Must(store().TransitionRun(t));
    EXPECT_TRUE(ended.cancel_requested);
    EXPECT_EQ(ended.cancelled_by, "carol");
  }
}

TEST_P(StoreConformance, ListCancelRequestsReturnsOnlyRequestedUnfinishedRuns) {
  Workflow wf = MakeWorkflow();
  Run pending = RunIn(wf, RunStatus::kPending);
  Run running = RunIn(wf, RunStatus::kRunning);
  Run untouched = RunIn(wf, RunStatus::kRunning);
  Run finished = RunIn(wf, RunStatus::kRunning);
  Must(store().RequestCancel({pending.id, "ann", "a"}));
  Must(store().RequestCancel({running.id, "ben", "b"}));
  Must(store().RequestCancel({finished.id, "cat", "c"}));
  RunTransition t{finished.id, RunStatus::kRunning, RunStatus::kCancelled};
  Must(store().TransitionRun(t));

  auto got = Must(store().ListCancelRequests({pending.id, running.id, untouched.id, finished.id, "run-unknown"}));
  std::map<std::string, CancelRequest> by_id;
  for (auto& c : got) by_id[c.run_id] = c;
  ASSERT_EQ(by_id.size(), 2u);
  EXPECT_EQ(by_id[pending.id].cancelled_by, "ann");
  EXPECT_EQ(by_id[running.id].cancelled_by, "ben");
  EXPECT_EQ(by_id[running.id].reason, "b");
  EXPECT_TRUE(Must(store().ListCancelRequests({})).empty());
  EXPECT_TRUE(Must(store().ListCancelRequests({untouched.id})).empty());
}

// A run's end wakes a listener: ended by ApplyRunWrites (the executor's
// commits), by ApplyRunWritesGroup and by TransitionRun. Backends that
// cannot tell (SQLite) return null, and their waiters poll.
TEST_P(StoreConformance, ListenForRunEndsWakesWhenARunEnds) {
  std::mutex mu;
  std::condition_variable cv;
  int wakes = 0;
  auto listener = store().ListenForRunEnds([&] {
    std::lock_guard<std::mutex> lock(mu);
    ++wakes;
    cv.notify_all();
  });
  if (listener == nullptr) GTEST_SKIP() << GetParam().name << " cannot tell; waiters poll";
  // Waits (up to a generous bound, not a timing check) for a wake after `seen`.
  auto woken_after = [&](int seen) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::seconds(30), [&] { return wakes > seen; });
    return wakes;
  };
  auto seen = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return wakes;
  };
  Workflow wf = MakeWorkflow();

  Run a = MakeRun(wf);
  RunLease lease = Must(store().AcquireRunLease(a.id, "owner", 60000), "acquire");
  RunWrites start{a.id, lease.token, {}};
  start.ops.push_back(RunWrite::Transition(RunTransition{a.id, RunStatus::kPending, RunStatus::kRunning}));
  Must(store().ApplyRunWrites(start), "start");
  int before = seen();
  RunWrites end{a.id, lease.token, {}};
  end.ops.push_back(RunWrite::Transition(RunTransition{a.id, RunStatus::kRunning, RunStatus::kCompleted}));
  Must(store().ApplyRunWrites(end), "end");
  EXPECT_GT(woken_after(before), before) << "ApplyRunWrites ended a run";

  Run b = RunIn(wf, RunStatus::kRunning);
  Run c = RunIn(wf, RunStatus::kRunning);
  before = seen();
  RunWrites end_b{b.id, 0, {RunWrite::Transition(RunTransition{b.id, RunStatus::kRunning, RunStatus::kFailed})}};
  RunWrites end_c{c.id, 0, {RunWrite::Transition(RunTransition{c.id, RunStatus::kRunning, RunStatus::kCompleted})}};
  for (auto& r : store().ApplyRunWritesGroup({&end_b, &end_c})) EXPECT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GT(woken_after(before), before) << "ApplyRunWritesGroup ended runs";

  Run d = RunIn(wf, RunStatus::kPending);
  before = seen();
  Must(store().TransitionRun(RunTransition{d.id, RunStatus::kPending, RunStatus::kCancelled}));
  EXPECT_GT(woken_after(before), before) << "TransitionRun ended a run";
}

TEST_P(StoreConformance, GetRunStatusesReadsTheStatusOfEveryKnownRun) {
  Workflow wf = MakeWorkflow();
  Run pending = RunIn(wf, RunStatus::kPending);
  Run running = RunIn(wf, RunStatus::kRunning);
  Run done = RunIn(wf, RunStatus::kRunning);
  RunTransition t{done.id, RunStatus::kRunning, RunStatus::kCompleted};
  Must(store().TransitionRun(t));
  auto got = Must(store().GetRunStatuses({pending.id, running.id, done.id, "run-unknown", pending.id}));
  std::map<std::string, RunStatus> by_id(got.begin(), got.end());
  ASSERT_EQ(by_id.size(), 3u);
  EXPECT_EQ(by_id[pending.id], RunStatus::kPending);
  EXPECT_EQ(by_id[running.id], RunStatus::kRunning);
  EXPECT_EQ(by_id[done.id], RunStatus::kCompleted);
  EXPECT_TRUE(Must(store().GetRunStatuses({})).empty());
  EXPECT_TRUE(Must(store().GetRunStatuses({"run-unknown"})).empty());
}

TEST_P(StoreConformance, GetStepProgressCountsEachRunsExecutionsAndTheFinishedOnes) {
  Workflow wf = MakeWorkflow();
  Run busy = RunIn(wf, RunStatus::kRunning);
  Run idle = RunIn(wf, RunStatus::kRunning);  // no step yet: left out
  Run other = RunIn(wf, RunStatus::kRunning);
  int64_t a = StartStep(busy, "a");
  StartStep(busy, "b");
  StartStep(other, "a");
  auto progress = [&] {
    std::map<std::string, std::pair<int64_t, int64_t>> by_id;
    for (const auto& p : Must(store().GetStepProgress({busy.id, idle.id, other.id, "run-unknown", busy.id}))) {
      EXPECT_TRUE(by_id.emplace(p.run_id, std::make_pair(p.executions, p.finished)).second) << p.run_id;
    }
    return by_id;
  };
  auto before = progress();
  ASSERT_EQ(before.size(), 2u);
  EXPECT_EQ(before[busy.id], std::make_pair(int64_t{2}, int64_t{0}));
  EXPECT_EQ(before[other.id], std::make_pair(int64_t{1}, int64_t{0}));
  MustOk(store().FinishStep(StepFinish{busy.id, a, StepStatus::kFailed, nullptr, "boom"}));
  StartStep(busy, "a");  // the retry: a new attempt
  auto after = progress();
  EXPECT_EQ(after[busy.id], std::make_pair(int64_t{3}, int64_t{1}));
  EXPECT_EQ(after[other.id], std::make_pair(int64_t{1}, int64_t{0}));
  EXPECT_TRUE(Must(store().GetStepProgress({})).empty());
  EXPECT_TRUE(Must(store().GetStepProgress({idle.id, "run-unknown"})).empty());
}

TEST_P(StoreConformance, RequestCancelOfFinishedRunFails) {
  Workflow wf = MakeWorkflow();
  for (RunStatus s : {RunStatus::kCompleted, RunStatus::kFailed, RunStatus::kCancelled}) {
    SCOPED_TRACE(ToString(s));
    Run run = RunIn(wf, s);
    auto res = store().RequestCancel({run.id, "bob", "late"});
    ASSERT_EQ(CodeOf(res), Code::kFailedPrecondition);
    EXPECT_EQ(res.status().details().value("current", ""), ToString(s));
    ExpectSameRun(Must(store().GetRun(run.id)), run);
  }
  EXPECT_EQ(CodeOf(store().RequestCancel({"run-missing", "bob", "x"})), Code::kNotFound);
}

// ---------------------------------------------------------------- steps

TEST_P(StoreConformance, InsertStepsAndListInStartOrder) {
  Workflow wf = MakeWorkflow();
  Run run = RunIn(wf, RunStatus::kRunning);
  Run other = RunIn(wf, RunStatus::kRunning);
  TimeMs before = NowMs();

  std::vector<StepExecution> inserted;
  int64_t last_id = 0;
  int n = 0;
  for (StepStatus s : {StepStatus::kRunning, StepStatus::kSkipped, StepStatus::kCancelled, StepStatus::kFailed}) {
    StepExecution e;
    e.run_id = run.id;
    e.step_id = "step-" + std::to_string(n);
    e.item_index = n == 1 ? std::optional<int>(0) : (n == 2 ? std::optional<int>(7) : std::nullopt);
    e.agent_name = "agent-" + std::to_string(n);
    e.attempt = n + 1;
    e.status = s;
    e.input = json{{"n", n}};
    if (s == StepStatus::kFailed) e.error_message = "agent unreachable";
    e.id = Must(store().InsertStep(e));
    EXPECT_GT(e.id, last_id) << "ids increase";
    last_id = e.id;
    inserted.push_back(e);
    ++n;
    StartStep(other, "noise");  // interleaved rows of another run
  }

  std::vector<StepExecution> listed = Must(store().ListSteps(run.id));
  ASSERT_EQ(listed.size(), inserted.size());
  for (size_t i = 0; i < listed.size(); ++i) {
    SCOPED_TRACE(i);
    const StepExecution& got = listed[i];
    const StepExecution& want = inserted[i];
    EXPECT_EQ(got.id, want.id);
    EXPECT_EQ(got.run_id, run.id);
    EXPECT_EQ(got.step_id, want.step_id);
    EXPECT_EQ(got.item_index, want.item_index);
    EXPECT_EQ(got.agent_name, want.agent_name);
    EXPECT_EQ(got.attempt, want.attempt);
    EXPECT_EQ(got.status, want.status);
    EXPECT_EQ(got.input, want.input);
    EXPECT_TRUE(got.output.is_null());
    EXPECT_EQ(got.error_message, want.error_message);
    EXPECT_GE(got.started_at, before) << "started_at 0 means now";
    EXPECT_LE(got.started_at, NowMs());
    if (IsTerminal(want.status)) {
      ASSERT_TRUE(got.completed_at.has_value()) << "a terminal insert is completed";
      EXPECT_GE(*got.completed_at, got.started_at);
    } else {
      EXPECT_FALSE(got.completed_at.has_value());
    }
  }
  EXPECT_EQ(Must(store().ListSteps(other.id)).size(), 4u);
}

TEST_P(StoreConformance, ListStepsOrdersByStartedAtThenId) {
  Workflow wf = MakeWorkflow();
  Run run = RunIn(wf, RunStatus::kRunning);
  auto insert = [&](const std::string& step, TimeMs started_at) {
    StepExecution e;
    e.run_id = run.id;
    e.step_id = step;
    e.status = StepStatus::kSkipped;
    e.started_at = started_at;
    e.completed_at = started_at + 5;
    return Must(store().InsertStep(e));
  };
  int64_t c = insert("c", 3000);
  int64_t a = insert("a", 1000);
  int64_t b1 = insert("b1", 2000);
  int64_t b2 = insert("b2", 2000);
  std::vector<StepExecution> listed = Must(store().ListSteps(run.id));
  ASSERT_EQ(listed.size(), 4u);
  EXPECT_EQ(listed[0].id, a);
  EXPECT_EQ(listed[1].id, b1);
  EXPECT_EQ(listed[2].id, b2);
  EXPECT_EQ(listed[3].id, c);
  EXPECT_EQ(listed[0].started_at, 1000) << "a given started_at is kept";
  EXPECT_EQ(listed[0].completed_at, 1005) << "a given completed_at is kept";
}

TEST_P(StoreConformance, InsertStepChecksTheStatusMachineAndTheRun) {
  Workflow wf = MakeWorkflow();
  Run run = RunIn(wf, RunStatus::kRunning);
  for (StepStatus s : kAllStepStatuses) {
    StepExecution e;
    e.run_id = run.id;
    e.step_id = "s";
    e.status = s;
    auto res = store().InsertStep(e);
    if (CanTransition(std::nullopt, s)) {
      EXPECT_TRUE(res.ok()) << ToString(s) << ": " << res.status().ToString();
    } else {
      EXPECT_EQ(CodeOf(res), Code::kFailedPrecondition) << ToString(s);
    }
  }
  EXPECT_EQ(Must(store().ListSteps(run.id)).size(), 4u) << "COMPLETED cannot be inserted";

  StepExecution orphan;
  orphan.run_id = "run-missing";
  orphan.step_id = "s";
  EXPECT_EQ(CodeOf(store().InsertStep(orphan)), Code::kNotFound);
}

TEST_P(StoreConformance, FinishStepEndsARunningExecution) {
  Workflow wf = MakeWorkflow();
  Run run = RunIn(wf, RunStatus::kRunning);
  int64_t ok_id = StartStep(run, "ok");
  int64_t bad_id = StartStep(run, "bad");
  int64_t stop_id = StartStep(run, "stop", 2);
  TimeMs before = NowMs();

  json out{{"items", json::array({1, 2, 3})}, {"text", "done"}};
  MustOk(store().FinishStep({run.id, ok_id, StepStatus::kCompleted, out, ""}));
  MustOk(store().FinishStep({run.id, bad_id, StepStatus::kFailed, nullptr, "HTTP 500 from agent"}));
  MustOk(store().FinishStep({run.id, stop_id, StepStatus::kCancelled, nullptr, "run cancelled"}));

  std::vector<StepExecution> listed = Must(store().ListSteps(run.id));
  ASSERT_EQ(listed.size(), 3u);
  EXPECT_EQ(listed[0].status, StepStatus::kCompleted);
  EXPECT_EQ(listed[0].output, out);
  EXPECT_EQ(listed[0].error_message, "");
  EXPECT_EQ(listed[0].input, json({{"step", "ok"}})) << "input is kept";
  EXPECT_EQ(listed[1].status, StepStatus::kFailed);
  EXPECT_TRUE(listed[1].output.is_null());
  EXPECT_EQ(listed[1].error_message, "HTTP 500 from agent");
  EXPECT_EQ(listed[2].status, StepStatus::kCancelled);
  EXPECT_EQ(listed[2].item_index, 2);
  EXPECT_EQ(listed[2].error_message, "run cancelled");
  for (const StepExecution& s : listed) {
    ASSERT_TRUE(s.completed_at.has_value());
    EXPECT_GE(*s.completed_at, before);
    EXPECT_GE(*s.completed_at, s.started_at);
  }
}

TEST_P(StoreConformance, FinishStepErrors) {
  Workflow wf = MakeWorkflow();
  Run run = RunIn(wf, RunStatus::kRunning);
  Run other = RunIn(wf, RunStatus::kRunning);
  int64_t id = StartStep(run, "a");
  std::vector<StepExecution> before = Must(store().ListSteps(run.id));

  // Not a terminal target: the status machine refuses.
  for (StepStatus to : {StepStatus::kRunning, StepStatus::kSkipped}) {
    EXPECT_EQ(store().FinishStep({run.id, id, to, nullptr, ""}).code(), Code::kFailedPrecondition) << ToString(to);
  }
  // The execution belongs to another run, or does not exist.
  EXPECT_EQ(store().FinishStep({other.id, id, StepStatus::kCompleted, 1, ""}).code(), Code::kNotFound);
  EXPECT_EQ(store().FinishStep({"run-missing", id, StepStatus::kCompleted, 1, ""}).code(), Code::kNotFound);
  EXPECT_EQ(store().FinishStep({run.id, id + 1000, StepStatus::kCompleted, 1, ""}).code(), Code::kNotFound);
  std::vector<StepExecution> unchanged = Must(store().ListSteps(run.id));
  ASSERT_EQ(unchanged.size(), 1u);
  ExpectSameStep(unchanged[0], before[0]);

  // Finishing twice: the second finds it no longer RUNNING.
  MustOk(store().FinishStep({run.id, id, StepStatus::kCompleted, json{{"v", 1}}, ""}));
  std::vector<StepExecution> done = Must(store().ListSteps(run.id));
  Status again = store().FinishStep({run.id, id, StepStatus::kFailed, nullptr, "late"});
  EXPECT_EQ(again.code(), Code::kFailedPrecondition);
  EXPECT_EQ(again.details().value("current", ""), "COMPLETED") << again.details().dump();
  ExpectSameStep(Must(store().ListSteps(run.id)).at(0), done.at(0));
}

TEST_P(StoreConformance, ListStepsOfRunWithoutStepsIsEmpty) {
  Workflow wf = MakeWorkflow();
  Run run = MakeRun(wf);
  EXPECT_TRUE(Must(store().ListSteps(run.id)).empty());
  EXPECT_TRUE(Must(store().ListSteps("run-missing")).empty());
}

TEST_P(StoreConformance, ConcurrentStepFinishHasOneWinner) {
  Workflow wf = MakeWorkflow();
  Run run = RunIn(wf, RunStatus::kRunning);
  constexpr int kThreads = 6;
  for (int round = 0; round < 5; ++round) {
    int64_t id = StartStep(run, "s" + std::to_string(round));
    std::latch go(kThreads);
    std::atomic<int> wins{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        go.arrive_and_wait();
        Status s = store().FinishStep({run.id, id, i % 2 ? StepStatus::kCompleted : StepStatus::kFailed,
                                       i % 2 ? json(i) : json(nullptr), i % 2 ? "" : "lost"});
        if (s.ok()) {
          ++wins;
        } else {
          EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(wins.load(), 1);
  }
}

// ---------------------------------------------------------------- leases

TEST_P(StoreConformance, LeaseIsExclusiveUntilItExpires) {
  Workflow wf = MakeWorkflow();
  Run run = MakeRun(wf);
  RunLease a = Must(store().AcquireRunLease(run.id, "owner-a", 60000), "acquire a");
  EXPECT_EQ(a.run_id, run.id);
  EXPECT_EQ(a.owner, "owner-a");
  EXPECT_GT(a.token, 0);
  EXPECT_GT(a.expires_at, 0);

  auto b = store().AcquireRunLease(run.id, "owner-b", 60000);
  ASSERT_EQ(CodeOf(b), Code::kAborted) << b.status().ToString();
  EXPECT_EQ(b.status().details()["lease_owner"], "owner-a");
  EXPECT_GT(b.status().details()["retry_after_ms"].get<int64_t>(), 0);
  EXPECT_NE(b.status().message().find("owner-a"), std::string::npos) << b.status().message();

  Run read = Must(store().GetRun(run.id));
  EXPECT_EQ(read.lease_owner, "owner-a");
  EXPECT_EQ(read.lease_token, a.token);
  ASSERT_TRUE(read.lease_expires_at.has_value());

  // The holder may take it again (a new executor in the same process): a new token.
  RunLease again = Must(store().AcquireRunLease(run.id, "owner-a", 1), "re-acquire a");
  EXPECT_GT(again.token, a.token);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  RunLease taken = Must(store().AcquireRunLease(run.id, "owner-b", 60000), "acquire b after expiry");
  EXPECT_GT(taken.token, again.token);
  EXPECT_EQ(Must(store().GetRun(run.id)).lease_owner, "owner-b");
}

TEST_P(StoreConformance, LeaseOfFinishedOrUnknownRunFails) {
  Workflow wf = MakeWorkflow();
  Run done = RunIn(wf, RunStatus::kCompleted);
  auto r = store().AcquireRunLease(done.id, "o", 1000);
  ASSERT_EQ(CodeOf(r), Code::kFailedPrecondition) << r.status().ToString();
  EXPECT_EQ(r.status().details()["current"], "COMPLETED");
  EXPECT_EQ(CodeOf(store().AcquireRunLease("run-nope", "o", 1000)), Code::kNotFound);
}

TEST_P(StoreConformance, AStaleOwnersWritesAreFencedOff) {
  Workflow wf = MakeWorkflow();
  Run run = MakeRun(wf);
  RunLease a = Must(store().AcquireRunLease(run.id, "owner-a", 1), "acquire a");
  RunTransition start{run.id, RunStatus::kPending, RunStatus::kRunning};
  start.lease_token = a.token;
  Must(store().TransitionRun(start), "a starts the run");
  StepExecution s;
  s.run_id = run.id;
  s.step_id = "one";
  s.agent_name = "echo";
  s.status = StepStatus::kRunning;
  int64_t a_step = Must(store().InsertStep(s, a.token), "a inserts a step");

  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  RunLease b = Must(store().AcquireRunLease(run.id, "owner-b", 60000), "b takes over");

  // Every write of a, the stale owner, is refused with Aborted ...
  Status fin = store().FinishStep({run.id, a_step, StepStatus::kCompleted, json{{"late", true}}, "", a.token});
  EXPECT_EQ(fin.code(), Code::kAborted) << fin.ToString();
  auto ins = store().InsertStep(s, a.token);
  EXPECT_EQ(CodeOf(ins), Code::kAborted) << ins.status().ToString();
  RunTransition a_done{run.id, RunStatus::kRunning, RunStatus::kCompleted};
  a_done.output = json::object();
  a_done.lease_token = a.token;
  auto tr = store().TransitionRun(a_done);
  EXPECT_EQ(CodeOf(tr), Code::kAborted) << tr.status().ToString();
  // ... and changed nothing.
  auto steps = Must(store().ListSteps(run.id));
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].status, StepStatus::kRunning);
  EXPECT_EQ(Must(store().GetRun(run.id)).status, RunStatus::kRunning);

  // b, the owner, writes; finishing the run frees the lease but keeps the token.
  MustOk(store().FinishStep({run.id, a_step, StepStatus::kFailed, json(nullptr), "interrupted", b.token}));
  int64_t b_step = Must(store().InsertStep(s, b.token), "b inserts a step");
  MustOk(store().FinishStep({run.id, b_step, StepStatus::kCompleted, json{{"ok", 1}}, "", b.token}));
  RunTransition b_done{run.id, RunStatus::kRunning, RunStatus::kCompleted};
  b_done.output = json{{"ok", 1}};
  b_done.lease_token = b.token;
  Run done = Must(store().TransitionRun(b_done), "b completes the run");
  EXPECT_EQ(done.status, RunStatus::kCompleted);
  EXPECT_EQ(done.lease_owner, "");
  EXPECT_FALSE(done.lease_expires_at.has_value());
  EXPECT_EQ(done.lease_token, b.token);
}

namespace {
StepExecution RunningRow(const Run& run, const std::string& step_id) {
  StepExecution s;
  s.run_id = run.id;
  s.step_id = step_id;
  s.agent_name = "echo";
  s.status = StepStatus::kRunning;
  s.input = json{{"step", step_id}};
  return s;
}
}  // namespace

TEST_P(StoreConformance, ApplyRunWritesCommitsAResultWithTheNextStep) {
  Workflow wf = MakeWorkflow();
  Run run = MakeRun(wf, json{{"x", 1}});
  RunLease lease = Must(store().AcquireRunLease(run.id, "owner", 60000), "acquire");

  // Start: the run's RUNNING transition with the first step's row.
  RunWrites start{run.id, lease.token, {}};
  start.ops.push_back(RunWrite::Transition(RunTransition{run.id, RunStatus::kPending, RunStatus::kRunning}));
  start.ops.push_back(RunWrite::Insert(RunningRow(run, "a")));
  RunWritesResult r1 = Must(store().ApplyRunWrites(start), "start");
  ASSERT_EQ(r1.step_ids.size(), 2u);
  EXPECT_EQ(r1.step_ids[0], 0);
  ASSERT_GT(r1.step_ids[1], 0);
  ASSERT_TRUE(r1.run.has_value());
  EXPECT_EQ(r1.run->status, RunStatus::kRunning);
  EXPECT_TRUE(r1.run->started_at.has_value());

  // a's result and b's RUNNING row.
  RunWrites next{run.id, lease.token, {}};
  next.ops.push_back(RunWrite::Finish(StepFinish{run.id, r1.step_ids[1], StepStatus::kCompleted, json{{"a", 1}}, ""}));
  next.ops.push_back(RunWrite::Insert(RunningRow(run, "b")));
  RunWritesResult r2 = Must(store().ApplyRunWrites(next), "next");
  ASSERT_GT(r2.step_ids[1], r1.step_ids[1]);
  EXPECT_FALSE(r2.run.has_value());

  // b's result with the run's end.
  RunWrites end{run.id, lease.token, {}};
  end.ops.push_back(RunWrite::Finish(StepFinish{run.id, r2.step_ids[1], StepStatus::kCompleted, json{{"b", 2}}, ""}));
  RunTransition done{run.id, RunStatus::kRunning, RunStatus::kCompleted};
  done.output = json{{"b", 2}};
  end.ops.push_back(RunWrite::Transition(done));
  RunWritesResult r3 = Must(store().ApplyRunWrites(end), "end");
  ASSERT_TRUE(r3.run.has_value());
  EXPECT_EQ(r3.run->status, RunStatus::kCompleted);
  EXPECT_EQ(r3.run->output, json({{"b", 2}}));
  // The run a write returns is the run as committed (a waiter answers
  // with it, api.cc WaitForRun): what a read returns, field for field.
  ExpectSameRun(Must(store().GetRun(run.id)), *r3.run);

  auto steps = Must(store().ListSteps(run.id));
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].step_id, "a");
  EXPECT_EQ(steps[0].status, StepStatus::kCompleted);
  EXPECT_EQ(steps[0].output, json({{"a", 1}}));
  EXPECT_EQ(steps[1].step_id, "b");
  EXPECT_EQ(steps[1].status, StepStatus::kCompleted);
  EXPECT_EQ(steps[1].input, json({{"step", "b"}}));
  EXPECT_EQ(Must(store().GetRun(run.id)).status, RunStatus::kCompleted);
}

TEST_P(StoreConformance, ApplyRunWritesIsAllOrNothing) {
  Workflow wf = MakeWorkflow();
  Run run = RunIn(wf, RunStatus::kRunning);
  int64_t a = StartStep(run, "a");
  MustOk(store().FinishStep({run.id, a, StepStatus::kCompleted, json{{"a", 1}}, ""}));

  // The second op fails (a is no longer RUNNING): the insert before it is undone too.
  RunWrites w{run.id, 0, {}};
  w.ops.push_back(RunWrite::Insert(RunningRow(run, "b")));
  w.ops.push_back(RunWrite::Finish(StepFinish{run.id, a, StepStatus::kFailed, nullptr, "late"}));
  w.ops.push_back(RunWrite::Insert(RunningRow(run, "c")));
  auto res = store().ApplyRunWrites(w);
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.status().code(), Code::kFailedPrecondition) << res.status().ToString();
  EXPECT_EQ(res.status().details().value("op", -1), 1) << res.status().ToString();
  auto steps = Must(store().ListSteps(run.id));
  ASSERT_EQ(steps.size(), 1u) << "nothing of the failed batch is kept";
  EXPECT_EQ(steps[0].output, json({{"a", 1}}));

  // A failing transition undoes the step results written before it.
  int64_t b = StartStep(run, "b");
  RunWrites w2{run.id, 0, {}};
  w2.ops.push_back(RunWrite::Finish(StepFinish{run.id, b, StepStatus::kCompleted, json{{"b", 1}}, ""}));
  w2.ops.push_back(RunWrite::Transition(RunTransition{run.id, RunStatus::kPending, RunStatus::kRunning}));
  auto res2 = store().ApplyRunWrites(w2);
  ASSERT_FALSE(res2.ok());
  EXPECT_EQ(res2.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(res2.status().details().value("op", -1), 1);
  steps = Must(store().ListSteps(run.id));
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[1].status, StepStatus::kRunning) << "b's result was rolled back";

  // The store is usable afterwards (no transaction left open).
  MustOk(store().FinishStep({run.id, b, StepStatus::kCompleted, json{{"b", 2}}, ""}));
  EXPECT_EQ(Must(store().ListSteps(run.id))[1].output, json({{"b", 2}}));

  // Ops of another run and transitions with a dispatch are refused.
  Run other = MakeRun(wf);
  RunWrites bad{run.id, 0, {}};
  bad.ops.push_back(RunWrite::Insert(RunningRow(other, "x")));
  EXPECT_EQ(CodeOf(store().ApplyRunWrites(bad)), Code::kInvalidArgument);
  EXPECT_TRUE(Must(store().ListSteps(other.id)).empty());
}

TEST_P(StoreConformance, ApplyRunWritesIsFencedByTheLease) {
  Workflow wf = MakeWorkflow();
  Run run = MakeRun(wf);
  RunLease a = Must(store().AcquireRunLease(run.id, "owner-a", 1), "acquire a");
  RunWrites start{run.id, a.token, {}};
  start.ops.push_back(RunWrite::Transition(RunTransition{run.id, RunStatus::kPending, RunStatus::kRunning}));
  start.ops.push_back(RunWrite::Insert(RunningRow(run, "a")));
  RunWritesResult r = Must(store().ApplyRunWrites(start), "a starts");
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  RunLease b = Must(store().AcquireRunLease(run.id, "owner-b", 60000), "b takes over");

  RunWrites stale{run.id, a.token, {}};
  stale.ops.push_back(RunWrite::Finish(StepFinish{run.id, r.step_ids[1], StepStatus::kCompleted, json{{"late", 1}}, ""}));
  stale.ops.push_back(RunWrite::Insert(RunningRow(run, "b")));
  auto res = store().ApplyRunWrites(stale);
  EXPECT_EQ(CodeOf(res), Code::kAborted) << res.status().ToString();
  auto steps = Must(store().ListSteps(run.id));
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].status, StepStatus::kRunning);

  RunWrites owner{run.id, b.token, {}};
  owner.ops.push_back(RunWrite::Finish(StepFinish{run.id, r.step_ids[1], StepStatus::kFailed, nullptr, "interrupted"}));
  owner.ops.push_back(RunWrite::Insert(RunningRow(run, "a")));
  RunWritesResult ok = Must(store().ApplyRunWrites(owner), "b writes");
  EXPECT_GT(ok.step_ids[1], r.step_ids[1]);
}

// Several runs' batches in one call (the executor's group commit): each
// batch's result is what it would be alone, and a failing batch takes
// nothing of the others with it.
TEST_P(StoreConformance, ApplyRunWritesGroupAppliesEachBatchAsAlone) {
  Workflow wf = MakeWorkflow();
  Run r1 = RunIn(wf, RunStatus::kRunning);
  Run r2 = RunIn(wf, RunStatus::kRunning);
  Run r3 = RunIn(wf, RunStatus::kRunning);
  int64_t a1 = StartStep(r1, "a");
  int64_t a2 = StartStep(r2, "a");
  MustOk(store().FinishStep({r2.id, a2, StepStatus::kCompleted, json{{"a", 2}}, ""}));
  int64_t a3 = StartStep(r3, "a");

  RunWrites good{r1.id, 0, {}};
  good.ops.push_back(RunWrite::Finish(StepFinish{r1.id, a1, StepStatus::kCompleted, json{{"a", 1}}, ""}));
  good.ops.push_back(RunWrite::Insert(RunningRow(r1, "b")));
  RunWrites late{r2.id, 0, {}};  // a2 is no longer RUNNING
  late.ops.push_back(RunWrite::Finish(StepFinish{r2.id, a2, StepStatus::kFailed, nullptr, "late"}));
  late.ops.push_back(RunWrite::Insert(RunningRow(r2, "c")));
  RunWrites end{r3.id, 0, {}};
  end.ops.push_back(RunWrite::Finish(StepFinish{r3.id, a3, StepStatus::kCompleted, json{{"a", 3}}, ""}));
  end.ops.push_back(RunWrite::Transition(RunTransition{r3.id, RunStatus::kRunning, RunStatus::kCompleted}));
  RunWrites mixed{r1.id, 0, {}};  // an op of another run: refused
  mixed.ops.push_back(RunWrite::Insert(RunningRow(r3, "x")));
  Run r4 = RunIn(wf, RunStatus::kRunning);
  RunWrites half{r4.id, 0, {}};  // its first op applies, its second fails: nothing of it stays
  half.ops.push_back(RunWrite::Insert(RunningRow(r4, "a")));
  half.ops.push_back(RunWrite::Transition(RunTransition{r4.id, RunStatus::kPending, RunStatus::kRunning}));

  auto res = store().ApplyRunWritesGroup({&good, &late, &end, &mixed, &half});
  ASSERT_EQ(res.size(), 5u);
  ASSERT_TRUE(res[0].ok()) << res[0].status().ToString();
  EXPECT_EQ(res[0]->step_ids[0], 0);
  EXPECT_GT(res[0]->step_ids[1], a1);
  ASSERT_FALSE(res[1].ok());
  EXPECT_EQ(res[1].status().code(), Code::kFailedPrecondition) << res[1].status().ToString();
  EXPECT_EQ(res[1].status().details().value("op", -1), 0);
  ASSERT_TRUE(res[2].ok()) << res[2].status().ToString();
  ASSERT_TRUE(res[2]->run.has_value());
  EXPECT_EQ(res[2]->run->status, RunStatus::kCompleted);
  EXPECT_EQ(CodeOf(res[3]), Code::kInvalidArgument);
  EXPECT_EQ(CodeOf(res[4]), Code::kFailedPrecondition);
  EXPECT_TRUE(Must(store().ListSteps(r4.id)).empty()) << "the failed batch's first op was undone";
  EXPECT_EQ(Must(store().GetRun(r4.id)).status, RunStatus::kRunning);

  auto s1 = Must(store().ListSteps(r1.id));
  ASSERT_EQ(s1.size(), 2u);
  EXPECT_EQ(s1[0].status, StepStatus::kCompleted);
  EXPECT_EQ(s1[1].status, StepStatus::kRunning);
  EXPECT_EQ(s1[1].id, res[0]->step_ids[1]);
  auto s2 = Must(store().ListSteps(r2.id));
  ASSERT_EQ(s2.size(), 1u) << "nothing of the failed batch is kept";
  EXPECT_EQ(s2[0].output, json({{"a", 2}}));
  EXPECT_EQ(Must(store().GetRun(r3.id)).status, RunStatus::kCompleted);
  ExpectSameRun(Must(store().GetRun(r3.id)), *res[2]->run);  // the run as committed
  EXPECT_EQ(Must(store().ListSteps(r3.id))[0].status, StepStatus::kCompleted);
  EXPECT_EQ(Must(store().ListSteps(r3.id)).size(), 1u) << "the refused batch wrote nothing";

  // A group where every batch succeeds, and an empty group.
  int64_t b1 = res[0]->step_ids[1];
  RunWrites next{r1.id, 0, {}};
  next.ops.push_back(RunWrite::Finish(StepFinish{r1.id, b1, StepStatus::kCompleted, json{{"b", 1}}, ""}));
  next.ops.push_back(RunWrite::Transition(RunTransition{r1.id, RunStatus::kRunning, RunStatus::kCompleted}));
  RunWrites fail2{r2.id, 0, {}};
  fail2.ops.push_back(RunWrite::Transition(RunTransition{r2.id, RunStatus::kRunning, RunStatus::kFailed}));
  auto both = store().ApplyRunWritesGroup({&next, &fail2});
  ASSERT_EQ(both.size(), 2u);
  ASSERT_TRUE(both[0].ok()) << both[0].status().ToString();
  ASSERT_TRUE(both[1].ok()) << both[1].status().ToString();
  EXPECT_EQ(Must(store().GetRun(r1.id)).status, RunStatus::kCompleted);
  EXPECT_EQ(Must(store().GetRun(r2.id)).status, RunStatus::kFailed);
  EXPECT_TRUE(store().ApplyRunWritesGroup({}).empty());
}

// A fan-out's writes in groups (many step rows per batch, several batches):
// every row gets its own id back at its op's place, NULLs, quotes,
// backslashes, braces and non-ASCII text are stored as given, and a batch
// whose lease was taken over fails alone. (On PostgreSQL, several step
// inserts or finishes in a group go as one statement each: this is the
// test of that path.)
TEST_P(StoreConformance, ApplyRunWritesGroupOfManyRowsKeepsEachRowInPlace) {
  Workflow wf = MakeWorkflow();
  const json input = json{{"x", 1}};
  Run fan = MakeRun(wf, input);
  Run other = MakeRun(wf, input);
  Run stale = MakeRun(wf, input);
  auto item_row = [](const Run& run, int i) {
    StepExecution s = RunningRow(run, "each");
    s.item_index = i;
    s.input = json{{"item", i}, {"text", "q\"uo{te},\\ ü " + std::to_string(i)}};
    return s;
  };
  RunWrites start{fan.id, kFirstLeaseToken, {}};
  start.ops.push_back(RunWrite::Start(RunStart{fan.id, "owner-f", 60000, input}));
  start.ops.push_back(RunWrite::Insert(RunningRow(fan, "each")));  // the fan-out's own row, no item
  for (int i = 0; i < 40; ++i) start.ops.push_back(RunWrite::Insert(item_row(fan, i)));
  StepExecution null_input = RunningRow(other, "plain");
  null_input.input = nullptr;
  RunWrites other_start{other.id, kFirstLeaseToken, {}};
  other_start.ops.push_back(RunWrite::Start(RunStart{other.id, "owner-f", 60000, input}));
  other_start.ops.push_back(RunWrite::Insert(null_input));
  other_start.ops.push_back(RunWrite::Insert(item_row(other, 7)));
  auto started = store().ApplyRunWritesGroup({&start, &other_start});
  ASSERT_EQ(started.size(), 2u);
  ASSERT_TRUE(started[0].ok()) << started[0].status().ToString();
  ASSERT_TRUE(started[1].ok()) << started[1].status().ToString();
  ASSERT_TRUE(started[0]->run.has_value());
  EXPECT_EQ(started[0]->run->status, RunStatus::kRunning);
  ASSERT_EQ(started[0]->step_ids.size(), 42u);
  EXPECT_EQ(started[0]->step_ids[0], 0);

  std::map<int64_t, StepExecution> by_id;
  for (const StepExecution& s : Must(store().ListSteps(fan.id))) by_id[s.id] = s;
  ASSERT_EQ(by_id.size(), 41u);
  ASSERT_TRUE(by_id.count(started[0]->step_ids[1]));
  EXPECT_FALSE(by_id[started[0]->step_ids[1]].item_index.has_value());
  for (int i = 0; i < 40; ++i) {
    int64_t id = started[0]->step_ids[2 + i];
    ASSERT_TRUE(by_id.count(id)) << "item " << i;
    ASSERT_EQ(by_id[id].item_index, std::optional<int>(i)) << "the id of item " << i << " is another row's";
    EXPECT_EQ(by_id[id].input, item_row(fan, i).input);
    if (i > 0) {
      EXPECT_GT(id, started[0]->step_ids[1 + i]) << "ids follow the ops' order";
    }
  }
  auto other_steps = Must(store().ListSteps(other.id));
  ASSERT_EQ(other_steps.size(), 2u);
  for (const StepExecution& s : other_steps) {
    if (s.id == started[1]->step_ids[1]) {
      EXPECT_EQ(s.step_id, "plain");
      EXPECT_TRUE(s.input.is_null());
      EXPECT_FALSE(s.item_index.has_value());
    } else {
      EXPECT_EQ(s.id, started[1]->step_ids[2]);
      EXPECT_EQ(s.item_index, std::optional<int>(7));
    }
  }

  // Every item's result, the fan-out's end and the next step's row, beside
  // another run's results and end, and a batch of a run whose lease was
  // taken over meanwhile.
  RunLease old_lease = Must(store().AcquireRunLease(stale.id, "owner-old", 1), "acquire");
  RunWrites stale_start{stale.id, old_lease.token, {}};
  stale_start.ops.push_back(RunWrite::Transition(RunTransition{stale.id, RunStatus::kPending, RunStatus::kRunning}));
  stale_start.ops.push_back(RunWrite::Insert(item_row(stale, 0)));
  stale_start.ops.push_back(RunWrite::Insert(item_row(stale, 1)));
  RunWritesResult stale_ids = Must(store().ApplyRunWrites(stale_start), "stale start");
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  Must(store().AcquireRunLease(stale.id, "owner-new", 60000), "take over");

  RunWrites results{fan.id, kFirstLeaseToken, {}};
  for (int i = 0; i < 40; ++i) {
    StepFinish f{fan.id, started[0]->step_ids[2 + i], StepStatus::kCompleted, json{{"out", i}}, ""};
    if (i % 3 == 0) {
      f.to = StepStatus::kFailed;
      f.output = nullptr;
      f.error_message = "bad \"" + std::to_string(i) + "\" {x}, \\ é";
    }
    results.ops.push_back(RunWrite::Finish(f));
  }
  results.ops.push_back(
      RunWrite::Finish(StepFinish{fan.id, started[0]->step_ids[1], StepStatus::kCompleted, json{{"all", 40}}, ""}));
  results.ops.push_back(RunWrite::Insert(RunningRow(fan, "join")));
  RunWrites other_end{other.id, kFirstLeaseToken, {}};
  other_end.ops.push_back(
      RunWrite::Finish(StepFinish{other.id, started[1]->step_ids[1], StepStatus::kCompleted, json{{"p", 1}}, ""}));
  other_end.ops.push_back(
      RunWrite::Finish(StepFinish{other.id, started[1]->step_ids[2], StepStatus::kCompleted, json{{"q", 2}}, ""}));
  other_end.ops.push_back(RunWrite::Transition(RunTransition{other.id, RunStatus::kRunning, RunStatus::kCompleted}));
  RunWrites late{stale.id, old_lease.token, {}};
  late.ops.push_back(
      RunWrite::Finish(StepFinish{stale.id, stale_ids.step_ids[1], StepStatus::kCompleted, json{{"late", 1}}, ""}));
  late.ops.push_back(
      RunWrite::Finish(StepFinish{stale.id, stale_ids.step_ids[2], StepStatus::kCompleted, json{{"late", 2}}, ""}));
  auto ended = store().ApplyRunWritesGroup({&results, &other_end, &late});
  ASSERT_EQ(ended.size(), 3u);
  ASSERT_TRUE(ended[0].ok()) << ended[0].status().ToString();
  ASSERT_TRUE(ended[1].ok()) << ended[1].status().ToString();
  EXPECT_EQ(CodeOf(ended[2]), Code::kAborted) << ended[2].status().ToString();
  ASSERT_EQ(ended[0]->step_ids.size(), 42u);
  const int64_t join_id = ended[0]->step_ids[41];
  ASSERT_GT(join_id, 0);
  ASSERT_TRUE(ended[1]->run.has_value());
  EXPECT_EQ(ended[1]->run->status, RunStatus::kCompleted);

  by_id.clear();
  for (const StepExecution& s : Must(store().ListSteps(fan.id))) by_id[s.id] = s;
  ASSERT_EQ(by_id.size(), 42u);
  for (int i = 0; i < 40; ++i) {
    const StepExecution& s = by_id[started[0]->step_ids[2 + i]];
    if (i % 3 == 0) {
      EXPECT_EQ(s.status, StepStatus::kFailed) << i;
      EXPECT_TRUE(s.output.is_null()) << i;
      EXPECT_EQ(s.error_message, "bad \"" + std::to_string(i) + "\" {x}, \\ é");
    } else {
      EXPECT_EQ(s.status, StepStatus::kCompleted) << i;
      EXPECT_EQ(s.output, json({{"out", i}})) << i;
      EXPECT_EQ(s.error_message, "") << i;
    }
    EXPECT_TRUE(s.completed_at.has_value()) << i;
  }
  EXPECT_EQ(by_id[started[0]->step_ids[1]].output, json({{"all", 40}}));
  EXPECT_EQ(by_id[join_id].step_id, "join");
  EXPECT_EQ(by_id[join_id].status, StepStatus::kRunning);
  for (const StepExecution& s : Must(store().ListSteps(other.id))) EXPECT_EQ(s.status, StepStatus::kCompleted);
  for (const StepExecution& s : Must(store().ListSteps(stale.id))) {
    EXPECT_EQ(s.status, StepStatus::kRunning) << "the stale owner's results were refused";
  }
}

// ---------------------------------------------------------------- a new run's start in its first batch

namespace {
RunWrites FreshStart(const Run& run, const std::string& owner, const json& input) {
  RunWrites w{run.id, kFirstLeaseToken, {}};
  w.ops.push_back(RunWrite::Start(RunStart{run.id, owner, 60000, input}));
  w.ops.push_back(RunWrite::Insert(RunningRow(run, "a")));
  return w;
}
}  // namespace

TEST_P(StoreConformance, StartTakesTheFirstLeaseWithTheFirstSteps) {
  Workflow wf = MakeWorkflow();
  Run run = MakeRun(wf, json{{"x", 1}, {"name", "ü"}});
  RunWrites start = FreshStart(run, "owner-a", json{{"x", 1}, {"name", "ü"}});
  RunWritesResult r = Must(store().ApplyRunWrites(start), "start");
  ASSERT_TRUE(r.run.has_value());
  EXPECT_EQ(r.run->status, RunStatus::kRunning);
  EXPECT_TRUE(r.run->started_at.has_value());
  EXPECT_EQ(r.run->lease_owner, "owner-a");
  EXPECT_EQ(r.run->lease_token, kFirstLeaseToken);
  EXPECT_EQ(r.run->input, run.input);
  ASSERT_EQ(r.step_ids.size(), 2u);
  EXPECT_GT(r.step_ids[1], 0);

  Run read = Must(store().GetRun(run.id));
  EXPECT_EQ(read.status, RunStatus::kRunning);
  EXPECT_EQ(read.lease_owner, "owner-a");
  EXPECT_EQ(read.lease_token, kFirstLeaseToken);
  ASSERT_TRUE(read.lease_expires_at.has_value());
  // The lease is held like an acquired one: another owner waits for it ...
  EXPECT_EQ(CodeOf(store().AcquireRunLease(run.id, "owner-b", 1000)), Code::kAborted);
  // ... and the token fences the executor's next writes as any lease's does.
  RunWrites next{run.id, kFirstLeaseToken, {}};
  next.ops.push_back(RunWrite::Finish(StepFinish{run.id, r.step_ids[1], StepStatus::kCompleted, json{{"a", 1}}, ""}));
  next.ops.push_back(RunWrite::Transition(RunTransition{run.id, RunStatus::kRunning, RunStatus::kCompleted}));
  EXPECT_EQ(Must(store().ApplyRunWrites(next), "finish").run->status, RunStatus::kCompleted);
  // Started once: the start is refused when the run is no longer new.
  EXPECT_TRUE(IsStartRefused(store().ApplyRunWrites(FreshStart(run, "owner-a", run.input)).status()));
}

TEST_P(StoreConformance, StartIsRefusedUnlessTheRunIsNewAndWritesNothing) {
  Workflow wf = MakeWorkflow();
  const json input = json{{"x", 1}};
  auto expect_refused = [&](const Run& run, const json& in, const char* why) {
    Run before = Must(store().GetRun(run.id));
    auto res = store().ApplyRunWrites(FreshStart(run, "owner-s", in));
    ASSERT_FALSE(res.ok()) << why;
    EXPECT_TRUE(IsStartRefused(res.status())) << why << ": " << res.status().ToString();
    EXPECT_EQ(res.status().details().value("op", -1), 0) << why;
    Run after = Must(store().GetRun(run.id));
    EXPECT_EQ(after.status, before.status) << why;
    EXPECT_EQ(after.lease_token, before.lease_token) << why;
    EXPECT_EQ(after.lease_owner, before.lease_owner) << why;
    EXPECT_EQ(Must(store().ListSteps(run.id)).size(), 0u) << why << ": the batch's steps were written";
  };
  Run leased = MakeRun(wf, input);  // taken by an executor the general way (it may have died)
  Must(store().AcquireRunLease(leased.id, "owner-a", 1), "acquire");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // even with its lease lapsed
  expect_refused(leased, input, "leased before");
  Run cancelled = MakeRun(wf, input);
  Must(store().RequestCancel({cancelled.id, "me", "no"}), "cancel");
  expect_refused(cancelled, input, "cancellation asked");
  Run other_input = MakeRun(wf, input);
  expect_refused(other_input, json{{"x", 2}}, "another input");
  Run retried = RunIn(wf, RunStatus::kFailed);
  Must(store().TransitionRun({retried.id, RunStatus::kFailed, RunStatus::kPending}), "retry");
  expect_refused(retried, retried.input, "second attempt");
  Run finished = RunIn(wf, RunStatus::kCompleted);
  expect_refused(finished, finished.input, "finished");
  auto unknown = store().ApplyRunWrites(FreshStart(Run{.id = "run-nope"}, "owner-s", input));
  EXPECT_TRUE(IsStartRefused(unknown.status())) << unknown.status().ToString();

  // In a group, a refused start takes nothing of the other batches with it.
  Run fresh = MakeRun(wf, input);
  RunWrites good = FreshStart(fresh, "owner-s", input);
  RunWrites refused = FreshStart(other_input, "owner-s", json{{"x", 3}});
  auto res = store().ApplyRunWritesGroup({&refused, &good});
  ASSERT_EQ(res.size(), 2u);
  EXPECT_TRUE(IsStartRefused(res[0].status())) << res[0].status().ToString();
  ASSERT_TRUE(res[1].ok()) << res[1].status().ToString();
  EXPECT_EQ(Must(store().GetRun(fresh.id)).lease_owner, "owner-s");
  EXPECT_EQ(Must(store().ListSteps(fresh.id)).size(), 1u);
  EXPECT_EQ(Must(store().ListSteps(other_input.id)).size(), 0u);
}

TEST_P(StoreConformance, StartMustOpenABatchFencedWithTheFirstToken) {
  Workflow wf = MakeWorkflow();
  Run run = MakeRun(wf);
  RunWrites second = FreshStart(run, "o", run.input);
  std::swap(second.ops[0], second.ops[1]);
  EXPECT_EQ(CodeOf(store().ApplyRunWrites(second)), Code::kInvalidArgument);
  RunWrites token = FreshStart(run, "o", run.input);
  token.lease_token = 7;
  EXPECT_EQ(CodeOf(store().ApplyRunWrites(token)), Code::kInvalidArgument);
  EXPECT_EQ(Must(store().GetRun(run.id)).status, RunStatus::kPending);
}

TEST_P(StoreConformance, UnfencedWritesIgnoreTheLease) {
  Workflow wf = MakeWorkflow();
  Run run = MakeRun(wf);
  Must(store().AcquireRunLease(run.id, "owner-a", 60000));
  // The API cancels a PENDING run whoever holds it.
  Run cancelled = Must(store().TransitionRun({run.id, RunStatus::kPending, RunStatus::kCancelled}));
  EXPECT_EQ(cancelled.status, RunStatus::kCancelled);
  EXPECT_EQ(cancelled.lease_owner, "");
}

TEST_P(StoreConformance, RenewExtendsEveryLeaseOfTheOwner) {
  Workflow wf = MakeWorkflow();
  Run r1 = MakeRun(wf);
  Run r2 = MakeRun(wf);
  Run other = MakeRun(wf);
  Must(store().AcquireRunLease(r1.id, "owner-a", 20));
  Must(store().AcquireRunLease(r2.id, "owner-a", 20));
  Must(store().AcquireRunLease(other.id, "owner-c", 20));
  EXPECT_EQ(Must(store().RenewRunLeases("owner-a", 60000)), 2);
  EXPECT_EQ(Must(store().RenewRunLeases("owner-nobody", 60000)), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(CodeOf(store().AcquireRunLease(r1.id, "owner-b", 1000)), Code::kAborted);
  EXPECT_EQ(CodeOf(store().AcquireRunLease(r2.id, "owner-b", 1000)), Code::kAborted);
  EXPECT_TRUE(store().AcquireRunLease(other.id, "owner-b", 1000).ok()) << "owner-c's lease was not renewed";
}

// The executor's first read of a run is its lease: the acquire returns the
// run's row as it left it.
TEST_P(StoreConformance, AcquireReturnsTheRunAsAcquired) {
  Workflow wf = MakeWorkflow();
  Run run = MakeRun(wf, json{{"x", 7}});
  RunLease a = Must(store().AcquireRunLease(run.id, "owner-a", 60000));
  EXPECT_EQ(a.run.id, run.id);
  EXPECT_EQ(a.run.workflow_id, wf.id);
  EXPECT_EQ(a.run.status, RunStatus::kPending);
  EXPECT_EQ(a.run.input, json({{"x", 7}}));
  EXPECT_EQ(a.run.attempt, run.attempt);
  EXPECT_EQ(a.run.updated_at, run.updated_at) << "acquiring is not a change of the run";
  EXPECT_EQ(a.run.lease_owner, "owner-a");
  EXPECT_EQ(a.run.lease_token, a.token);
  ASSERT_TRUE(a.run.lease_expires_at.has_value());
  EXPECT_EQ(*a.run.lease_expires_at, a.expires_at);
  // Taken again by the same owner (a resumed run): the run as it now is.
  MustOk(store().TransitionRun({run.id, RunStatus::kPending, RunStatus::kRunning}).status());
  RunLease again = Must(store().AcquireRunLease(run.id, "owner-a", 60000));
  EXPECT_EQ(again.run.status, RunStatus::kRunning);
  EXPECT_GT(again.token, a.token);
  EXPECT_EQ(again.run.lease_token, again.token);
}

TEST_P(StoreConformance, ReleaseFreesTheLeaseOnlyForItsToken) {
  Workflow wf = MakeWorkflow();
  Run run = MakeRun(wf);
  RunLease a = Must(store().AcquireRunLease(run.id, "owner-a", 60000));
  MustOk(store().ReleaseRunLease(run.id, a.token - 1));  // stale token: no effect
  EXPECT_EQ(CodeOf(store().AcquireRunLease(run.id, "owner-b", 60000)), Code::kAborted);
  MustOk(store().ReleaseRunLease(run.id, a.token));
  RunLease b = Must(store().AcquireRunLease(run.id, "owner-b", 60000), "b right after the release");
  EXPECT_GT(b.token, a.token);
}

TEST_P(StoreConformance, ConcurrentAcquiresHaveOneWinner) {
  Workflow wf = MakeWorkflow();
  constexpr int kThreads = 6;
  for (int round = 0; round < 5; ++round) {
    Run run = MakeRun(wf);
    std::latch go(kThreads);
    std::atomic<int> wins{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        go.arrive_and_wait();
        auto r = store().AcquireRunLease(run.id, "owner-" + std::to_string(i), 60000);
        if (r.ok()) {
          ++wins;
        } else {
          EXPECT_EQ(CodeOf(r), Code::kAborted) << r.status().ToString();
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(wins.load(), 1);
  }
}

// ---------------------------------------------------------------- outbox

namespace {
OutboxMessage Message(const std::string& key, const std::string& payload) {
  OutboxMessage m;
  m.topic = "workflow.execution.requests";
  m.key = key;
  m.payload = payload;
  return m;
}
}  // namespace

TEST_P(StoreConformance, CreateRunWritesItsDispatchWithTheRunOnce) {
  Workflow wf = MakeWorkflow();
  NewRun nr;
  nr.id = "run-dispatched-1";
  nr.workflow_id = wf.id;
  nr.workflow_version = wf.version;
  nr.idempotency_key = "k1";
  nr.dispatch = Message(nr.id, R"({"run_id": "run-dispatched-1"})");
  auto first = Must(store().CreateRun(nr));
  EXPECT_TRUE(first.created);
  EXPECT_TRUE(first.run.dispatched_at.has_value());
  EXPECT_TRUE(Must(store().GetRun(nr.id)).dispatched_at.has_value());
  OutboxStats stats = Must(store().GetOutboxStats());
  EXPECT_EQ(stats.messages, 1);
  EXPECT_TRUE(stats.oldest_created_at.has_value());

  // The same idempotency key: the existing run, and no second message.
  nr.id = "run-dispatched-2";
  auto again = Must(store().CreateRun(nr));
  EXPECT_FALSE(again.created);
  EXPECT_EQ(again.run.id, "run-dispatched-1");
  EXPECT_EQ(Must(store().GetOutboxStats()).messages, 1);

  auto claimed = Must(store().ClaimOutbox(10, 60000));
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_GT(claimed[0].id, 0);
  EXPECT_EQ(claimed[0].topic, "workflow.execution.requests");
  EXPECT_EQ(claimed[0].key, "run-dispatched-1");
  EXPECT_EQ(claimed[0].payload, R"({"run_id": "run-dispatched-1"})");
  EXPECT_EQ(claimed[0].attempts, 0);

  // A run without dispatch writes no message.
  MakeRun(wf);
  EXPECT_EQ(Must(store().GetOutboxStats()).messages, 1);
}

// CreateRuns: the API's group commit of concurrent triggers.
TEST_P(StoreConformance, CreateRunsCreatesEachRunWithItsDispatch) {
  Workflow wf = MakeWorkflow();
  EXPECT_TRUE(store().CreateRuns({}).empty());
  TimeMs before = NowMs();
  std::vector<NewRun> batch(3);
  for (size_t i = 0; i < batch.size(); ++i) {
    batch[i].id = "run-batch-" + std::to_string(i);
    batch[i].workflow_id = wf.id;
    batch[i].workflow_version = 1;
    batch[i].input = json{{"i", i}};
  }
  batch[0].dispatch = Message("run-batch-0", R"({"run_id": "run-batch-0"})");
  batch[0].traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  batch[1].idempotency_key = "batch-key";
  batch[2].dispatch = Message("run-batch-2", R"({"run_id": "run-batch-2", "q": "\"x\\"})");
  batch[2].id = "";  // the store names it
  auto results = store().CreateRuns(batch);
  ASSERT_EQ(results.size(), 3u);
  for (size_t i = 0; i < results.size(); ++i) {
    ASSERT_TRUE(results[i].ok()) << i << ": " << results[i].status().ToString();
    const Store::CreatedRun& c = *results[i];
    EXPECT_TRUE(c.created) << i;
    EXPECT_EQ(c.run.workflow_id, wf.id);
    EXPECT_EQ(c.run.status, RunStatus::kPending);
    EXPECT_EQ(c.run.input, batch[i].input);
    EXPECT_EQ(c.run.attempt, 1);
    EXPECT_GE(c.run.created_at, before);
    EXPECT_EQ(c.run.dispatched_at.has_value(), batch[i].dispatch.has_value()) << i;
    ExpectSameRun(Must(store().GetRun(c.run.id)), c.run);
  }
  EXPECT_EQ(results[0]->run.id, "run-batch-0");
  EXPECT_EQ(results[0]->run.traceparent, batch[0].traceparent);
  EXPECT_EQ(results[1]->run.idempotency_key, "batch-key");
  EXPECT_EQ(results[2]->run.id.rfind("run-", 0), 0u) << results[2]->run.id;
  auto claimed = Must(store().ClaimOutbox(10, 60000));
  ASSERT_EQ(claimed.size(), 2u) << "one message per run with a dispatch, in order";
  EXPECT_EQ(claimed[0].key, "run-batch-0");
  EXPECT_EQ(claimed[0].payload, R"({"run_id": "run-batch-0"})");
  EXPECT_EQ(claimed[1].key, "run-batch-2");
  EXPECT_EQ(claimed[1].payload, batch[2].dispatch->payload);
}

TEST_P(StoreConformance, CreateRunsFailsABadRunAloneAndHonoursKeys) {
  Workflow wf = MakeWorkflow();
  Run existing = MakeRun(wf, json{{"old", true}}, "used-key");
  Run taken = MakeRun(wf);
  auto make = [&](const std::string& id, int version, const std::string& key) {
    NewRun r{id, wf.id, version, json{{"id", id}}, key};
    r.dispatch = Message(id, "{}");
    return r;
  };
  std::vector<NewRun> batch = {
      make("run-ok-1", 1, ""),
      make("run-no-version", 7, ""),       // NotFound
      make(taken.id, 1, ""),               // AlreadyExists
      make("run-repeat", 1, "used-key"),   // the existing run
      make("run-new-key", 1, "new-key"),   // created
      make("run-same-key", 1, "new-key"),  // the run just created in this batch
      make("run-ok-2", 1, ""),
  };
  batch.push_back(make("run-ok-3", 1, ""));
  batch.back().workflow_id = "wf-missing";  // NotFound
  auto results = store().CreateRuns(batch);
  ASSERT_EQ(results.size(), batch.size());
  ASSERT_TRUE(results[0].ok()) << results[0].status().ToString();
  EXPECT_TRUE(results[0]->created);
  EXPECT_EQ(CodeOf(results[1]), Code::kNotFound);
  EXPECT_EQ(CodeOf(results[2]), Code::kAlreadyExists);
  ASSERT_TRUE(results[3].ok()) << results[3].status().ToString();
  EXPECT_FALSE(results[3]->created);
  ExpectSameRun(results[3]->run, existing);
  ASSERT_TRUE(results[4].ok()) << results[4].status().ToString();
  EXPECT_TRUE(results[4]->created);
  EXPECT_EQ(results[4]->run.id, "run-new-key");
  ASSERT_TRUE(results[5].ok()) << results[5].status().ToString();
  EXPECT_FALSE(results[5]->created);
  EXPECT_EQ(results[5]->run.id, "run-new-key");
  ASSERT_TRUE(results[6].ok()) << results[6].status().ToString();
  EXPECT_TRUE(results[6]->created);
  EXPECT_EQ(CodeOf(results[7]), Code::kNotFound);

  EXPECT_EQ(CodeOf(store().GetRun("run-no-version")), Code::kNotFound);
  EXPECT_EQ(CodeOf(store().GetRun("run-repeat")), Code::kNotFound);
  EXPECT_EQ(CodeOf(store().GetRun("run-same-key")), Code::kNotFound);
  EXPECT_EQ(Must(store().GetRun(taken.id)).input, json::object()) << "unchanged";
  std::set<std::string> keys;
  for (const OutboxMessage& m : Must(store().ClaimOutbox(100, 60000))) keys.insert(m.key);
  EXPECT_EQ(keys, (std::set<std::string>{"run-ok-1", "run-new-key", "run-ok-2"}))
      << "messages of created runs only";
  RunFilter f;
  f.workflow_id = wf.id;
  EXPECT_EQ(AllRunPages(store(), f).size(), 5u);
}

TEST_P(StoreConformance, ConcurrentCreateRunsCreateEachKeyOnce) {
  Workflow wf = MakeWorkflow();
  constexpr int kThreads = 4;
  constexpr int kKeys = 20;
  std::latch go(kThreads);
  std::mutex mu;
  std::map<std::string, std::set<std::string>> run_ids;  // key -> run ids answered
  std::atomic<int> created{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<NewRun> batch;
      for (int k = 0; k < kKeys; ++k) {
        int key = t % 2 ? k : kKeys - 1 - k;  // opposite orders
        batch.push_back(NewRun{"", wf.id, 1, json::object(), "key-" + std::to_string(key)});
        batch.back().dispatch = Message("m", "{}");
      }
      go.arrive_and_wait();
      auto results = store().CreateRuns(batch);
      ASSERT_EQ(results.size(), batch.size());
      std::lock_guard<std::mutex> lock(mu);
      for (size_t i = 0; i < results.size(); ++i) {
        ASSERT_TRUE(results[i].ok()) << results[i].status().ToString();
        if (results[i]->created) ++created;
        run_ids[batch[i].idempotency_key].insert(results[i]->run.id);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(created.load(), kKeys);
  ASSERT_EQ(run_ids.size(), static_cast<size_t>(kKeys));
  for (const auto& [key, ids] : run_ids) EXPECT_EQ(ids.size(), 1u) << key << ": every caller got the one run";
  EXPECT_EQ(Must(store().GetOutboxStats()).messages, kKeys);
}

TEST_P(StoreConformance, OutboxClaimHidesDeferDelaysDeleteRemoves) {
  Workflow wf = MakeWorkflow();
  for (int i = 0; i < 3; ++i) {
    NewRun nr;
    nr.id = "run-ob-" + std::to_string(i);
    nr.workflow_id = wf.id;
    nr.workflow_version = wf.version;
    nr.dispatch = Message(nr.id, "p" + std::to_string(i));
    Must(store().CreateRun(nr));
  }
  auto first = Must(store().ClaimOutbox(2, 60000));
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].payload, "p0");  // oldest first
  EXPECT_EQ(first[1].payload, "p1");
  auto second = Must(store().ClaimOutbox(10, 60000));
  ASSERT_EQ(second.size(), 1u) << "claimed messages are hidden from other claimers";
  EXPECT_EQ(second[0].payload, "p2");
  EXPECT_TRUE(Must(store().ClaimOutbox(10, 60000)).empty());

  // A failed publish: due again after retry_ms, with the error recorded.
  MustOk(store().DeferOutbox({first[0].id, first[1].id}, "broker unreachable", 0));
  auto retried = Must(store().ClaimOutbox(10, 60000));
  ASSERT_EQ(retried.size(), 2u);
  EXPECT_EQ(retried[0].attempts, 1);
  EXPECT_EQ(retried[0].last_error, "broker unreachable");
  MustOk(store().DeferOutbox({second[0].id}, "later", 60000));

  MustOk(store().DeleteOutbox({retried[0].id, retried[1].id}));
  MustOk(store().DeleteOutbox({}));
  EXPECT_EQ(Must(store().GetOutboxStats()).messages, 1);
  EXPECT_TRUE(Must(store().ClaimOutbox(10, 60000)).empty()) << "deferred for 60 s";
  MustOk(store().DeleteOutbox({second[0].id}));
  OutboxStats empty = Must(store().GetOutboxStats());
  EXPECT_EQ(empty.messages, 0);
  EXPECT_FALSE(empty.oldest_created_at.has_value());
}

TEST_P(StoreConformance, ConcurrentClaimsNeverShareAMessage) {
  Workflow wf = MakeWorkflow();
  constexpr int kMessages = 60;
  for (int i = 0; i < kMessages; ++i) {
    NewRun nr;
    nr.id = "run-cc-" + std::to_string(i);
    nr.workflow_id = wf.id;
    nr.workflow_version = wf.version;
    nr.dispatch = Message(nr.id, "p");
    Must(store().CreateRun(nr));
  }
  constexpr int kThreads = 4;
  std::latch go(kThreads);
  std::mutex mu;
  std::vector<int64_t> all;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      go.arrive_and_wait();
      while (true) {
        auto got = store().ClaimOutbox(5, 60000);
        ASSERT_TRUE(got.ok()) << got.status().ToString();
        if (got->empty()) break;
        std::lock_guard<std::mutex> lock(mu);
        for (const auto& m : *got) all.push_back(m.id);
      }
    });
  }
  for (auto& t : threads) t.join();
  std::set<int64_t> distinct(all.begin(), all.end());
  EXPECT_EQ(all.size(), static_cast<size_t>(kMessages));
  EXPECT_EQ(distinct.size(), static_cast<size_t>(kMessages));
}

TEST_P(StoreConformance, RetryWritesItsDispatchAndFreesTheLease) {
  Workflow wf = MakeWorkflow();
  Run run = MakeRun(wf);
  RunLease a = Must(store().AcquireRunLease(run.id, "owner-a", 60000));
  RunTransition start{run.id, RunStatus::kPending, RunStatus::kRunning};
  start.lease_token = a.token;
  Must(store().TransitionRun(start));
  RunTransition fail{run.id, RunStatus::kRunning, RunStatus::kFailed};
  fail.error_message = "boom";
  fail.lease_token = a.token;
  Run failed = Must(store().TransitionRun(fail));
  EXPECT_EQ(failed.lease_owner, "");
  EXPECT_EQ(Must(store().GetOutboxStats()).messages, 0);

  RunTransition retry{run.id, RunStatus::kFailed, RunStatus::kPending};
  retry.dispatch = Message(run.id, "retry");
  Run pending = Must(store().TransitionRun(retry));
  EXPECT_EQ(pending.status, RunStatus::kPending);
  EXPECT_TRUE(pending.dispatched_at.has_value());
  auto claimed = Must(store().ClaimOutbox(10, 60000));
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].payload, "retry");

  // A transition that does not apply writes no message.
  auto wrong = store().TransitionRun(retry);
  EXPECT_EQ(CodeOf(wrong), Code::kFailedPrecondition);
  EXPECT_EQ(Must(store().GetOutboxStats()).messages, 1);
  // And anyone may take the retried run.
  EXPECT_TRUE(store().AcquireRunLease(run.id, "owner-b", 60000).ok());
}

TEST_P(StoreConformance, StrandedRunsAreFoundAndRedispatchedOnce) {
  Workflow wf = MakeWorkflow();
  Run never = MakeRun(wf);                      // no dispatch recorded
  Run held = MakeRun(wf);                       // an executor holds it
  Must(store().AcquireRunLease(held.id, "owner-a", 60000));
  Run expired = MakeRun(wf);                    // its executor died
  Must(store().AcquireRunLease(expired.id, "owner-dead", 1));
  Run finished = RunIn(wf, RunStatus::kCompleted);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));

  std::set<std::string> ids;
  for (const Run& r : Must(store().ListStrandedRuns(0, 100))) ids.insert(r.id);
  EXPECT_TRUE(ids.count(never.id));
  EXPECT_TRUE(ids.count(expired.id));
  EXPECT_FALSE(ids.count(held.id));
  EXPECT_FALSE(ids.count(finished.id));
  EXPECT_EQ(Must(store().ListStrandedRuns(0, 1)).size(), 1u);

  EXPECT_TRUE(Must(store().RedispatchRun(never.id, 60000, Message(never.id, "again"))));
  EXPECT_FALSE(Must(store().RedispatchRun(never.id, 60000, Message(never.id, "twice"))))
      << "dispatched just now: not stranded for another minute";
  EXPECT_FALSE(Must(store().RedispatchRun(held.id, 0, Message(held.id, "held"))));
  EXPECT_FALSE(Must(store().RedispatchRun(finished.id, 0, Message(finished.id, "done"))));
  auto claimed = Must(store().ClaimOutbox(10, 60000));
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].payload, "again");
  EXPECT_TRUE(Must(store().GetRun(never.id)).dispatched_at.has_value());

  ids.clear();
  for (const Run& r : Must(store().ListStrandedRuns(60000, 100))) ids.insert(r.id);
  EXPECT_FALSE(ids.count(never.id)) << "dispatched within the last minute";
}

namespace {
std::set<std::string> StrandedIds(Store& store, int64_t older_than_ms) {
  std::set<std::string> ids;
  for (const Run& r : Must(store.ListStrandedRuns(older_than_ms, 1000))) ids.insert(r.id);
  return ids;
}
}  // namespace

// Issue 7: a run merely waiting in a queue backlog (never taken by an
// executor) was dispatched again at every sweep once its request was older
// than stranded_after: ~20,000 duplicates for 20,000 waiting runs.
TEST_P(StoreConformance, ARunNobodyTakesIsRedispatchedWithBackoff) {
  Workflow wf = MakeWorkflow();
  NewRun nr;
  nr.id = "run-backlog";
  nr.workflow_id = wf.id;
  nr.workflow_version = wf.version;
  nr.dispatch = Message(nr.id, "first");
  Run queued = Must(store().CreateRun(nr)).run;
  // Try every ~2 ms for 600 ms with older_than 20 ms. Dispatch k (k = 1, 2
  // ...) is due 20 x (2^k - 1) ms after the first, so at most 4 fit in
  // 600 ms (5 with some slack); without the backoff one per 20 ms did (~30).
  constexpr int64_t kOlder = 20;
  const TimeMs start = NowMs();
  int redispatched = 0;
  while (NowMs() - start < 600) {
    if (Must(store().RedispatchRun(queued.id, kOlder, Message(queued.id, "again")))) ++redispatched;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_GE(redispatched, 1) << "a lost request is still replaced";
  EXPECT_LE(redispatched, 5) << "re-dispatched at every try, not backed off";
}

TEST_P(StoreConformance, ARunWhoseExecutorDiedIsRecoveredWithoutBackoff) {
  Workflow wf = MakeWorkflow();
  // Both dispatched 4 times with nobody taking them (older_than 0: due as
  // soon as the clock moved): backed off to 16 x older_than.
  Run taken = MakeRun(wf);
  Run waiting = MakeRun(wf);
  for (int i = 0; i < 4; ++i) {
    // Past the last dispatch's millisecond (PostgreSQL rounds its clock to one).
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
    EXPECT_TRUE(Must(store().RedispatchRun(taken.id, 0, Message(taken.id, "t"))));
    EXPECT_TRUE(Must(store().RedispatchRun(waiting.id, 0, Message(waiting.id, "w"))));
  }
  // An executor takes one after its last dispatch and dies: its lease lapses.
  Must(store().AcquireRunLease(taken.id, "owner-dead", 1));
  std::this_thread::sleep_for(std::chrono::milliseconds(60));

  std::set<std::string> ids = StrandedIds(store(), 50);
  EXPECT_TRUE(ids.count(taken.id)) << "taken since its last dispatch: recovered after older_than, not backed off";
  EXPECT_FALSE(ids.count(waiting.id)) << "4 re-dispatches nobody took: not stranded for 16 x 50 ms";
  EXPECT_TRUE(Must(store().RedispatchRun(taken.id, 50, Message(taken.id, "recovered"))));
  EXPECT_FALSE(Must(store().RedispatchRun(waiting.id, 50, Message(waiting.id, "early"))));
  EXPECT_FALSE(StrandedIds(store(), 50).count(taken.id)) << "just dispatched again";
}

TEST_P(StoreConformance, ARetryRestartsTheBackoff) {
  Workflow wf = MakeWorkflow();
  Run run = MakeRun(wf);
  for (int i = 0; i < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(3));  // past the last dispatch's millisecond
    EXPECT_TRUE(Must(store().RedispatchRun(run.id, 0, Message(run.id, "again"))));
  }
  RunLease lease = Must(store().AcquireRunLease(run.id, "owner-a", 60000));
  RunTransition start{run.id, RunStatus::kPending, RunStatus::kRunning};
  start.lease_token = lease.token;
  Must(store().TransitionRun(start));
  RunTransition fail{run.id, RunStatus::kRunning, RunStatus::kFailed};
  fail.error_message = "boom";
  fail.lease_token = lease.token;
  Must(store().TransitionRun(fail));
  RunTransition retry{run.id, RunStatus::kFailed, RunStatus::kPending};
  retry.dispatch = Message(run.id, "retry");
  Must(store().TransitionRun(retry));
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  EXPECT_TRUE(StrandedIds(store(), 50).count(run.id)) << "a retried run's request is replaced after older_than";
}

TEST_P(StoreConformance, TheWritersListenerGetsItsMessagesCommittedAndClaimed) {
  std::mutex mu;
  std::vector<OutboxMessage> got;
  auto handed = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return got;
  };
  ASSERT_TRUE(store().SetOutboxListener(
      [&](const OutboxMessage& m) {
        std::lock_guard<std::mutex> lock(mu);
        got.push_back(m);
      },
      60000));
  Workflow wf = MakeWorkflow();
  NewRun nr;
  nr.id = "run-fast-1";
  nr.workflow_id = wf.id;
  nr.workflow_version = wf.version;
  nr.idempotency_key = "fast";
  nr.dispatch = Message(nr.id, "trigger");
  Must(store().CreateRun(nr));
  auto h = handed();
  ASSERT_EQ(h.size(), 1u) << "handed over before CreateRun returned";
  EXPECT_GT(h[0].id, 0);
  EXPECT_EQ(h[0].topic, "workflow.execution.requests");
  EXPECT_EQ(h[0].key, "run-fast-1");
  EXPECT_EQ(h[0].payload, "trigger");
  EXPECT_GT(h[0].created_at, 0);
  EXPECT_EQ(Must(store().GetOutboxStats()).messages, 1) << "in the outbox until its writer deletes it";
  EXPECT_TRUE(Must(store().ClaimOutbox(10, 60000)).empty()) << "claimed by its writer";

  // Nothing is handed over for a write that writes no message.
  nr.id = "run-fast-2";
  EXPECT_FALSE(Must(store().CreateRun(nr)).created);
  NewRun missing = nr;
  missing.id = "run-fast-3";
  missing.idempotency_key.clear();
  missing.workflow_version = 99;
  EXPECT_EQ(CodeOf(store().CreateRun(missing)), Code::kNotFound);
  Run running = RunIn(wf, RunStatus::kRunning);
  RunTransition wrong{running.id, RunStatus::kFailed, RunStatus::kPending};
  wrong.dispatch = Message(running.id, "not a retry");
  EXPECT_EQ(CodeOf(store().TransitionRun(wrong)), Code::kFailedPrecondition);
  EXPECT_EQ(handed().size(), 1u);

  // A retry and a re-dispatch are handed over too.
  Run failed = RunIn(wf, RunStatus::kFailed);
  RunTransition retry{failed.id, RunStatus::kFailed, RunStatus::kPending};
  retry.dispatch = Message(failed.id, "retry");
  Must(store().TransitionRun(retry));
  Run lost = MakeRun(wf);
  WaitForNextMs();
  EXPECT_TRUE(Must(store().RedispatchRun(lost.id, 0, Message(lost.id, "again"))));
  h = handed();
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[1].key, failed.id);
  EXPECT_EQ(h[1].payload, "retry");
  EXPECT_EQ(h[2].key, lost.id);
  EXPECT_EQ(h[2].payload, "again");
  EXPECT_LT(h[0].id, h[1].id);
  EXPECT_LT(h[1].id, h[2].id);
  EXPECT_TRUE(Must(store().ClaimOutbox(10, 60000)).empty());
  MustOk(store().DeleteOutbox({h[0].id, h[1].id}));
  EXPECT_EQ(Must(store().GetOutboxStats()).messages, 1);

  // A batch of triggers (CreateRuns): each message created is handed over
  // with its own id; the one of a repeated key is not written at all.
  std::vector<NewRun> batch;
  for (const char* id : {"run-fast-b1", "run-fast-b2"}) {
    NewRun b = nr;
    b.id = id;
    b.idempotency_key = std::string("key-") + id;
    b.dispatch = Message(b.id, std::string("batch ") + id);
    batch.push_back(b);
  }
  NewRun again = nr;  // idempotency key "fast" is taken
  again.id = "run-fast-b3";
  again.dispatch = Message(again.id, "repeat");
  batch.push_back(again);
  std::vector<Result<Store::CreatedRun>> created = store().CreateRuns(batch);
  ASSERT_EQ(created.size(), 3u);
  EXPECT_TRUE(Must(created[0]).created);
  EXPECT_TRUE(Must(created[1]).created);
  EXPECT_FALSE(Must(created[2]).created);
  h = handed();
  ASSERT_EQ(h.size(), 5u);
  std::set<std::string> keys{h[3].key, h[4].key};
  EXPECT_EQ(keys, (std::set<std::string>{"run-fast-b1", "run-fast-b2"}));
  for (int k : {3, 4}) EXPECT_EQ(h[k].payload, "batch " + h[k].key);
  EXPECT_NE(h[3].id, h[4].id);
  EXPECT_TRUE(Must(store().ClaimOutbox(10, 60000)).empty()) << "claimed by their writer";
  MustOk(store().DeleteOutbox({h[3].id, h[4].id}));
  EXPECT_EQ(Must(store().GetOutboxStats()).messages, 1);
  got.resize(3);

  // Its writer died: once the claim lapses any relay takes the message.
  ASSERT_TRUE(store().SetOutboxListener(
      [&](const OutboxMessage& m) {
        std::lock_guard<std::mutex> lock(mu);
        got.push_back(m);
      },
      20));
  Run orphan = MakeRun(wf);
  WaitForNextMs();
  EXPECT_TRUE(Must(store().RedispatchRun(orphan.id, 0, Message(orphan.id, "orphan"))));
  ASSERT_EQ(handed().size(), 4u);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto claimed = Must(store().ClaimOutbox(10, 60000));
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].id, handed()[3].id);
  EXPECT_EQ(claimed[0].payload, "orphan");

  // Off: messages are due at once and nobody is called.
  ASSERT_TRUE(store().SetOutboxListener({}, 0));
  Run plain = MakeRun(wf);
  WaitForNextMs();
  EXPECT_TRUE(Must(store().RedispatchRun(plain.id, 0, Message(plain.id, "plain"))));
  EXPECT_EQ(handed().size(), 4u);
  claimed = Must(store().ClaimOutbox(10, 60000));
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].payload, "plain");
}

// ---------------------------------------------------------------- agents

TEST_P(StoreConformance, AgentsCrud) {
  Agent echo;
  echo.name = "echo";
  echo.url = "http://127.0.0.1:9000/agents/echo";
  echo.timeout_ms = 1500;
  echo.max_concurrency = 4;
  echo.metadata = json{{"team", "core"}, {"tags", {"a", "b"}}};
  TimeMs before = NowMs();
  Agent created = Must(store().CreateAgent(echo));
  EXPECT_EQ(created.name, "echo");
  EXPECT_EQ(created.url, echo.url);
  EXPECT_EQ(created.timeout_ms, 1500);
  EXPECT_EQ(created.max_concurrency, 4);
  EXPECT_EQ(created.metadata, echo.metadata);
  EXPECT_GE(created.created_at, before);
  EXPECT_EQ(created.updated_at, created.created_at);
  ExpectSameAgent(Must(store().GetAgent("echo")), created);

  Agent dup = echo;
  dup.url = "http://elsewhere";
  EXPECT_EQ(CodeOf(store().CreateAgent(dup)), Code::kAlreadyExists);
  ExpectSameAgent(Must(store().GetAgent("echo")), created);

  WaitForNextMs();
  Agent changed = echo;
  changed.url = "http://127.0.0.1:9001/echo";
  changed.timeout_ms = 99;
  changed.max_concurrency = 0;
  changed.metadata = json::object();
  Agent replaced = Must(store().UpsertAgent(changed));
  EXPECT_EQ(replaced.created_at, created.created_at) << "upsert keeps created_at";
  EXPECT_GT(replaced.updated_at, created.updated_at);
  EXPECT_EQ(replaced.url, changed.url);
  EXPECT_EQ(replaced.timeout_ms, 99);
  EXPECT_EQ(replaced.max_concurrency, 0);
  EXPECT_EQ(replaced.metadata, json::object());
  ExpectSameAgent(Must(store().GetAgent("echo")), replaced);

  Agent fresh;
  fresh.name = "alpha";
  fresh.url = "http://alpha";
  Agent upserted = Must(store().UpsertAgent(fresh));
  EXPECT_GT(upserted.created_at, 0);
  EXPECT_EQ(upserted.updated_at, upserted.created_at);
  EXPECT_EQ(upserted.timeout_ms, 30000);
  ExpectSameAgent(Must(store().GetAgent("alpha")), upserted);
  Agent zed = fresh;
  zed.name = "zed";
  Must(store().CreateAgent(zed));

  std::vector<Agent> all = Must(store().ListAgents());
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].name, "alpha");
  EXPECT_EQ(all[1].name, "echo");
  EXPECT_EQ(all[2].name, "zed");
  ExpectSameAgent(all[1], replaced);

  MustOk(store().DeleteAgent("echo"));
  EXPECT_EQ(CodeOf(store().GetAgent("echo")), Code::kNotFound);
  EXPECT_EQ(store().DeleteAgent("echo").code(), Code::kNotFound);
  EXPECT_EQ(store().DeleteAgent("never").code(), Code::kNotFound);
  EXPECT_EQ(Must(store().ListAgents()).size(), 2u);
  // A deleted name can be registered again.
  EXPECT_TRUE(store().CreateAgent(echo).ok());
}

TEST_P(StoreConformance, KafkaAgentsKeepTheirTransportAndTopic) {
  Agent k;
  k.name = "summarizer";
  k.transport = AgentTransport::kKafka;
  k.topic = "agent.summarizer.requests";
  Agent created = Must(store().CreateAgent(k));
  EXPECT_EQ(created.transport, AgentTransport::kKafka);
  EXPECT_EQ(created.url, "");
  ExpectSameAgent(Must(store().GetAgent("summarizer")), created);
  // And back to HTTP by a replace.
  Agent h;
  h.name = "summarizer";
  h.url = "http://127.0.0.1:9/s";
  h.health_url = "http://127.0.0.1:9/healthz";
  Agent replaced = Must(store().UpsertAgent(h));
  EXPECT_EQ(replaced.transport, AgentTransport::kHttp);
  EXPECT_EQ(replaced.topic, "");
  EXPECT_EQ(replaced.health_url, h.health_url);
  ExpectSameAgent(Must(store().GetAgent("summarizer")), replaced);
}

TEST_P(StoreConformance, AgentHealthIsRecordedAndKeptAcrossReplace) {
  Agent a;
  a.name = "echo";
  a.url = "http://127.0.0.1:9/echo";
  a.health = AgentHealth::kUnhealthy;  // ignored: observed fields are not configuration
  a.last_seen_at = 5;
  Agent created = Must(store().CreateAgent(a));
  EXPECT_EQ(created.health, AgentHealth::kUnknown);
  EXPECT_EQ(created.last_seen_at, std::nullopt);
  EXPECT_EQ(created.health_checked_at, std::nullopt);
  ExpectSameAgent(Must(store().GetAgent("echo")), created);

  MustOk(store().RecordAgentHealth({"echo", AgentHealth::kHealthy, "ignored when healthy", 1000}));
  Agent healthy = Must(store().GetAgent("echo"));
  EXPECT_EQ(healthy.health, AgentHealth::kHealthy);
  EXPECT_EQ(healthy.health_error, "");
  EXPECT_EQ(healthy.last_seen_at, 1000);
  EXPECT_EQ(healthy.health_checked_at, 1000);
  EXPECT_EQ(healthy.updated_at, created.updated_at) << "health is not a configuration change";

  MustOk(store().RecordAgentHealth({"echo", AgentHealth::kUnhealthy, "GET /healthz: 503", 2000}));
  Agent sick = Must(store().GetAgent("echo"));
  EXPECT_EQ(sick.health, AgentHealth::kUnhealthy);
  EXPECT_EQ(sick.health_error, "GET /healthz: 503");
  EXPECT_EQ(sick.last_seen_at, 1000) << "last seen healthy stays";
  EXPECT_EQ(sick.health_checked_at, 2000);

  // A PUT changes configuration but keeps what was observed.
  Agent changed = a;
  changed.url = "http://127.0.0.1:9/echo2";
  Agent replaced = Must(store().UpsertAgent(changed));
  EXPECT_EQ(replaced.url, changed.url);
  EXPECT_EQ(replaced.health, AgentHealth::kUnhealthy);
  EXPECT_EQ(replaced.health_error, "GET /healthz: 503");
  EXPECT_EQ(replaced.last_seen_at, 1000);
  EXPECT_EQ(replaced.health_checked_at, 2000);
  ExpectSameAgent(Must(store().GetAgent("echo")), replaced);
  ASSERT_EQ(Must(store().ListAgents()).size(), 1u);
  ExpectSameAgent(Must(store().ListAgents())[0], replaced);

  MustOk(store().RecordAgentHealth({"echo", AgentHealth::kHealthy, "", 3000}));
  Agent back = Must(store().GetAgent("echo"));
  EXPECT_EQ(back.health, AgentHealth::kHealthy);
  EXPECT_EQ(back.health_error, "");
  EXPECT_EQ(back.last_seen_at, 3000);

  EXPECT_EQ(store().RecordAgentHealth({"nobody", AgentHealth::kHealthy, "", 1}).code(), Code::kNotFound);
}

TEST_P(StoreConformance, NoAgentsIsAnEmptyList) { EXPECT_TRUE(Must(store().ListAgents()).empty()); }

// ---------------------------------------------------------------- API keys

namespace {

ApiKey MakeKey(const std::string& id, Role role, const std::string& name = "") {
  ApiKey k;
  k.id = id;
  k.name = name;
  k.role = role;
  k.secret_hash = std::string(64, 'a');
  return k;
}

void ExpectSameKey(const ApiKey& a, const ApiKey& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.role, b.role);
  EXPECT_EQ(a.secret_hash, b.secret_hash);
  EXPECT_EQ(a.created_at, b.created_at);
  EXPECT_EQ(a.last_used_at, b.last_used_at);
  EXPECT_EQ(a.revoked_at, b.revoked_at);
}

}  // namespace

TEST_P(StoreConformance, ApiKeysAreCreatedReadAndListedOldestFirst) {
  EXPECT_TRUE(Must(store().ListApiKeys()).empty());
  TimeMs before = NowMs();
  ApiKey admin = MakeKey("0123456789abcdef", Role::kAdmin, "ci pipeline");
  admin.secret_hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
  ApiKey created = Must(store().CreateApiKey(admin));
  EXPECT_EQ(created.id, admin.id);
  EXPECT_EQ(created.name, "ci pipeline");
  EXPECT_EQ(created.role, Role::kAdmin);
  EXPECT_EQ(created.secret_hash, admin.secret_hash);
  EXPECT_GE(created.created_at, before);
  EXPECT_FALSE(created.last_used_at);
  EXPECT_FALSE(created.revoked_at);
  ExpectSameKey(Must(store().GetApiKey(admin.id)), created);

  EXPECT_EQ(CodeOf(store().CreateApiKey(MakeKey(admin.id, Role::kViewer))), Code::kAlreadyExists);
  ExpectSameKey(Must(store().GetApiKey(admin.id)), created);
  EXPECT_EQ(CodeOf(store().GetApiKey("ffffffffffffffff")), Code::kNotFound);

  WaitForNextMs();
  ApiKey viewer = Must(store().CreateApiKey(MakeKey("1111111111111111", Role::kViewer)));
  ApiKey op = Must(store().CreateApiKey(MakeKey("0000000000000000", Role::kOperator)));
  EXPECT_EQ(viewer.name, "");
  std::vector<ApiKey> all = Must(store().ListApiKeys());
  ASSERT_EQ(all.size(), 3u);
  ExpectSameKey(all[0], created);
  // Same millisecond or later: created_at, then id.
  if (op.created_at == viewer.created_at) {
    EXPECT_EQ(all[1].id, op.id);
    EXPECT_EQ(all[2].id, viewer.id);
  } else {
    EXPECT_EQ(all[1].id, viewer.id);
    EXPECT_EQ(all[2].id, op.id);
  }
  EXPECT_EQ(all[1].role == Role::kOperator ? all[2].role : all[1].role, Role::kViewer);
}

TEST_P(StoreConformance, RevokedApiKeysStayListedAndKeepTheirFirstRevocationTime) {
  ApiKey k = Must(store().CreateApiKey(MakeKey("abcdefabcdefabcd", Role::kOperator, "old")));
  TimeMs before = NowMs();
  ApiKey revoked = Must(store().RevokeApiKey(k.id));
  ASSERT_TRUE(revoked.revoked_at);
  EXPECT_GE(*revoked.revoked_at, before);
  EXPECT_EQ(revoked.role, Role::kOperator);
  EXPECT_EQ(revoked.created_at, k.created_at);
  ExpectSameKey(Must(store().GetApiKey(k.id)), revoked);
  WaitForNextMs();
  ApiKey again = Must(store().RevokeApiKey(k.id));
  EXPECT_EQ(again.revoked_at, revoked.revoked_at) << "revoking twice keeps the first time";
  std::vector<ApiKey> all = Must(store().ListApiKeys());
  ASSERT_EQ(all.size(), 1u);
  ExpectSameKey(all[0], revoked);
  EXPECT_EQ(CodeOf(store().RevokeApiKey("nosuchkey0000000")), Code::kNotFound);
}

TEST_P(StoreConformance, ApiKeyUseIsRecorded) {
  ApiKey k = Must(store().CreateApiKey(MakeKey("feedfeedfeedfeed", Role::kViewer)));
  MustOk(store().RecordApiKeyUse(k.id, k.created_at + 5000));
  ApiKey used = Must(store().GetApiKey(k.id));
  ASSERT_TRUE(used.last_used_at);
  EXPECT_EQ(*used.last_used_at, k.created_at + 5000);
  EXPECT_FALSE(used.revoked_at);
  EXPECT_EQ(store().RecordApiKeyUse("nosuchkey0000000", NowMs()).code(), Code::kNotFound);
}

// ---------------------------------------------------------------- JSON

namespace {

std::vector<json> JsonSamples() {
  std::string big(256 << 10, 'x');  // far above a page: overflow pages
  for (size_t i = 0; i < big.size(); i += 97) big[i] = static_cast<char>('a' + i % 26);
  json big_array = json::array();
  for (int i = 0; i < 2000; ++i) big_array.push_back(json{{"i", i}, {"s", std::to_string(i)}});
  return {
      json::object(),
      json::array(),
      json{{"a", {{"b", {{"c", {{"d", json::array({1, {{"e", nullptr}}, "f", true})}}}}}}}},
      json{{"unicode", "héllo wörld — 日本語 — 🚀🎉 — עברית"}, {"ключ", "значение"}, {"emoji 🔑", "✓"}},
      json{{"escapes", "quote \" backslash \\ slash / newline \n tab \t cr \r bell \x07 del \x7f"}},
      json{{"empty", ""}, {"space", " "}, {"null", nullptr}, {"false", false}, {"zero", 0}},
      json{{"int_max", std::numeric_limits<int64_t>::max()},
           {"int_min", std::numeric_limits<int64_t>::min()},
           {"uint_max", std::numeric_limits<uint64_t>::max()},
           {"pi", 3.141592653589793},
           {"tenth", 0.1},
           {"tiny", 5e-324},
           {"huge", 1e300},
           {"neg", -2.5}},
      json("just a string"),
      json(12345),
      json(true),
      json{{"big", big}},
      big_array,
  };
}

}  // namespace

TEST_P(StoreConformance, JsonRoundTripsEverywhere) {
  int n = 0;
  for (const json& v : JsonSamples()) {
    SCOPED_TRACE("sample " + std::to_string(n) + ": " + v.dump().substr(0, 80));
    // Workflow plan.
    Workflow w = Must(store().CreateWorkflow(NewWorkflow{"json-" + std::to_string(n++), "", v}));
    EXPECT_EQ(Must(store().GetWorkflow(w.id)).plan, v);
    Workflow w2 = Must(store().UpdateWorkflow(w.id, NewWorkflow{w.name, "", v}));
    EXPECT_EQ(Must(store().GetWorkflow(w.id, w2.version)).plan, v);
    // Run input and output.
    Run run = MakeRun(w2, v);
    EXPECT_EQ(Must(store().GetRun(run.id)).input, v);
    Must(store().TransitionRun({run.id, RunStatus::kPending, RunStatus::kRunning}));
    RunTransition done{run.id, RunStatus::kRunning, RunStatus::kCompleted};
    done.output = v;
    EXPECT_EQ(Must(store().TransitionRun(done)).output, v);
    Run got = Must(store().GetRun(run.id));
    EXPECT_EQ(got.output, v);
    EXPECT_EQ(got.input, v);
    RunFilter f;
    f.workflow_id = w.id;
    f.status = RunStatus::kCompleted;
    f.limit = 1000;
    bool listed = false;
    for (const Run& r : Must(store().ListRuns(f)).items) {
      if (r.id == run.id) {
        listed = true;
        EXPECT_EQ(r.output, v);
        EXPECT_EQ(r.input, v);
      }
    }
    EXPECT_TRUE(listed);
    // Step input and output.
    StepExecution e;
    e.run_id = run.id;
    e.step_id = "s";
    e.input = v;
    int64_t id = Must(store().InsertStep(e));
    MustOk(store().FinishStep({run.id, id, StepStatus::kCompleted, v, ""}));
    std::vector<StepExecution> steps = Must(store().ListSteps(run.id));
    ASSERT_EQ(steps.size(), 1u);
    EXPECT_EQ(steps[0].input, v);
    EXPECT_EQ(steps[0].output, v);
    // Agent metadata.
    Agent a;
    a.name = "agent-" + std::to_string(n);
    a.url = "http://x";
    a.metadata = v;
    Must(store().CreateAgent(a));
    EXPECT_EQ(Must(store().GetAgent(a.name)).metadata, v);
  }
}

TEST_P(StoreConformance, JsonNullIsKeptApartFromEmptyValues) {
  Workflow wf = MakeWorkflow();
  Run run = RunIn(wf, RunStatus::kRunning);
  for (const json& out : {json(nullptr), json(""), json::object(), json::array(), json(0), json(false)}) {
    Run r = RunIn(wf, RunStatus::kRunning);
    RunTransition t{r.id, RunStatus::kRunning, RunStatus::kCompleted};
    t.output = out;
    Must(store().TransitionRun(t));
    json got = Must(store().GetRun(r.id)).output;
    // (JSON equality tells null, "", {}, [], 0 and false apart.)
    EXPECT_EQ(got, out) << out.dump();
    EXPECT_EQ(got.is_null(), out.is_null()) << out.dump();
  }
  StepExecution e;
  e.run_id = run.id;
  e.step_id = "s";
  e.input = nullptr;
  Must(store().InsertStep(e));
  EXPECT_TRUE(Must(store().ListSteps(run.id)).at(0).input.is_null());
}

// Agents may return any JSON string, including U+0000 (PostgreSQL's jsonb
// cannot store it: a backend must keep JSON as text or escape it).
TEST_P(StoreConformance, JsonWithNulCharacterRoundTrips) {
  Workflow wf = MakeWorkflow();
  json v{{"nul", std::string("a\0b", 3)}, {"ctl", "\x01\x1f"}};
  Run run = MakeRun(wf, v);
  EXPECT_EQ(Must(store().GetRun(run.id)).input, v);
}

// ---------------------------------------------------------------- misc

TEST_P(StoreConformance, Ping) { MustOk(store().Ping()); }

TEST_P(StoreConformance, ConcurrentMixedWorkload) {
  Workflow wf = MakeWorkflow();
  constexpr int kThreads = 4;
  constexpr int kRunsPerThread = 25;
  std::latch go(kThreads);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      go.arrive_and_wait();
      for (int i = 0; i < kRunsPerThread; ++i) {
        auto created = store().CreateRun(NewRun{"", wf.id, 1, json{{"t", t}, {"i", i}}, ""});
        if (!created.ok()) {
          ++failures;
          continue;
        }
        const std::string& id = created->run.id;
        bool ok = store().TransitionRun({id, RunStatus::kPending, RunStatus::kRunning}).ok();
        StepExecution e;
        e.run_id = id;
        e.step_id = "only";
        auto step = store().InsertStep(e);
        ok = ok && step.ok() && store().FinishStep({id, *step, StepStatus::kCompleted, json(i), ""}).ok();
        RunTransition done{id, RunStatus::kRunning, RunStatus::kCompleted};
        done.output = json(i);
        ok = ok && store().TransitionRun(done).ok();
        ok = ok && store().ListSteps(id).ok() && store().GetRun(id).ok();
        if (!ok) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  RunFilter f;
  f.status = RunStatus::kCompleted;
  EXPECT_EQ(AllRunPages(store(), f).size(), static_cast<size_t>(kThreads * kRunsPerThread));
  EXPECT_TRUE(Must(store().ListUnfinishedRuns(10)).empty());
}

// A binary may link the suite without instantiating it (e.g. a backend that
// is not configured).
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(StoreConformance);

}  // namespace af
