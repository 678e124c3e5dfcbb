// glibc malloc settings for the long-running agentflow processes.
//
// By default glibc hands freed memory back to the kernel as soon as the top
// of a heap has more than 128 KiB free (and adapts its mmap threshold), so a
// process that allocates and frees a few hundred KiB per request, on
// several threads, keeps trimming its heaps with madvise and faulting the
// pages in again: each trim is a TLB shootdown across cores. Measured on
// chain10 in `serve` (perf, 2 cores): madvise, page faults and heap growth
// were about a tenth of the process's CPU; with these settings serve used
// 9% less CPU per run and ran 9% more runs/s (docs/benchmarks.md).
#pragma once

namespace af {

// Keeps up to 64 MiB free at the top of each heap (and pads heap growth by
// 16 MiB), and serves allocations up to 4 MiB from the heaps rather than
// fresh mappings. Does nothing if GLIBC_TUNABLES sets any malloc tunable:
// the operator's choice wins.
void TuneMalloc();

}  // namespace af
