#pragma once
// How the reading API's routes answer: JSON bodies and the one mapping from Status to HTTP.
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "server/http/https_server.h"

namespace teleread {
struct WorklistRow;
}

namespace teleread::api {

// Paths, query values and stored attributes are bytes from outside and need not be UTF-8, which
// json::dump would refuse by throwing; such bytes are shown as U+FFFD instead.
inline HttpResponse Json(int status, const nlohmann::json& body) {
  return HttpResponse{
      status, "application/json", body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), {}, {}};
}

inline HttpResponse Error(int status, const std::string& message) {
  return Json(status, nlohmann::json{{"error", message}});
}

// A worklist row as the worklist, study and priors routes show it (worklist_api.cc).
nlohmann::json RowJson(const WorklistRow& r);

// A query parameter's percent-decoded value; "1" for a key without '=', "" when absent.
std::string QueryParam(const std::string& query, const std::string& key);

// Patient data leaves only once its audit entry is written (fail closed): the refusal, logged.
HttpResponse AuditFailed(const Status& s);

inline int StatusFor(const Status& s) {
  switch (s.code()) {
    case Status::Code::kNotFound:
      return 404;
    case Status::Code::kConflict:
      return 409;
    case Status::Code::kInvalidArgument:
      return 400;
    case Status::Code::kPermissionDenied:
      return 403;
    case Status::Code::kCorruption:
      return 422;  // well-formed, but its signature or content cannot be trusted
    case Status::Code::kNoSpace:
      return 507;
    case Status::Code::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

}  // namespace teleread::api
