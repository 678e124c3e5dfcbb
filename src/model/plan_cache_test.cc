#include "model/plan_cache.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace af {
namespace {

// A sequential plan of `steps` steps calling `agent`.
json Chain(int steps, const std::string& agent = "echo") {
  json doc = {{"name", "chain"}, {"steps", json::array()}};
  for (int i = 0; i < steps; ++i) {
    doc["steps"].push_back({{"id", "s" + std::to_string(i)}, {"agent", agent}, {"input", {{"n", i}}}});
  }
  return doc;
}

std::shared_ptr<const Plan> MustGet(PlanCache& cache, const std::string& id, int version, const json& doc) {
  auto p = cache.Get(id, version, doc, PlanLimits::ForExecution());
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? std::move(p).value() : nullptr;
}

TEST(PlanCacheTest, TheSameDocumentUnderTheSameVersionIsParsedOnce) {
  PlanCache cache;
  auto first = MustGet(cache, "wf", 1, Chain(3));
  auto second = MustGet(cache, "wf", 1, Chain(3));
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first.get(), second.get());
  EXPECT_EQ(first->steps.size(), 3u);
  EXPECT_EQ(first->steps[2].id, "s2");
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.steps(), 3u);
}

TEST(PlanCacheTest, ADifferentDocumentUnderTheSameKeyIsParsedAndReplacesTheEntry) {
  PlanCache cache;
  auto first = MustGet(cache, "wf", 1, Chain(3));
  auto other = MustGet(cache, "wf", 1, Chain(3, "upper"));
  ASSERT_NE(other, nullptr);
  EXPECT_NE(first.get(), other.get());
  EXPECT_EQ(other->steps[0].agent, "upper");
  EXPECT_EQ(first->steps[0].agent, "echo") << "a plan handed out stays as it was";
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(MustGet(cache, "wf", 1, Chain(3, "upper")).get(), other.get());
  EXPECT_EQ(cache.steps(), 3u);
}

TEST(PlanCacheTest, VersionsAndWorkflowsAreKeptApart) {
  PlanCache cache;
  auto v1 = MustGet(cache, "wf", 1, Chain(2));
  auto v2 = MustGet(cache, "wf", 2, Chain(2));
  auto other = MustGet(cache, "other", 1, Chain(2));
  EXPECT_NE(v1.get(), v2.get());
  EXPECT_NE(v1.get(), other.get());
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(MustGet(cache, "wf", 1, Chain(2)).get(), v1.get());
}

TEST(PlanCacheTest, APlanWithoutWorkflowIdOrVersionIsNotKept) {
  PlanCache cache;
  auto a = MustGet(cache, "", 1, Chain(2));
  auto b = MustGet(cache, "", 1, Chain(2));
  auto c = MustGet(cache, "wf", 0, Chain(2));
  ASSERT_NE(a, nullptr);
  EXPECT_NE(a.get(), b.get());
  EXPECT_EQ(c->steps.size(), 2u);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(PlanCacheTest, AnInvalidPlanIsReportedAndNotKept) {
  PlanCache cache;
  json bad = Chain(2);
  bad["steps"][1]["id"] = "s0";  // duplicate id
  auto p = cache.Get("wf", 1, bad, PlanLimits::ForExecution());
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(cache.size(), 0u);
  // The same key with a valid document afterwards is parsed and kept.
  EXPECT_EQ(MustGet(cache, "wf", 1, Chain(2))->steps.size(), 2u);
  EXPECT_EQ(cache.size(), 1u);
}

TEST(PlanCacheTest, TheLeastRecentlyUsedPlanGoesFirstWhenFull) {
  PlanCache cache(/*max_plans=*/2, /*max_steps=*/100);
  auto a = MustGet(cache, "a", 1, Chain(1));
  auto b = MustGet(cache, "b", 1, Chain(1));
  EXPECT_EQ(MustGet(cache, "a", 1, Chain(1)).get(), a.get());  // a is now the most recent
  auto c = MustGet(cache, "c", 1, Chain(1));                   // evicts b
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(MustGet(cache, "a", 1, Chain(1)).get(), a.get());
  EXPECT_EQ(MustGet(cache, "c", 1, Chain(1)).get(), c.get());
  EXPECT_NE(MustGet(cache, "b", 1, Chain(1)).get(), b.get()) << "b was evicted and parsed again";
}

TEST(PlanCacheTest, TheStepBoundEvictsAndAPlanOverItIsNotKept) {
  PlanCache cache(/*max_plans=*/10, /*max_steps=*/5);
  auto a = MustGet(cache, "a", 1, Chain(3));
  auto b = MustGet(cache, "b", 1, Chain(2));
  EXPECT_EQ(cache.steps(), 5u);
  auto c = MustGet(cache, "c", 1, Chain(2));  // 7 steps: a goes
  EXPECT_EQ(cache.steps(), 4u);
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_NE(MustGet(cache, "a", 1, Chain(3)).get(), a.get());
  auto big = MustGet(cache, "big", 1, Chain(6));
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(big->steps.size(), 6u);
  EXPECT_NE(MustGet(cache, "big", 1, Chain(6)).get(), big.get()) << "a plan over the bound is parsed each time";
  EXPECT_LE(cache.steps(), 5u);
}

TEST(PlanCacheTest, TheByteBoundEvictsAndAPlanOverItIsNotKept) {
  json small = Chain(1);
  const size_t one = small.dump().size();
  PlanCache cache(/*max_plans=*/10, /*max_steps=*/100, /*max_bytes=*/2 * one + one / 2);
  auto a = MustGet(cache, "a", 1, small);
  auto b = MustGet(cache, "b", 1, small);
  EXPECT_EQ(cache.bytes(), 2 * one);
  auto c = MustGet(cache, "c", 1, small);  // over the bound: a goes
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.bytes(), 2 * one);
  EXPECT_NE(MustGet(cache, "a", 1, small).get(), a.get());
  json big = Chain(1);
  big["steps"][0]["input"]["text"] = std::string(3 * one, 'x');
  auto large = MustGet(cache, "big", 1, big);
  ASSERT_NE(large, nullptr);
  EXPECT_NE(MustGet(cache, "big", 1, big).get(), large.get()) << "a plan over the bound is parsed each time";
  EXPECT_LE(cache.bytes(), 2 * one + one / 2);
}

}  // namespace
}  // namespace af
