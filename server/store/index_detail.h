#pragma once
// What index.cc and index_commit.cc (the group commit) share. Private to store/.
#include <cstdint>

namespace teleread::index_detail {

// Bench-only (server/http/request_trace.h): one line per batch of the writer, when set.
bool BatchTraceOn();
// The time the last auto-checkpoint took (bench-only trace), on the thread whose COMMIT ran it.
extern thread_local int64_t checkpoint_us;
// Steady clock, µs.
int64_t NowUs();

}  // namespace teleread::index_detail
