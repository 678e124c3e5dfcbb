// A Store that passes every call to another one: the base of decorators and
// test doubles that change a few calls (a failure, a delay, a count) and
// leave the rest to a real backend.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "storage/store.h"

namespace af {

class ForwardingStore : public Store {
 public:
  // `inner` must outlive this store.
  explicit ForwardingStore(Store* inner) : inner_(inner) {}

  int MaxConcurrentCalls() const override { return inner_->MaxConcurrentCalls(); }

  Result<Workflow> CreateWorkflow(const NewWorkflow& w) override { return inner_->CreateWorkflow(w); }
  Result<Workflow> UpdateWorkflow(const std::string& id, const NewWorkflow& w) override {
    return inner_->UpdateWorkflow(id, w);
  }
  Result<Workflow> GetWorkflow(const std::string& id, std::optional<int> version) override {
    return inner_->GetWorkflow(id, version);
  }
  Result<Workflow> GetWorkflowByName(const std::string& name) override { return inner_->GetWorkflowByName(name); }
  Result<Page<Workflow>> ListWorkflows(int limit, const std::string& page_token) override {
    return inner_->ListWorkflows(limit, page_token);
  }
  Result<std::vector<Workflow>> ListWorkflowVersions(const std::string& id) override {
    return inner_->ListWorkflowVersions(id);
  }
  Status DeleteWorkflow(const std::string& id) override { return inner_->DeleteWorkflow(id); }

  Result<CreatedRun> CreateRun(const NewRun& r) override { return inner_->CreateRun(r); }
  std::vector<Result<CreatedRun>> CreateRuns(const std::vector<NewRun>& runs) override {
    return inner_->CreateRuns(runs);
  }
  Result<Run> GetRun(const std::string& run_id) override { return inner_->GetRun(run_id); }
  Result<Page<Run>> ListRuns(const RunFilter& f) override { return inner_->ListRuns(f); }
  Result<std::vector<Run>> ListUnfinishedRuns(int limit) override { return inner_->ListUnfinishedRuns(limit); }
  Result<Run> TransitionRun(const RunTransition& t) override { return inner_->TransitionRun(t); }
  Result<std::vector<CancelRequest>> ListCancelRequests(const std::vector<std::string>& run_ids) override {
    return inner_->ListCancelRequests(run_ids);
  }
  Result<std::vector<std::pair<std::string, RunStatus>>> GetRunStatuses(
      const std::vector<std::string>& run_ids) override {
    return inner_->GetRunStatuses(run_ids);
  }
  std::unique_ptr<RunEndListener> ListenForRunEnds(std::function<void()> wake) override {
    return inner_->ListenForRunEnds(std::move(wake));
  }
  Result<std::vector<StepProgress>> GetStepProgress(const std::vector<std::string>& run_ids) override {
    return inner_->GetStepProgress(run_ids);
  }
  Result<Run> RequestCancel(const CancelRequest& c) override { return inner_->RequestCancel(c); }

  using Store::InsertStep;
  Result<int64_t> InsertStep(const StepExecution& s, int64_t lease_token) override {
    return inner_->InsertStep(s, lease_token);
  }
  Status FinishStep(const StepFinish& f) override { return inner_->FinishStep(f); }
  Result<RunWritesResult> ApplyRunWrites(const RunWrites& w) override { return inner_->ApplyRunWrites(w); }
  std::vector<Result<RunWritesResult>> ApplyRunWritesGroup(const std::vector<const RunWrites*>& group) override {
    return inner_->ApplyRunWritesGroup(group);
  }
  Result<std::vector<StepExecution>> ListSteps(const std::string& run_id) override { return inner_->ListSteps(run_id); }

  Result<RunLease> AcquireRunLease(const std::string& run_id, const std::string& owner, int64_t ttl_ms) override {
    return inner_->AcquireRunLease(run_id, owner, ttl_ms);
  }
  Result<int64_t> RenewRunLeases(const std::string& owner, int64_t ttl_ms) override {
    return inner_->RenewRunLeases(owner, ttl_ms);
  }
  Status ReleaseRunLease(const std::string& run_id, int64_t token) override {
    return inner_->ReleaseRunLease(run_id, token);
  }
  Result<std::vector<Run>> ListStrandedRuns(int64_t older_than_ms, int limit) override {
    return inner_->ListStrandedRuns(older_than_ms, limit);
  }
  Result<bool> RedispatchRun(const std::string& run_id, int64_t older_than_ms, const OutboxMessage& message) override {
    return inner_->RedispatchRun(run_id, older_than_ms, message);
  }

  Result<std::vector<OutboxMessage>> ClaimOutbox(int limit, int64_t claim_ms) override {
    return inner_->ClaimOutbox(limit, claim_ms);
  }
  Status DeleteOutbox(const std::vector<int64_t>& ids) override { return inner_->DeleteOutbox(ids); }
  Status DeferOutbox(const std::vector<int64_t>& ids, const std::string& error, int64_t retry_ms) override {
    return inner_->DeferOutbox(ids, error, retry_ms);
  }
  Result<OutboxStats> GetOutboxStats() override { return inner_->GetOutboxStats(); }
  // Not forwarded (the Store default, false): the listener would hear of the
  // backend's writes, not of this store's. Attach a dispatcher's writer to
  // the backend itself.

  Result<Agent> CreateAgent(const Agent& a) override { return inner_->CreateAgent(a); }
  Result<Agent> UpsertAgent(const Agent& a) override { return inner_->UpsertAgent(a); }
  Status RecordAgentHealth(const AgentHealthUpdate& u) override { return inner_->RecordAgentHealth(u); }
  Result<Agent> GetAgent(const std::string& name) override { return inner_->GetAgent(name); }
  Result<std::vector<Agent>> ListAgents() override { return inner_->ListAgents(); }
  Status DeleteAgent(const std::string& name) override { return inner_->DeleteAgent(name); }

  Result<ApiKey> CreateApiKey(const ApiKey& k) override { return inner_->CreateApiKey(k); }
  Result<ApiKey> GetApiKey(const std::string& id) override { return inner_->GetApiKey(id); }
  Result<std::vector<ApiKey>> ListApiKeys() override { return inner_->ListApiKeys(); }
  Result<ApiKey> RevokeApiKey(const std::string& id) override { return inner_->RevokeApiKey(id); }
  Status RecordApiKeyUse(const std::string& id, TimeMs at) override { return inner_->RecordApiKeyUse(id, at); }

  Status Ping() override { return inner_->Ping(); }

 protected:
  Store* inner() const { return inner_; }

 private:
  Store* inner_;
};

}  // namespace af
