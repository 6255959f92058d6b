#pragma once
// Where one API request's time went, for finding what the slow ones wait for: the wait for a
// handler thread, the handler (its SQL and its audit commit apart), a kept page or a read, and
// the write of the answer. Bench-only: on when TELEREAD_API_TRACE is set in the server's
// environment (read once at start); then one line per request at warn level, otherwise nothing
// is measured or logged.
//
// Thread-safety: a trace belongs to one request; the handler reaches it through a thread_local
// set for the handler's duration.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace teleread {

struct RequestTrace {
  static int64_t NowUs() {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  std::string what;  // method and path
  int64_t submitted_us = 0, started_us = 0, handled_us = 0;
  int64_t sql_us = 0, audit_us = 0, critical_us = 0, gzip_us = 0;
  int64_t writing_us = 0;  // when the answer's write began
  size_t bytes = 0;        // the answer's body
  char page = '-';         // 'k' kept page served, 'r' read, 'w' waited for another handler's read
};

// Whether TELEREAD_API_TRACE was set.
bool RequestTraceOn();
// The trace of the request this thread is handling; null when tracing is off.
RequestTrace* CurrentTrace();
// Makes `trace` the current one for this thread while in scope.
class RequestTraceScope {
 public:
  explicit RequestTraceScope(RequestTrace* trace);
  ~RequestTraceScope();
  RequestTraceScope(const RequestTraceScope&) = delete;
  RequestTraceScope& operator=(const RequestTraceScope&) = delete;

 private:
  RequestTrace* previous_;
};

// Adds the time from construction to destruction to a field of the current trace, if any.
class TraceTimer {
 public:
  explicit TraceTimer(int64_t RequestTrace::*field)
      : trace_(CurrentTrace()), field_(field), start_(trace_ ? RequestTrace::NowUs() : 0) {}
  ~TraceTimer() {
    if (trace_) trace_->*field_ += RequestTrace::NowUs() - start_;
  }
  TraceTimer(const TraceTimer&) = delete;
  TraceTimer& operator=(const TraceTimer&) = delete;

 private:
  RequestTrace* trace_;
  int64_t RequestTrace::*field_;
  int64_t start_;
};

}  // namespace teleread
