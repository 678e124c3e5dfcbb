#include "queue/kafka/kafka_queue.h"
#include "queue/queue.h"

namespace af {

Result<std::unique_ptr<Queue>> OpenQueue(const QueueOptions& options) {
  if (!options.kafka_brokers.empty()) return OpenKafkaQueue(options);
  return OpenEmbeddedQueue(options);
}

}  // namespace af
