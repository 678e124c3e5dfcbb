#include "auth/agent_hosts.h"

#include <cctype>

#include "http/http.h"

namespace af::auth {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Host names, IPv4 and IPv6 literals: letters, digits, '.', '-', ':', '_'
// (and a leading "*." wildcard, checked by the caller).
bool IsHostText(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '_';
    if (!ok) return false;
  }
  return true;
}

class HostCheckingCaller final : public AgentCaller {
 public:
  HostCheckingCaller(std::unique_ptr<AgentCaller> inner, AgentHostAllowList allow)
      : inner_(std::move(inner)), allow_(std::move(allow)) {}

  boost::asio::awaitable<AgentReply> Call(const AgentEndpoint& agent, const AgentCall& call,
                                          CancelSignal* cancel) override {
    if (agent.transport == AgentTransport::kHttp && !allow_.allows_all()) {
      Status s = allow_.CheckUrl("url", agent.url);
      if (!s.ok()) {
        AgentReply refused;
        refused.outcome = AgentReply::Outcome::kPermanent;
        refused.error = "not called: agent '" + agent.name + "' " + s.message();
        co_return refused;
      }
    }
    boost::asio::awaitable<AgentReply> forwarded = inner_->Call(agent, call, cancel);
    AgentReply reply = co_await std::move(forwarded);
    co_return reply;
  }

 private:
  std::unique_ptr<AgentCaller> inner_;
  AgentHostAllowList allow_;
};

}  // namespace

Result<AgentHostAllowList> AgentHostAllowList::Parse(std::string_view comma_list) {
  AgentHostAllowList out;
  while (true) {
    size_t comma = comma_list.find(',');
    std::string_view entry = Trim(comma_list.substr(0, comma));
    if (!entry.empty()) {
      std::string_view host = entry.substr(0, 2) == "*." ? entry.substr(2) : entry;
      if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
      if (!IsHostText(host) || host.find('*') != std::string_view::npos) {
        return Status::InvalidArgument("agent hosts: '" + std::string(entry) +
                                       "' is not a host name or IP address. Hint: list hosts separated by commas, "
                                       "e.g. --agent-hosts agents.internal,10.0.0.5,*.agents.example.com");
      }
      out.entries_.push_back(Lower(entry.substr(0, 2) == "*." ? "*." + std::string(host) : std::string(host)));
    }
    if (comma == std::string_view::npos) break;
    comma_list.remove_prefix(comma + 1);
  }
  return out;
}

bool AgentHostAllowList::Allows(std::string_view host) const {
  if (entries_.empty()) return true;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  std::string h = Lower(host);
  for (const std::string& e : entries_) {
    if (e == h) return true;
    if (e.rfind("*.", 0) == 0) {
      std::string_view suffix = std::string_view(e).substr(1);  // ".example.com"
      if (h.size() > suffix.size() && h.compare(h.size() - suffix.size(), suffix.size(), suffix) == 0) return true;
    }
  }
  return false;
}

Status AgentHostAllowList::CheckUrl(std::string_view field, const std::string& url) const {
  if (entries_.empty()) return Status::Ok();
  auto parsed = http::ParseUrl(url);
  if (!parsed.ok()) return Status::InvalidArgument(std::string(field) + ": must be an http:// URL");
  if (Allows(parsed->host)) return Status::Ok();
  return Status::InvalidArgument(
      std::string(field) + ": host '" + parsed->host + "' is not an allowed agent host (allowed: " + ToString() +
          "). Hint: use a URL on an allowed host, or add the host to --agent-hosts / AGENTFLOW_AGENT_HOSTS",
      {{"problems", nlohmann::json::array({{{"field", std::string(field)},
                                            {"message", std::string(field) + ": host '" + parsed->host +
                                                            "' is not an allowed agent host"},
                                            {"host", parsed->host}}})}});
}

std::string AgentHostAllowList::ToString() const {
  std::string out;
  for (const std::string& e : entries_) out += (out.empty() ? "" : ", ") + e;
  return out;
}

std::unique_ptr<AgentCaller> NewHostCheckingAgentCaller(std::unique_ptr<AgentCaller> inner,
                                                        AgentHostAllowList allow) {
  if (allow.allows_all()) return inner;
  return std::make_unique<HostCheckingCaller>(std::move(inner), std::move(allow));
}

}  // namespace af::auth
