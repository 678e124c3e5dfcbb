#include "executor/write_grouper.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace af {
namespace {

namespace asio = boost::asio;

// A commit that records each group's run ids, holds the first group until
// Open(), and answers each batch with its own run id's number (or
// an error for run "bad").
struct FakeCommit {
  explicit FakeCommit(asio::io_context& io) : gate(io) { gate.expires_at(asio::steady_timer::time_point::max()); }
  WriteGrouper::Commit Fn() {
    return [this](std::vector<const RunWrites*> group) -> asio::awaitable<WriteGrouper::Results> {
      std::vector<std::string> ids;
      for (const RunWrites* w : group) ids.push_back(w->run_id);
      groups.push_back(ids);
      if (groups.size() == 1) {
        while (!open) {
          boost::system::error_code ec;
          co_await gate.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
      }
      WriteGrouper::Results out;
      for (const RunWrites* w : group) {
        if (w->run_id == "bad") {
          out.push_back(Status::FailedPrecondition("bad batch"));
        } else {
          RunWritesResult r;
          r.step_ids = {std::stoll(w->run_id.substr(1))};
          out.push_back(r);
        }
      }
      co_return out;
    };
  }
  void Open() {
    open = true;
    gate.cancel();
  }
  asio::steady_timer gate;
  bool open = false;
  std::vector<std::vector<std::string>> groups;
};

struct Outcome {
  bool done = false;
  Result<RunWritesResult> result = Status::Internal("not yet");
};

void Spawn(asio::io_context& io, WriteGrouper& g, const RunWrites& w, Outcome* out) {
  asio::co_spawn(
      io,
      [&g, &w, out]() -> asio::awaitable<void> {
        out->result = co_await g.Apply(w);
        out->done = true;
      },
      asio::detached);
}

RunWrites Batch(const std::string& run_id) {
  RunWrites w;
  w.run_id = run_id;
  return w;
}

TEST(WriteGrouperTest, BatchesThatWaitForACommitGoTogetherEachWithItsOwnResult) {
  asio::io_context io;
  FakeCommit commit(io);
  WriteGrouper g(io.get_executor(), commit.Fn(), /*max_in_flight=*/1, /*max_group=*/64);
  std::vector<RunWrites> batches = {Batch("r1"), Batch("r2"), Batch("bad"), Batch("r4")};
  std::vector<Outcome> out(batches.size());
  Spawn(io, g, batches[0], &out[0]);
  // Once r1 is committing (alone), three more arrive.
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        while (commit.groups.empty()) co_await asio::post(io, asio::use_awaitable);
        for (size_t i = 1; i < batches.size(); ++i) Spawn(io, g, batches[i], &out[i]);
        for (int turn = 0; turn < 3; ++turn) co_await asio::post(io, asio::use_awaitable);  // their Applies
        EXPECT_EQ(g.in_flight(), 1);
        EXPECT_EQ(g.waiting(), 3u);
        commit.Open();
      },
      asio::detached);
  io.run();
  ASSERT_EQ(commit.groups.size(), 2u);
  EXPECT_EQ(commit.groups[0], (std::vector<std::string>{"r1"})) << "the first batch went at once, alone";
  EXPECT_EQ(commit.groups[1], (std::vector<std::string>{"r2", "bad", "r4"}));
  for (size_t i = 0; i < out.size(); ++i) ASSERT_TRUE(out[i].done) << i;
  ASSERT_TRUE(out[0].result.ok());
  EXPECT_EQ(out[0].result->step_ids, (std::vector<int64_t>{1}));
  ASSERT_TRUE(out[1].result.ok());
  EXPECT_EQ(out[1].result->step_ids, (std::vector<int64_t>{2}));
  EXPECT_EQ(out[2].result.status().code(), Code::kFailedPrecondition) << "only the bad batch fails";
  ASSERT_TRUE(out[3].result.ok());
  EXPECT_EQ(out[3].result->step_ids, (std::vector<int64_t>{4}));
  EXPECT_EQ(g.in_flight(), 0);
  EXPECT_EQ(g.waiting(), 0u);
}

TEST(WriteGrouperTest, GroupsAreBoundedAndTakeWhatArrivedInTheSameTurn) {
  asio::io_context io;
  FakeCommit commit(io);
  WriteGrouper g(io.get_executor(), commit.Fn(), /*max_in_flight=*/2, /*max_group=*/2);
  std::vector<RunWrites> batches = {Batch("r1"), Batch("r2"), Batch("r3"), Batch("r4"), Batch("r5"), Batch("r6")};
  std::vector<Outcome> out(batches.size());
  for (size_t i = 0; i < batches.size(); ++i) Spawn(io, g, batches[i], &out[i]);
  asio::post(io, [&] { commit.Open(); });
  io.run();
  // Six batches in one turn: each commit takes its group when it starts, so
  // the two slots take two each, and the rest go two at a time.
  ASSERT_EQ(commit.groups.size(), 3u);
  EXPECT_EQ(commit.groups[0], (std::vector<std::string>{"r1", "r2"}));
  EXPECT_EQ(commit.groups[1], (std::vector<std::string>{"r3", "r4"}));
  size_t total = 0;
  for (const auto& grp : commit.groups) {
    EXPECT_LE(grp.size(), 2u);
    total += grp.size();
  }
  EXPECT_EQ(total, batches.size()) << "every batch committed once";
  for (size_t i = 0; i < out.size(); ++i) {
    ASSERT_TRUE(out[i].done) << i;
    ASSERT_TRUE(out[i].result.ok()) << i;
    EXPECT_EQ(out[i].result->step_ids, (std::vector<int64_t>{static_cast<int64_t>(i + 1)}));
  }
}

TEST(WriteGrouperTest, GatheringATurnTakesTheBatchesOfTheNextHandlers) {
  // r2 is staged by a handler that runs after r1's commit was spawned.
  for (bool gather : {false, true}) {
    asio::io_context io;
    FakeCommit commit(io);
    commit.Open();
    WriteGrouper g(io.get_executor(), commit.Fn(), /*max_in_flight=*/1, /*max_group=*/64, gather);
    std::vector<RunWrites> batches = {Batch("r1"), Batch("r2")};
    std::vector<Outcome> out(batches.size());
    Spawn(io, g, batches[0], &out[0]);
    asio::post(io, [&] { Spawn(io, g, batches[1], &out[1]); });
    io.run();
    if (gather) {
      EXPECT_EQ(commit.groups, (std::vector<std::vector<std::string>>{{"r1", "r2"}})) << "one commit for both";
    } else {
      EXPECT_EQ(commit.groups, (std::vector<std::vector<std::string>>{{"r1"}, {"r2"}})) << "r1 went at once";
    }
    ASSERT_TRUE(out[0].done && out[1].done);
    EXPECT_EQ(out[1].result->step_ids, (std::vector<int64_t>{2}));
  }
}

}  // namespace
}  // namespace af
