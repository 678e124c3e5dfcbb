#include "queue/queue.h"

namespace af {

Result<std::unique_ptr<Queue>> OpenQueue(const QueueOptions& options) {
  if (!options.kafka_brokers.empty()) {
    return Status::InvalidArgument("Kafka support is not built yet");  // replaced by the Kafka backend
  }
  return OpenEmbeddedQueue(options);
}

}  // namespace af
