#include "common/status.h"

#include <cerrno>
#include <cstring>

namespace teleread {

Status Status::FromErrno(int err, const std::string& what) {
  std::string msg = what + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) return NoSpace(std::move(msg));
  return IOError(std::move(msg));
}

std::string Status::ToString() const {
  const char* name = "OK";
  switch (code_) {
    case Code::kOk:
      return "OK";
    case Code::kInvalidArgument:
      name = "invalid argument";
      break;
    case Code::kNotFound:
      name = "not found";
      break;
    case Code::kConflict:
      name = "conflict";
      break;
    case Code::kIOError:
      name = "I/O error";
      break;
    case Code::kNoSpace:
      name = "no space";
      break;
    case Code::kCorruption:
      name = "corruption";
      break;
    case Code::kPermissionDenied:
      name = "permission denied";
      break;
    case Code::kUnavailable:
      name = "unavailable";
      break;
  }
  return std::string(name) + ": " + message_;
}

}  // namespace teleread
