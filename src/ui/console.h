// The web console, served by `agentflow serve` and `agentflow api` from
// files embedded at build time (ui/ at the repository's root; see
// src/ui/CMakeLists.txt): GET / is the page, GET /ui/{file} its scripts and
// style. No server or file is needed at run time.
#pragma once

#include <string_view>
#include <vector>

#include "http/http.h"

namespace af::ui {

struct Asset {
  std::string_view name;          // "app.js", as under /ui/
  std::string_view content_type;  // with charset
  std::string_view body;
};

// Every embedded file (generated: ui_assets.cc).
const std::vector<Asset>& Assets();

// Adds GET / and GET /ui/{file}. Each answer has an ETag (a 304 for a
// matching If-None-Match), Cache-Control: no-cache (the browser asks again,
// so a new binary's console is seen at once) and a Content-Security-Policy
// that allows only the console's own files and calls to this origin.
void RegisterConsole(http::Router& router);

}  // namespace af::ui
