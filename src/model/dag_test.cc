#include "model/dag.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace af {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

Plan MustParse(const json& doc) {
  Result<Plan> p = ParsePlan(doc);
  EXPECT_TRUE(p.ok()) << p.status().ToString() << " " << p.status().details().dump();
  return p.ok() ? std::move(p).value() : Plan{};
}

json Step(const std::string& id, std::vector<std::string> deps = {}, bool declare = true) {
  json s = {{"id", id}, {"agent", "echo"}};
  if (declare) s["depends_on"] = deps;
  return s;
}

// a → {b, c} → d
Plan Diamond() {
  return MustParse({{"name", "diamond"},
                    {"steps", json::array({Step("a"), Step("b", {"a"}), Step("c", {"a"}), Step("d", {"b", "c"})})}});
}

TEST(DagSchedulerTest, DiamondReadinessOrder) {
  Plan plan = Diamond();
  DagScheduler s(plan);
  EXPECT_THAT(s.Ready(), ElementsAre(0));
  EXPECT_EQ(s.Ready(), s.Ready());  // Ready() does not change state
  s.Set(0, StepState::kRunning);
  EXPECT_THAT(s.Ready(), IsEmpty());
  EXPECT_EQ(s.Running(), 1);
  EXPECT_FALSE(s.Stalled());
  s.Set(0, StepState::kDone);
  EXPECT_THAT(s.Ready(), ElementsAre(1, 2));
  s.Set(1, StepState::kRunning);
  s.Set(2, StepState::kRunning);
  EXPECT_EQ(s.Running(), 2);
  EXPECT_THAT(s.Ready(), IsEmpty());
  s.Set(2, StepState::kDone);
  EXPECT_THAT(s.Ready(), IsEmpty());  // d still waits for b
  s.Set(1, StepState::kDone);
  EXPECT_THAT(s.Ready(), ElementsAre(3));
  EXPECT_FALSE(s.AllFinished());
  s.Set(3, StepState::kRunning);
  s.Set(3, StepState::kDone);
  EXPECT_THAT(s.Ready(), IsEmpty());
  EXPECT_TRUE(s.AllFinished());
  EXPECT_FALSE(s.Stalled());
  EXPECT_EQ(s.Running(), 0);
}

TEST(DagSchedulerTest, SkippedCountsAsFinished) {
  Plan plan = Diamond();
  DagScheduler s(plan);
  s.Set(0, StepState::kDone);
  s.Set(1, StepState::kSkipped);
  s.Set(2, StepState::kDone);
  EXPECT_THAT(s.Ready(), ElementsAre(3));
  s.Set(3, StepState::kSkipped);
  EXPECT_TRUE(s.AllFinished());
}

TEST(DagSchedulerTest, FailureStallsDownstream) {
  Plan plan = Diamond();
  DagScheduler s(plan);
  s.Set(0, StepState::kDone);
  s.Set(1, StepState::kFailed);
  s.Set(2, StepState::kRunning);
  EXPECT_FALSE(s.Stalled());  // c still running
  s.Set(2, StepState::kDone);
  EXPECT_THAT(s.Ready(), IsEmpty());
  EXPECT_TRUE(s.Stalled());
  EXPECT_FALSE(s.AllFinished());
  EXPECT_EQ(s.Get(3), StepState::kWaiting);
}

TEST(DagSchedulerTest, CancelledIsNotFinished) {
  Plan plan = Diamond();
  DagScheduler s(plan);
  s.Set(0, StepState::kCancelled);
  EXPECT_THAT(s.Ready(), IsEmpty());
  EXPECT_TRUE(s.Stalled());
  EXPECT_FALSE(s.AllFinished());
}

TEST(DagSchedulerTest, SequentialPlanChains) {
  Plan plan = MustParse(
      {{"name", "seq"}, {"steps", json::array({Step("a", {}, false), Step("b", {}, false), Step("c", {}, false)})}});
  ASSERT_FALSE(plan.is_dag);
  DagScheduler s(plan);
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(s.Ready(), ElementsAre(i));
    EXPECT_EQ(s.Get(i), StepState::kWaiting);
    s.Set(i, StepState::kRunning);
    EXPECT_THAT(s.Ready(), IsEmpty());
    s.Set(i, i == 1 ? StepState::kSkipped : StepState::kDone);
  }
  EXPECT_TRUE(s.AllFinished());
}

TEST(DagSchedulerTest, IndependentRootsAllReadyInPlanOrder) {
  Plan plan = MustParse(
      {{"name", "roots"}, {"steps", json::array({Step("x", {}), Step("y", {"z"}), Step("z"), Step("w", {})})}});
  DagScheduler s(plan);
  EXPECT_THAT(s.Ready(), ElementsAre(0, 2, 3));
  s.Set(2, StepState::kDone);
  EXPECT_THAT(s.Ready(), ElementsAre(0, 1, 3));
}

TEST(DagSchedulerTest, SetIgnoresOutOfRange) {
  Plan plan = Diamond();
  DagScheduler s(plan);
  s.Set(-1, StepState::kDone);
  s.Set(4, StepState::kDone);
  EXPECT_THAT(s.Ready(), ElementsAre(0));
}

}  // namespace
}  // namespace af
