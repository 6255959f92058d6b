#include "server/http/request_trace.h"

#include <cstdlib>

namespace teleread {
namespace {

thread_local RequestTrace* current = nullptr;

}  // namespace

bool RequestTraceOn() {
  static const bool on = std::getenv("TELEREAD_API_TRACE") != nullptr;
  return on;
}

RequestTrace* CurrentTrace() { return current; }

RequestTraceScope::RequestTraceScope(RequestTrace* trace) : previous_(current) { current = trace; }

RequestTraceScope::~RequestTraceScope() { current = previous_; }

}  // namespace teleread
