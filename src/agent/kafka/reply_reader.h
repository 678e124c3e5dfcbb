// KafkaReplyReader: reads every partition of one topic (the agent reply
// topic) on its own thread and hands each message's payload to a sink.
//
// No consumer group: every executor process must see every reply (it picks
// out its own by correlation id), so partitions are assigned, not
// subscribed, and no offset is ever committed. Reading starts at each
// partition's high watermark as it was when the reader started, so replies
// written before are not read again, and no reply written after is missed.
// Until the watermarks are known the reader is not ready; `ready(true)` is
// reported once they are (and, while the topic cannot be read — brokers
// down, the topic missing and not auto-created — `ready(false, why)` is
// reported with the reason, and the reader tries again every second).
// Partitions added to the topic later are noticed within
// `partition_check_interval` and read from their beginning (everything in
// them is newer than the reader).
//
// Thread-safety: Start and the destructor from one thread; the sink and the
// ready callback run on the reader's thread and must be quick.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "queue/queue.h"

namespace af {

struct ReplyReaderOptions {
  QueueOptions kafka;  // kafka_brokers, kafka_properties and client_id are used
  std::string topic;   // the topic to read
  // How often to look for new partitions of the topic.
  std::chrono::milliseconds partition_check_interval{30000};
};

class KafkaReplyReader {
 public:
  using Sink = std::function<void(std::string_view payload)>;
  using ReadyFn = std::function<void(bool ready, const std::string& why_not)>;

  // Creates the client and starts the thread (which connects lazily).
  // InvalidArgument for an empty broker list or topic, or a rejected
  // kafka_property.
  static Result<std::unique_ptr<KafkaReplyReader>> Start(const ReplyReaderOptions& options, Sink sink,
                                                         ReadyFn ready);
  virtual ~KafkaReplyReader() = default;  // stops and joins the thread
};

}  // namespace af
