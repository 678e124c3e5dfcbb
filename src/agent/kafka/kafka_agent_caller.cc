#include "agent/kafka/kafka_agent_caller.h"

#include "agent/kafka/reply_reader.h"
#include "common/ids.h"
#include "queue/kafka/kafka_queue.h"

namespace af {
namespace {

class KafkaAgentCallerImpl final : public KafkaAgentCaller {
 public:
  KafkaAgentCallerImpl(std::unique_ptr<Queue> producer, std::unique_ptr<CorrelatingAgentCaller> core)
      : producer_(std::move(producer)), core_(std::move(core)) {}

  ~KafkaAgentCallerImpl() override {
    reader_.reset();    // no more replies
    core_.reset();      // no call is in flight (see the header)
    producer_.reset();  // unconfirmed requests complete with an error, posted to the executor
  }

  Status StartReader(const KafkaAgentCallerOptions& options) {
    ReplyReaderOptions ro;
    ro.kafka = options.kafka;
    ro.topic = options.reply_topic;
    CorrelatingAgentCaller* core = core_.get();
    auto reader = KafkaReplyReader::Start(
        ro, [core](std::string_view payload) { core->Deliver(payload); },
        [core](bool ready, const std::string& why_not) { core->SetReady(ready, why_not); });
    if (!reader.ok()) return reader.status();
    reader_ = std::move(reader).value();
    return Status::Ok();
  }

  boost::asio::awaitable<AgentReply> Call(const AgentEndpoint& agent, const AgentCall& call,
                                          CancelSignal* cancel) override {
    return core_->Call(agent, call, cancel);
  }

  CorrelationStats stats() const override { return core_->stats(); }

 private:
  std::unique_ptr<Queue> producer_;
  std::unique_ptr<CorrelatingAgentCaller> core_;
  std::unique_ptr<KafkaReplyReader> reader_;
};

}  // namespace

Result<std::unique_ptr<KafkaAgentCaller>> NewKafkaAgentCaller(boost::asio::any_io_executor executor,
                                                              const KafkaAgentCallerOptions& options) {
  if (!IsValidKafkaTopic(options.reply_topic)) {
    return Status::InvalidArgument("invalid Kafka reply topic '" + options.reply_topic +
                                   "'. Hint: use 1..249 characters of [A-Za-z0-9._-] (KAFKA_AGENT_REPLY_TOPIC)");
  }
  auto producer = OpenKafkaQueue(options.kafka);
  if (!producer.ok()) return producer.status();
  CorrelatingCallerOptions co;
  co.reply_topic = options.reply_topic;
  auto core = std::make_unique<CorrelatingAgentCaller>(std::move(executor), producer->get(), co);
  auto caller = std::make_unique<KafkaAgentCallerImpl>(std::move(producer).value(), std::move(core));
  AF_RETURN_IF_ERROR(caller->StartReader(options));
  return std::unique_ptr<KafkaAgentCaller>(std::move(caller));
}

}  // namespace af
