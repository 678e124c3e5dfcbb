# Writes OUT: a C++ file defining af::ui::Assets() from the console's files
# (FILES, a ;-list of paths under DIR), each embedded as a raw string.
set(body "")
foreach(f ${FILES})
  file(RELATIVE_PATH name ${DIR} ${f})
  file(READ ${f} text)
  string(FIND "${text}" ")AFUI\"" clash)
  if(NOT clash EQUAL -1)
    message(FATAL_ERROR "${f} contains the raw-string delimiter )AFUI\"")
  endif()
  get_filename_component(ext ${f} LAST_EXT)
  if(ext STREQUAL ".html")
    set(type "text/html; charset=utf-8")
  elseif(ext STREQUAL ".js")
    set(type "text/javascript; charset=utf-8")
  elseif(ext STREQUAL ".css")
    set(type "text/css; charset=utf-8")
  else()
    message(FATAL_ERROR "no content type for ${f}")
  endif()
  string(APPEND body "      {\"${name}\", \"${type}\", R\"AFUI(${text})AFUI\"},\n")
endforeach()
file(WRITE ${OUT}.tmp "// Generated from ui/ by src/ui/embed_ui.cmake. Do not edit.
#include \"ui/console.h\"

namespace af::ui {
const std::vector<Asset>& Assets() {
  static const std::vector<Asset> kAssets = {
${body}  };
  return kAssets;
}
}  // namespace af::ui
")
# Only touch OUT when it changed, so an unchanged console does not relink.
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUT}.tmp)
