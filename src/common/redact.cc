#include "common/redact.h"

#include <algorithm>
#include <cctype>

namespace af {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool Contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Query parameters of a URL: "a=1&password=x" with the secret values replaced.
std::string RedactQuery(std::string_view query) {
  std::string out;
  while (true) {
    size_t amp = query.find('&');
    std::string_view param = query.substr(0, amp);
    size_t eq = param.find('=');
    if (eq != std::string_view::npos && IsSecretSetting(param.substr(0, eq))) {
      out.append(param.substr(0, eq + 1)).append(kRedacted);
    } else {
      out.append(param);
    }
    if (amp == std::string_view::npos) break;
    out.push_back('&');
    query.remove_prefix(amp + 1);
  }
  return out;
}

// libpq "key=value key='quoted value'" strings.
std::string RedactConninfo(std::string_view s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    if (std::isspace(static_cast<unsigned char>(s[i]))) {
      out.push_back(s[i++]);
      continue;
    }
    size_t key_start = i;
    while (i < s.size() && s[i] != '=' && !std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    std::string_view key = s.substr(key_start, i - key_start);
    out.append(key);
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) out.push_back(s[i++]);
    if (i >= s.size() || s[i] != '=') continue;
    out.push_back(s[i++]);
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) out.push_back(s[i++]);
    size_t value_start = i;
    if (i < s.size() && s[i] == '\'') {
      ++i;
      while (i < s.size() && s[i] != '\'') i += (s[i] == '\\' && i + 1 < s.size()) ? 2 : 1;
      if (i < s.size()) ++i;
    } else {
      while (i < s.size() && !std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    }
    if (IsSecretSetting(key)) {
      out.append(kRedacted);
    } else {
      out.append(s.substr(value_start, i - value_start));
    }
  }
  return out;
}

}  // namespace

bool IsSecretSetting(std::string_view name) {
  std::string n = Lower(name);
  for (std::string_view part : {"password", "passwd", "secret", "token", "credential", "private"}) {
    if (Contains(n, part)) return true;
  }
  return EndsWith(n, ".pem") || EndsWith(n, ".key") || n == "sasl.oauthbearer.config" ||
         n == "sasl.kerberos.keytab";
}

std::string RedactSetting(std::string_view name, std::string_view value) {
  return IsSecretSetting(name) ? std::string(kRedacted) : std::string(value);
}

std::string RedactUrl(std::string_view url) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) {
    return url.find('=') == std::string_view::npos ? std::string(url) : RedactConninfo(url);
  }
  size_t authority_start = scheme_end + 3;
  size_t authority_end = url.find_first_of("/?#", authority_start);
  if (authority_end == std::string_view::npos) authority_end = url.size();
  std::string_view authority = url.substr(authority_start, authority_end - authority_start);
  std::string out(url.substr(0, authority_start));
  size_t at = authority.rfind('@');
  if (at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    size_t colon = userinfo.find(':');
    if (colon != std::string_view::npos) {
      out.append(userinfo.substr(0, colon + 1)).append(kRedacted);
    } else {
      out.append(userinfo);
    }
    out.append(authority.substr(at));
  } else {
    out.append(authority);
  }
  std::string_view rest = url.substr(authority_end);
  size_t q = rest.find('?');
  if (q == std::string_view::npos) {
    out.append(rest);
    return out;
  }
  size_t hash = rest.find('#', q);
  out.append(rest.substr(0, q + 1));
  out.append(RedactQuery(rest.substr(q + 1, hash == std::string_view::npos ? std::string_view::npos : hash - q - 1)));
  if (hash != std::string_view::npos) out.append(rest.substr(hash));
  return out;
}

}  // namespace af
