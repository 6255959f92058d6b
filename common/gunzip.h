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

// The most an API answer inflates to: a worklist page of 1,000 rows is ~1 MB. A hostile server's
// small bomb costs the client at most this much memory, not what the bomb unpacks to.
constexpr size_t kMaxApiAnswerText = size_t{64} << 20;
// The largest limit Gunzip takes (larger: refused, so that limit + 1 cannot wrap).
constexpr size_t kMaxGunzipLimit = size_t{1} << 30;

// At most `limit` bytes of text (more: refused, not allocated). The buffer starts at
// min(4 × the compressed size, 1 MiB) and doubles as the text needs, up to limit + 1.
Result<std::string> Gunzip(std::string_view gzip, size_t limit);

}  // namespace teleread
