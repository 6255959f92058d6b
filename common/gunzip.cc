#include "common/gunzip.h"

#include <zlib.h>

#include <algorithm>

namespace teleread {

Result<std::string> Gunzip(std::string_view gzip, size_t limit) {
  if (limit > kMaxGunzipLimit) return Status::InvalidArgument("gunzip: a limit over 1 GiB");
  z_stream z{};
  if (inflateInit2(&z, 16 + 15) != Z_OK) return Status::IOError("gunzip: inflateInit2 failed");  // 16: gzip only
  // Small at first: a bomb of a few MB must not cost its ratio up front, only what it inflates to.
  const size_t first = std::clamp<size_t>(gzip.size() * 4, 4096, size_t{1} << 20);
  std::string out(std::min(first, limit + 1), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gzip.data()));
  z.avail_in = static_cast<uInt>(gzip.size());
  size_t done = 0;
  int rc = Z_OK;
  while (rc == Z_OK && done <= limit) {
    if (done == out.size()) out.resize(std::min(out.size() * 2, limit + 1));
    z.next_out = reinterpret_cast<Bytef*>(out.data() + done);
    z.avail_out = static_cast<uInt>(out.size() - done);
    rc = inflate(&z, Z_NO_FLUSH);
    done = out.size() - z.avail_out;
    if (rc == Z_BUF_ERROR && z.avail_out != 0) break;  // no progress with room left: the stream stops short
    if (rc == Z_BUF_ERROR) rc = Z_OK;                  // out of room: grow and go on
  }
  inflateEnd(&z);
  if (done > limit) return Status::InvalidArgument("gunzip: the text is over " + std::to_string(limit) + " bytes");
  if (rc != Z_STREAM_END) return Status::InvalidArgument("gunzip: not a whole gzip stream");
  if (z.avail_in != 0) return Status::InvalidArgument("gunzip: bytes after the gzip stream");
  out.resize(done);
  return out;
}

}  // namespace teleread
