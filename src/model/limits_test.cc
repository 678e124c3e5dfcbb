#include "model/limits.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace af {
namespace {

using ::testing::HasSubstr;

TEST(StepLimitsTest, InputOverTheLimitNamesSizeAndLimit) {
  json input = {{"text", std::string(100, 'x')}};
  const size_t size = input.dump().size();
  EXPECT_TRUE(CheckStepInput(input, size).ok());
  EXPECT_TRUE(CheckStepInput(input, 0).ok());  // 0: no limit
  Status s = CheckStepInput(input, size - 1);
  EXPECT_EQ(s.code(), Code::kTooLarge);
  EXPECT_THAT(s.message(), HasSubstr("input is " + std::to_string(size) + " bytes, over the limit of " +
                                     std::to_string(size - 1) + " bytes; the agent was not called"));
  EXPECT_THAT(s.message(), HasSubstr("Hint:"));
}

TEST(StepLimitsTest, ForEachOverTheLimitNamesCountAndLimit) {
  EXPECT_TRUE(CheckForEachItems(10, 10).ok());
  EXPECT_TRUE(CheckForEachItems(1000000, 0).ok());
  Status s = CheckForEachItems(11, 10);
  EXPECT_EQ(s.code(), Code::kTooLarge);
  EXPECT_THAT(s.message(), HasSubstr("for_each has 11 elements, over the limit of 10; no element was started"));
}

TEST(StepLimitsTest, Defaults) {
  StepLimits l;
  EXPECT_EQ(l.max_input_bytes, size_t{16} << 20);
  EXPECT_EQ(l.max_for_each_items, 10000u);
}

}  // namespace
}  // namespace af
