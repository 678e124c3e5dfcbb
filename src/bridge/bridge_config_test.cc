#include "bridge/bridge_config.h"

#include <gtest/gtest.h>

namespace af {
namespace {

TEST(BridgeConfigTest, AgentsWithDefaultAndExplicitTopics) {
  auto agents = ParseBridgedAgents({"echo=http://127.0.0.1:9000/agents/echo", "sum=http://h:80/x?y=1"},
                                   {"sum=team.sum.requests"});
  ASSERT_TRUE(agents.ok()) << agents.status().ToString();
  ASSERT_EQ(agents->size(), 2u);
  EXPECT_EQ((*agents)[0].name, "echo");
  EXPECT_EQ((*agents)[0].url, "http://127.0.0.1:9000/agents/echo");
  EXPECT_EQ((*agents)[0].topic, "agent.echo.requests");
  EXPECT_EQ((*agents)[1].url, "http://h:80/x?y=1") << "the URL is kept exactly, query included";
  EXPECT_EQ((*agents)[1].topic, "team.sum.requests");
}

TEST(BridgeConfigTest, BadSpecsAreRefusedWithTheReason) {
  struct Case {
    std::vector<std::string> agents, topics;
    const char* says;
  };
  const std::vector<Case> cases = {
      {{}, {}, "--agent NAME=URL"},
      {{"echo"}, {}, "NAME=URL"},
      {{"=http://h/"}, {}, "NAME=URL"},
      {{"echo="}, {}, "NAME=URL"},
      {{"bad name=http://h/"}, {}, "the name must be"},
      {{"echo=https://h/"}, {}, "echo=https://h/"},
      {{"echo=http://h/", "echo=http://g/"}, {}, "given twice"},
      {{"echo=http://h/"}, {"other=t"}, "is not served"},
      {{"echo=http://h/"}, {"echo=bad topic"}, "invalid Kafka topic"},
      {{"echo=http://h/"}, {"echo"}, "NAME=TOPIC"},
      {{"a:b=http://h/"}, {}, "--topic a:b=TOPIC"},
  };
  for (const Case& c : cases) {
    auto r = ParseBridgedAgents(c.agents, c.topics);
    ASSERT_FALSE(r.ok()) << c.says;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.says), std::string::npos) << r.status().message();
  }
  // A name a topic cannot hold is fine with an explicit topic.
  EXPECT_TRUE(ParseBridgedAgents({"a:b=http://h/"}, {"a:b=agent.ab.requests"}).ok());
}

}  // namespace
}  // namespace af
