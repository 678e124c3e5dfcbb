#include "model/status_machine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <utility>

namespace af {
namespace {

using ::testing::HasSubstr;

const RunStatus kRunStatuses[] = {RunStatus::kPending, RunStatus::kRunning, RunStatus::kCompleted, RunStatus::kFailed,
                                  RunStatus::kCancelled};
const StepStatus kStepStatuses[] = {StepStatus::kRunning, StepStatus::kCompleted, StepStatus::kFailed,
                                    StepStatus::kSkipped, StepStatus::kCancelled};

// The allowed run transitions, from the header's table.
const std::set<std::pair<RunStatus, RunStatus>> kAllowedRun = {
    {RunStatus::kPending, RunStatus::kRunning}, {RunStatus::kPending, RunStatus::kCancelled},
    {RunStatus::kPending, RunStatus::kFailed},  {RunStatus::kRunning, RunStatus::kCompleted},
    {RunStatus::kRunning, RunStatus::kFailed},  {RunStatus::kRunning, RunStatus::kCancelled},
    {RunStatus::kFailed, RunStatus::kPending},  {RunStatus::kCancelled, RunStatus::kPending},
};

TEST(RunStatusMachineTest, EveryAllowedTransition) {
  for (const auto& [from, to] : kAllowedRun) {
    EXPECT_TRUE(CanTransition(from, to)) << ToString(from) << " -> " << ToString(to);
    EXPECT_TRUE(CheckTransition(from, to).ok());
  }
}

TEST(RunStatusMachineTest, EverythingElseIsForbidden) {
  int forbidden = 0;
  for (RunStatus from : kRunStatuses) {
    for (RunStatus to : kRunStatuses) {
      if (kAllowedRun.count({from, to})) continue;
      ++forbidden;
      EXPECT_FALSE(CanTransition(from, to)) << ToString(from) << " -> " << ToString(to);
      Status st = CheckTransition(from, to);
      EXPECT_EQ(st.code(), Code::kFailedPrecondition);
    }
  }
  EXPECT_EQ(forbidden, 25 - 8);
}

TEST(RunStatusMachineTest, RepresentativeForbidden) {
  EXPECT_FALSE(CanTransition(RunStatus::kCompleted, RunStatus::kRunning));  // finished is final
  EXPECT_FALSE(CanTransition(RunStatus::kCompleted, RunStatus::kPending));  // no retry of success
  EXPECT_FALSE(CanTransition(RunStatus::kPending, RunStatus::kCompleted));  // must run first
  EXPECT_FALSE(CanTransition(RunStatus::kRunning, RunStatus::kPending));
  EXPECT_FALSE(CanTransition(RunStatus::kFailed, RunStatus::kRunning));  // retry goes through PENDING
  EXPECT_FALSE(CanTransition(RunStatus::kCancelled, RunStatus::kCompleted));
  EXPECT_FALSE(CanTransition(RunStatus::kRunning, RunStatus::kRunning));
}

TEST(RunStatusMachineTest, ErrorNamesBothStates) {
  Status st = CheckTransition(RunStatus::kCompleted, RunStatus::kRunning);
  EXPECT_EQ(st.message(), "run cannot go from COMPLETED to RUNNING");
  EXPECT_EQ(st.details(), json({{"from", "COMPLETED"}, {"to", "RUNNING"}}));
}

TEST(StepStatusMachineTest, Creation) {
  EXPECT_TRUE(CanTransition(std::nullopt, StepStatus::kRunning));
  EXPECT_TRUE(CanTransition(std::nullopt, StepStatus::kSkipped));
  EXPECT_TRUE(CanTransition(std::nullopt, StepStatus::kCancelled));
  EXPECT_TRUE(CanTransition(std::nullopt, StepStatus::kFailed));
  EXPECT_FALSE(CanTransition(std::nullopt, StepStatus::kCompleted));  // must have run
  EXPECT_TRUE(CheckTransition(std::nullopt, StepStatus::kRunning).ok());
  Status st = CheckTransition(std::nullopt, StepStatus::kCompleted);
  EXPECT_EQ(st.code(), Code::kFailedPrecondition);
  EXPECT_EQ(st.message(), "step execution cannot go from (new) to COMPLETED");
  EXPECT_EQ(st.details(), json({{"from", nullptr}, {"to", "COMPLETED"}}));
}

TEST(StepStatusMachineTest, FromRunning) {
  EXPECT_TRUE(CanTransition(StepStatus::kRunning, StepStatus::kCompleted));
  EXPECT_TRUE(CanTransition(StepStatus::kRunning, StepStatus::kFailed));
  EXPECT_TRUE(CanTransition(StepStatus::kRunning, StepStatus::kCancelled));
  EXPECT_FALSE(CanTransition(StepStatus::kRunning, StepStatus::kRunning));
  EXPECT_FALSE(CanTransition(StepStatus::kRunning, StepStatus::kSkipped));  // skipping is decided before running
}

TEST(StepStatusMachineTest, TerminalStatesAreFinal) {
  for (StepStatus from : kStepStatuses) {
    if (from == StepStatus::kRunning) continue;
    ASSERT_TRUE(IsTerminal(from));
    for (StepStatus to : kStepStatuses) {
      EXPECT_FALSE(CanTransition(from, to)) << ToString(from) << " -> " << ToString(to);
      Status st = CheckTransition(from, to);
      EXPECT_EQ(st.code(), Code::kFailedPrecondition);
      EXPECT_THAT(st.message(), HasSubstr(std::string("from ") + ToString(from) + " to " + ToString(to)));
    }
  }
}

}  // namespace
}  // namespace af
