#include "common/time.h"

#include <chrono>
#include <cstdio>
#include <ctime>

namespace af {

TimeMs NowMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

namespace {

// gmtime_r and snprintf: any time, but ~4k instructions and glibc's
// timezone lock per call. Outside the four-digit years only.
std::string FormatWithLibc(TimeMs t) {
  time_t secs = static_cast<time_t>(t / 1000);
  int ms = static_cast<int>(t % 1000);
  if (ms < 0) {
    ms += 1000;
    secs -= 1;
  }
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

void PutDigits(char* at, int64_t value, int width) {
  for (int i = width - 1; i >= 0; --i) {
    at[i] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
}

}  // namespace

// A run's answer, its queue message and each step's JSON carry timestamps:
// written here from the day count (the proleptic Gregorian calendar, as
// gmtime) in a few dozen instructions.
std::string FormatIso8601(TimeMs t) {
  if (t < kMinIso8601Ms || t > kMaxIso8601Ms) return FormatWithLibc(t);
  constexpr int64_t kMsPerDay = 86400000;
  int64_t days = t / kMsPerDay;
  int64_t ms_of_day = t % kMsPerDay;
  if (ms_of_day < 0) {
    ms_of_day += kMsPerDay;
    days -= 1;
  }
  // Days since 1970-01-01 to year, month, day, counting in 400-year eras
  // that start on March 1st (so the leap day ends a year).
  const int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;                                  // [0, 146096]
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  // [0, 399]
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);           // [0, 365]
  const int64_t mp = (5 * doy + 2) / 153;                                // [0, 11], from March
  const int64_t day = doy - (153 * mp + 2) / 5 + 1;
  const int64_t month = mp < 10 ? mp + 3 : mp - 9;
  const int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  std::string out(24, ' ');  // YYYY-MM-DDTHH:MM:SS.mmmZ
  char* p = out.data();
  PutDigits(p, year, 4);
  p[4] = '-';
  PutDigits(p + 5, month, 2);
  p[7] = '-';
  PutDigits(p + 8, day, 2);
  p[10] = 'T';
  PutDigits(p + 11, ms_of_day / 3600000, 2);
  p[13] = ':';
  PutDigits(p + 14, ms_of_day / 60000 % 60, 2);
  p[16] = ':';
  PutDigits(p + 17, ms_of_day / 1000 % 60, 2);
  p[19] = '.';
  PutDigits(p + 20, ms_of_day % 1000, 3);
  p[23] = 'Z';
  return out;
}

namespace {

// `n` digits at `pos` (and moves past them).
bool Digits(const std::string& s, size_t& pos, size_t n, int& out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = s[pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  pos += n;
  return true;
}

bool Char(const std::string& s, size_t& pos, char c) {
  if (pos >= s.size() || s[pos] != c) return false;
  ++pos;
  return true;
}

int DaysInMonth(int y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[m - 1];
}

}  // namespace

// Strict: exactly the digits and separators FormatIso8601 writes, fields in
// range (no second 60: FormatIso8601 never writes one, and 9999-12-31T23:59:60
// would be a year it cannot write), so every value read here formats back
// to text this reads again. A fraction of 1..9 digits is read as
// milliseconds (".5" is 500 ms).
std::optional<TimeMs> ParseIso8601(const std::string& s) {
  size_t pos = 0;
  int y, mo, d, h, mi, sec, ms = 0;
  if (!Digits(s, pos, 4, y) || !Char(s, pos, '-') || !Digits(s, pos, 2, mo) || !Char(s, pos, '-') ||
      !Digits(s, pos, 2, d) || !Char(s, pos, 'T') || !Digits(s, pos, 2, h) || !Char(s, pos, ':') ||
      !Digits(s, pos, 2, mi) || !Char(s, pos, ':') || !Digits(s, pos, 2, sec)) {
    return std::nullopt;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > DaysInMonth(y, mo) || h > 23 || mi > 59 || sec > 59) return std::nullopt;
  if (Char(s, pos, '.')) {
    size_t digits = 0;
    for (; pos < s.size() && s[pos] >= '0' && s[pos] <= '9'; ++pos, ++digits) {
      if (digits < 3) ms = ms * 10 + (s[pos] - '0');
    }
    if (digits == 0 || digits > 9) return std::nullopt;
    for (size_t i = digits; i < 3; ++i) ms *= 10;
  }
  if (!Char(s, pos, 'Z') || pos != s.size()) return std::nullopt;
  struct tm tm {};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  return static_cast<TimeMs>(timegm(&tm)) * 1000 + ms;
}

}  // namespace af
