// What a run's event stream (GET /api/v1/runs/{run_id}/events) sends next,
// worked out from successive snapshots of the run and its step executions.
//
// The stream's events, each with a JSON document as its data:
//   run   the run (as GET /runs/{id} returns it) whenever it changed
//   step  one step execution (as in GET /runs/{id}/steps) whenever it
//         appeared or changed
//   end   the finished run, once; the stream ends after it
// The first snapshot sends everything there is, so a client that connects
// (or reconnects) late still sees the whole run. While the run is
// unfinished its run event comes before the step events of a snapshot;
// once it is finished the step events come first, so "run" with the final
// status is the last thing before "end".
//
// Pure logic (no I/O): the handler reads snapshots, this decides.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/types.h"

namespace af {

struct RunEvent {
  std::string name;  // "run", "step", "end"
  std::string data;  // JSON
};

class RunEventDiff {
 public:
  // The events for what changed since the previous call. After the "end"
  // event it returns nothing.
  std::vector<RunEvent> Next(const Run& run, const std::vector<StepExecution>& steps);
  bool ended() const { return ended_; }

 private:
  std::string last_run_;
  std::unordered_map<int64_t, std::string> last_steps_;  // by step execution id
  bool ended_ = false;
};

}  // namespace af
