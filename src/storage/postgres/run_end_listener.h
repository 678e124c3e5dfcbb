// How the api hears, across processes, that a run ended: PostgreSQL's
// LISTEN/NOTIFY. The store's writes that end a run notify kRunEndChannel in
// their transaction (delivered when it commits, dropped if it rolls back);
// a RunEndListener LISTENs on a connection and a thread of its own and
// calls `wake` for every batch of notifications it reads. A lost
// connection is opened again every second, after which `wake` is called
// once (ends committed while nobody listened).
//
// Private to the PostgreSQL backend (Store::ListenForRunEnds).
// Thread-safety: the listener is created and destroyed on one thread;
// `wake` runs on the listener's thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "storage/store.h"

namespace af::postgres {

inline constexpr const char* kRunEndChannel = "agentflow_run_ends";

// `target` names the database in log lines (DescribeUrl's form).
std::unique_ptr<Store::RunEndListener> StartRunEndListener(std::string url, std::string target,
                                                           std::chrono::milliseconds connect_timeout,
                                                           std::function<void()> wake);

}  // namespace af::postgres
