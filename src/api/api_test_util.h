// Shared by the API's handler tests: the backends they run against.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "queue/queue.h"
#include "storage/change_feed.h"
#include "storage/store.h"

namespace af {

// An in-memory SQLite store behind a change feed, and an in-memory embedded
// queue (whose messages a test can read). Fails the test if either does
// not open.
inline void OpenInMemoryBackends(std::shared_ptr<ChangeFeed>& feed, std::unique_ptr<Store>& store,
                                 std::unique_ptr<Queue>& queue) {
  auto s = OpenStore(StoreOptions{":memory:"});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  feed = std::make_shared<ChangeFeed>();
  store = WithChangeFeed(std::move(s).value(), feed);
  auto q = OpenEmbeddedQueue(QueueOptions{""});
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  queue = std::move(q).value();
}

}  // namespace af
