#include "common/redact.h"

#include <gtest/gtest.h>

namespace af {
namespace {

TEST(RedactUrl, HidesThePasswordOfAUrl) {
  EXPECT_EQ(RedactUrl("postgresql://workflow_user:workflow_pass@localhost:5432/workflow_db"),
            "postgresql://workflow_user:***@localhost:5432/workflow_db");
  EXPECT_EQ(RedactUrl("postgres://u:p%40ss@h/db"), "postgres://u:***@h/db");
  // The last '@' ends the user info (a password may hold an '@').
  EXPECT_EQ(RedactUrl("postgresql://u:p@ss@h:1/db"), "postgresql://u:***@h:1/db");
  EXPECT_EQ(RedactUrl("http://agent:s3cret@registry:8080/"), "http://agent:***@registry:8080/");
}

TEST(RedactUrl, HidesSecretQueryParameters) {
  EXPECT_EQ(RedactUrl("postgresql://h/db?user=u&password=p&sslmode=require"),
            "postgresql://h/db?user=u&password=***&sslmode=require");
  EXPECT_EQ(RedactUrl("postgresql://h/db?sslpassword=x#frag"), "postgresql://h/db?sslpassword=***#frag");
}

TEST(RedactUrl, HidesThePasswordOfAConninfoString) {
  EXPECT_EQ(RedactUrl("host=db user=u password=pw dbname=x"), "host=db user=u password=*** dbname=x");
  EXPECT_EQ(RedactUrl("host=db password = 'a b\\' c' dbname=x"), "host=db password = *** dbname=x");
}

TEST(RedactUrl, LeavesUrlsWithoutSecretsAlone) {
  for (const char* url : {"postgresql://u@h:5432/db", "postgresql://h/db", ".agentflow/agentflow.db", ":memory:",
                          "http://127.0.0.1:8080", "http://h:1/a?b=c", ""}) {
    EXPECT_EQ(RedactUrl(url), url);
  }
}

TEST(RedactSetting, SecretKafkaAndLibpqSettings) {
  for (const char* name : {"sasl.password", "ssl.key.password", "ssl.keystore.password", "sasl.oauthbearer.config",
                           "sasl.oauthbearer.client.secret", "ssl.key.pem", "SASL.PASSWORD", "password",
                           "sslpassword", "sasl.kerberos.keytab"}) {
    EXPECT_TRUE(IsSecretSetting(name)) << name;
    EXPECT_EQ(RedactSetting(name, "hunter2"), "***") << name;
  }
  for (const char* name : {"sasl.username", "security.protocol", "bootstrap.servers", "sasl.mechanism", "acks"}) {
    EXPECT_FALSE(IsSecretSetting(name)) << name;
    EXPECT_EQ(RedactSetting(name, "v"), "v") << name;
  }
}

}  // namespace
}  // namespace af
