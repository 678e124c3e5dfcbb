// Hermetic tests of the PostgreSQL backend's helpers (no server needed).
#include "storage/postgres/pg_util.h"

#include <gtest/gtest.h>

#include <string>

namespace af::postgres {
namespace {

TEST(PgTextTest, StorableTextIsValidUtf8WithoutNul) {
  EXPECT_TRUE(IsStorableText(""));
  EXPECT_TRUE(IsStorableText("plain ascii ' \" \\ ; --"));
  EXPECT_TRUE(IsStorableText("héllo — 日本語 — 🚀"));
  EXPECT_TRUE(IsStorableText("\xEF\xBF\xBD"));      // U+FFFD
  EXPECT_TRUE(IsStorableText("\xF4\x8F\xBF\xBF"));  // U+10FFFF

  EXPECT_FALSE(IsStorableText(std::string("a\0b", 3)));
  EXPECT_FALSE(IsStorableText("\xC3"));              // truncated
  EXPECT_FALSE(IsStorableText("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(IsStorableText("\xE0\x80\xAF"));      // overlong
  EXPECT_FALSE(IsStorableText("\xED\xA0\x80"));      // surrogate U+D800
  EXPECT_FALSE(IsStorableText("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsStorableText("\xFF"));
  EXPECT_FALSE(IsStorableText("ok\x80"));
}

TEST(PgTextTest, ToStorableTextReplacesOnlyBadBytes) {
  EXPECT_EQ(ToStorableText("héllo"), "héllo");
  EXPECT_EQ(ToStorableText(std::string("a\0b", 3)),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(ToStorableText("x\xFFy"), "x\xEF\xBF\xBDy");
  EXPECT_EQ(ToStorableText("\xC3"), "\xEF\xBF\xBD");
  EXPECT_TRUE(IsStorableText(ToStorableText("\xED\xA0\x80\xC0\xAF mixed \xE6\x97")));
}

TEST(PgParamsTest, KeysThatCannotBeStoredInvalidateTheList) {
  Params p;
  p.Key("run id", "run-1").Int(42).Bool(true).Null();
  EXPECT_TRUE(p.status().ok());
  std::vector<const char*> v = p.Pointers();
  ASSERT_EQ(v.size(), 4u);
  EXPECT_STREQ(v[0], "run-1");
  EXPECT_STREQ(v[1], "42");
  EXPECT_STREQ(v[2], "t");
  EXPECT_EQ(v[3], nullptr);

  p.Key("workflow name", std::string("bad\0name", 8));
  EXPECT_EQ(p.status().code(), Code::kInvalidArgument);
  EXPECT_NE(p.status().message().find("workflow name"), std::string::npos) << p.status().message();
}

TEST(PgParamsTest, FreeTextIsSanitizedAndEmptyCanBeNull) {
  Params p;
  p.Text(std::string("boom\0!", 6)).Text("", /*empty_is_null=*/true).Text("");
  EXPECT_TRUE(p.status().ok());
  std::vector<const char*> v = p.Pointers();
  EXPECT_STREQ(v[0], "boom\xEF\xBF\xBD!");
  EXPECT_EQ(v[1], nullptr);
  EXPECT_STREQ(v[2], "");
}

TEST(PgParamsTest, JsonIsTextAndNullIsNull) {
  Params p;
  p.Json(nullptr).JsonText(nullptr).Json(json{{"nul", std::string("a\0b", 3)}});
  std::vector<const char*> v = p.Pointers();
  EXPECT_EQ(v[0], nullptr);
  EXPECT_STREQ(v[1], "null");
  EXPECT_STREQ(v[2], R"({"nul":"a\u0000b"})");
}

TEST(PgParamsTest, KeyArrayQuotesEveryElement) {
  Params p;
  p.KeyArray("run id", {"a", "", "with \"quote\"", "back\\slash", "{,}", "NULL", " sp "});
  EXPECT_TRUE(p.status().ok());
  EXPECT_STREQ(p.Pointers()[0], R"({"a","","with \"quote\"","back\\slash","{,}","NULL"," sp "})");
  Params empty;
  empty.KeyArray("run id", {});
  EXPECT_STREQ(empty.Pointers()[0], "{}");
}

TEST(PgParamsTest, ColumnsMakeOneArrayPerParameterWithNullElements) {
  Params a, b;
  a.Key("run id", "r1").Int(7).Null().Text("say \"hi\", {x}");
  b.Key("run id", "NULL").Null().Json(json{{"k", "v\\"}}).Text("");
  Params c = Params::Columns({&a, &b});
  ASSERT_TRUE(c.status().ok());
  ASSERT_EQ(c.size(), 4);
  std::vector<const char*> v = c.Pointers();
  EXPECT_STREQ(v[0], R"({"r1","NULL"})") << "a value NULL is quoted; only a NULL parameter is NULL";
  EXPECT_STREQ(v[1], R"({"7",NULL})");
  EXPECT_STREQ(v[2], R"({NULL,"{\"k\":\"v\\\\\"}"})");
  EXPECT_STREQ(v[3], R"({"say \"hi\", {x}",""})");

  Params bad;
  bad.Key("run id", std::string("a\0b", 3));
  EXPECT_FALSE(Params::Columns({&a, &bad}).status().ok()) << "a row that is not ok";
  Params shorter;
  shorter.Key("run id", "r2");
  EXPECT_FALSE(Params::Columns({&a, &shorter}).status().ok()) << "rows of different sizes";
}

TEST(PgUrlTest, DescribeUrlHidesThePassword) {
  auto d = DescribeUrl("postgresql://alice:s3cret@db.example:5433/flows?sslmode=disable");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(*d, "alice@db.example:5433/flows");
  EXPECT_EQ(d->find("s3cret"), std::string::npos);
  EXPECT_EQ(*DescribeUrl("host=/tmp port=5999 dbname=x"), "/tmp:5999/x");
  EXPECT_EQ(DescribeUrl("postgresql://h/db?nosuchparam=1").status().code(), Code::kInvalidArgument);
}

TEST(PgErrorTest, SqlStateOfReadsDetails) {
  EXPECT_EQ(SqlStateOf(Status(Code::kInternal, "x", {{"sqlstate", "23505"}})), "23505");
  EXPECT_EQ(SqlStateOf(Status::Internal("x")), "");
}

}  // namespace
}  // namespace af::postgres
