#pragma once
// The text of a gzip body (RFC 1952), as the reading API sends a worklist page to a client that
// accepts it. One member, read whole: trailing bytes, a short stream or a bad CRC are refused.
//
// Thread-safety: a free function.
#include <cstddef>
#include <string>
#include <string_view>

#include "common/status.h"

namespace teleread {

// At most `limit` bytes of text (more: refused, not allocated).
Result<std::string> Gunzip(std::string_view gzip, size_t limit);

}  // namespace teleread
