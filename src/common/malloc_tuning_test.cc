// Its own test binary: malloc settings are process-wide.
#include "common/malloc_tuning.h"

#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdlib>
#include <cstring>

namespace af {
namespace {

// Whether a fresh allocation of `bytes` got its own mapping (glibc counts
// those in hblks) rather than heap memory.
bool MappedAlone(size_t bytes) {
  const size_t before = mallinfo2().hblks;
  void* p = std::malloc(bytes);
  std::memset(p, 1, bytes);
  asm volatile("" : : "g"(p) : "memory");  // or the compiler drops the malloc/free pair
  const size_t during = mallinfo2().hblks;
  std::free(p);
  return during > before;
}

TEST(MallocTuning, MegabyteAllocationsComeFromTheHeapNotFreshMappings) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the sanitizer's allocator replaces glibc's";
#endif
  // glibc's starting thresholds (they rise by themselves as mapped chunks
  // are freed, so the process's history decides where they are now), and
  // no free memory at the top of the heap to serve 3 MiB from.
  mallopt(M_MMAP_THRESHOLD, 128 << 10);
  mallopt(M_TRIM_THRESHOLD, 128 << 10);
  malloc_trim(0);
  ASSERT_TRUE(MappedAlone(3 << 20));
  TuneMalloc();
  EXPECT_FALSE(MappedAlone(3 << 20)) << "TuneMalloc did not raise the mmap threshold";
}

}  // namespace
}  // namespace af
