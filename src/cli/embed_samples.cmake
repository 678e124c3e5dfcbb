# Writes OUT: a C++ file defining af::SampleWorkflows() from DIR/*.json.
file(GLOB FILES ${DIR}/*.json)
list(SORT FILES)
set(body "")
foreach(f ${FILES})
  get_filename_component(name ${f} NAME_WE)
  file(READ ${f} text)
  string(APPEND body "      {\"${name}\", R\"AFJSON(${text})AFJSON\"},\n")
endforeach()
file(WRITE ${OUT} "// Generated from examples/*.json by embed_samples.cmake. Do not edit.
#include <string>
#include <utility>
#include <vector>

namespace af {
const std::vector<std::pair<std::string, std::string>>& SampleWorkflows() {
  static const std::vector<std::pair<std::string, std::string>> kSamples = {
${body}  };
  return kSamples;
}
}  // namespace af
")
