// Server-sent events (the WHATWG HTML "event stream" format): formatting on
// the server side, parsing on the client side (`agentflow run watch`, tests).
//
// An event is "id: N\nevent: NAME\ndata: LINE\n...\n\n"; a line starting with
// ':' is a comment (keep-alive). Data with newlines becomes several data
// lines, which the parser joins back with '\n'.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace af::http {

struct SseEvent {
  std::string id;     // "" when the event had none
  std::string event;  // "message" when the event had no name
  std::string data;
};

// One event in wire form. `id` may be empty (no id line).
std::string FormatSseEvent(std::string_view event, std::string_view data, std::string_view id = {});
// A comment line, which clients ignore (keeps idle connections alive).
std::string FormatSseComment(std::string_view text);

// Incremental parser: feed bytes as they arrive, take the events completed
// so far. Lines may end in "\n", "\r\n" or "\r"; a "\r" at the end of a feed
// is held until the next byte tells which. Fields other than id, event and
// data (e.g. retry) are ignored, as are events without data.
class SseParser {
 public:
  std::vector<SseEvent> Feed(std::string_view bytes);

 private:
  void Line(std::string_view line, std::vector<SseEvent>& out);
  std::string partial_;  // an unfinished line
  bool after_cr_ = false;
  std::string id_, event_, data_;
  bool has_data_ = false;
};

}  // namespace af::http
