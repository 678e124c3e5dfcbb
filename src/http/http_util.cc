// Plain helpers shared by the server, the router and the client: header
// lookup, JSON responses, URL and query parsing. No Beast here.
#include <cctype>
#include <charconv>

#include "common/json_text.h"
#include "http/http.h"

namespace af::http {

namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string FindHeader(const Headers& headers, std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (EqualsIgnoreCase(k, name)) return v;
  }
  return "";
}

Response JsonError(int status, std::string_view code, std::string_view message, const nlohmann::json& details) {
  nlohmann::json err = {{"code", std::string(code)}, {"message", std::string(message)}};
  if (!details.is_null()) err["details"] = details;
  return JsonResponse(status, nlohmann::json{{"error", std::move(err)}});
}

Response JsonResponse(int status, const nlohmann::json& body) {
  Response r;
  r.status = status;
  r.content_type = "application/json";
  // Replace rather than throw on invalid UTF-8: an error message quoting a
  // client's bytes must not turn into a 500.
  r.body = JsonText(body);
  return r;
}

Response JsonTextResponse(int status, std::string json_text) {
  Response r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::move(json_text);
  return r;
}

Result<Url> ParseUrl(const std::string& url) {
  constexpr std::string_view kScheme = "http://";
  std::string_view s = url;
  if (s.size() < kScheme.size() || !EqualsIgnoreCase(s.substr(0, kScheme.size()), kScheme)) {
    return Status::InvalidArgument("unsupported URL '" + url +
                                   "': only http://host[:port]/path is supported. Hint: write it as "
                                   "http://127.0.0.1:9000/agents/echo");
  }
  s.remove_prefix(kScheme.size());
  if (size_t hash = s.find('#'); hash != std::string_view::npos) s = s.substr(0, hash);
  size_t end = s.find_first_of("/?");
  std::string_view authority = s.substr(0, end);
  std::string_view rest = end == std::string_view::npos ? std::string_view() : s.substr(end);
  if (authority.find('@') != std::string_view::npos) {
    return Status::InvalidArgument("URL '" + url + "' has user info, which is not supported");
  }

  Url out;
  std::string_view host = authority;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {  // [IPv6]:port
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return Status::InvalidArgument("URL '" + url + "' has an unclosed '['");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return Status::InvalidArgument("URL '" + url + "' has junk after ']'");
      port = after.substr(1);
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return Status::InvalidArgument("URL '" + url + "' has no host");
  if (!port.empty()) {
    unsigned value = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || ptr != port.data() + port.size() || value == 0 || value > 65535) {
      return Status::InvalidArgument("URL '" + url + "' has an invalid port");
    }
    out.port = static_cast<uint16_t>(value);
  }
  out.host = std::string(host);
  if (rest.empty()) {
    out.target = "/";
  } else if (rest.front() == '?') {
    out.target = "/" + std::string(rest);
  } else {
    out.target = std::string(rest);
  }
  for (char c : out.target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return Status::InvalidArgument("URL '" + url + "' contains spaces or control characters. Hint: percent-encode them");
    }
  }
  return out;
}

std::optional<std::string> PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;  // truncated escape
    int hi = HexValue(s[i + 1]);
    int lo = HexValue(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;  // a continuation byte first, 0xC0/0xC1 (overlong) or above 0xF4
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
      return false;
    }
    i += len;
  }
  return true;
}

std::map<std::string, std::string> ParseQuery(std::string_view query) {
  std::map<std::string, std::string> out;
  if (!query.empty() && query.front() == '?') query.remove_prefix(1);
  auto decode = [](std::string_view part) {
    std::string plus(part);
    for (auto& c : plus) {
      if (c == '+') c = ' ';  // form encoding
    }
    auto decoded = PercentDecode(plus);
    return decoded ? *decoded : plus;  // keep a malformed escape as sent
  };
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    std::string key = decode(pair.substr(0, eq));
    std::string value = eq == std::string_view::npos ? std::string() : decode(pair.substr(eq + 1));
    if (key.empty()) continue;
    out.insert_or_assign(std::move(key), std::move(value));  // the last repeat wins
  }
  return out;
}

}  // namespace af::http
