#include "server/http/gzip_splice.h"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <stdexcept>

namespace teleread {
namespace {

void PutLe(std::string& out, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Stored blocks (RFC 1951 3.2.4), each starting and ending on a byte boundary. `final` marks the
// last one; a final block is written even for no text, so that the stream ends.
void StoredBlocks(std::string& out, std::string_view text, bool final) {
  constexpr size_t kMax = 65535;
  do {
    const size_t n = std::min(text.size(), kMax);
    const bool last = final && n == text.size();
    out.push_back(static_cast<char>(last ? 1 : 0));  // BFINAL, BTYPE 00, padding
    PutLe(out, static_cast<uint32_t>(n), 2);
    PutLe(out, static_cast<uint32_t>(~n & 0xffff), 2);
    out.append(text.substr(0, n));
    text.remove_prefix(n);
  } while (!text.empty());
}

uint32_t Crc(std::string_view text) {
  return static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(text.data()), static_cast<uInt>(text.size())));
}

std::string Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  std::string lower(s);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower;
}

}  // namespace

size_t DeflatedBound(size_t size) {
  // zlib's conservative deflateBound (any parameters), without a stream; +16 for the sync flush's
  // empty stored block and slack.
  return size + ((size + 7) >> 3) + ((size + 63) >> 6) + 5 + 16;
}

DeflatedPart DeflatePart(std::string_view text) {
  z_stream z{};
  // Raw deflate (negative window bits): no zlib header, the gzip member is made around it.
  if (deflateInit2(&z, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) throw std::runtime_error("deflateInit2");
  DeflatedPart part;
  part.size = text.size();
  part.crc = Crc(text);
  std::string out(DeflatedBound(text.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  // A sync flush ends on a byte boundary with the stream still open: more blocks may follow.
  const int rc = deflate(&z, Z_SYNC_FLUSH);
  const bool whole = rc == Z_OK && z.avail_in == 0 && z.avail_out > 0;
  // Copied at its size: resized down, `out` would keep the bound's capacity (what a kept page holds).
  part.blocks.assign(out.data(), out.size() - z.avail_out);
  deflateEnd(&z);
  if (!whole) throw std::runtime_error("deflate did not take the whole text");
  return part;
}

std::string GzipAround(std::string_view prefix, const DeflatedPart& part, std::string_view suffix) {
  std::string out;
  out.reserve(10 + prefix.size() + part.blocks.size() + suffix.size() + 32);
  // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=255 (unknown).
  out.append("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff", 10);
  if (!prefix.empty()) StoredBlocks(out, prefix, false);
  out += part.blocks;
  StoredBlocks(out, suffix, true);
  uint32_t crc = Crc(prefix);
  crc = static_cast<uint32_t>(crc32_combine(crc, part.crc, static_cast<z_off_t>(part.size)));
  crc = static_cast<uint32_t>(crc32_combine(crc, Crc(suffix), static_cast<z_off_t>(suffix.size())));
  PutLe(out, crc, 4);
  PutLe(out, static_cast<uint32_t>(prefix.size() + part.size + suffix.size()), 4);  // ISIZE: mod 2^32
  return out;
}

bool AcceptsGzip(std::string_view accept_encoding) {
  while (!accept_encoding.empty()) {
    const size_t comma = accept_encoding.find(',');
    std::string_view item = accept_encoding.substr(0, comma);
    accept_encoding.remove_prefix(comma == std::string_view::npos ? accept_encoding.size() : comma + 1);
    const size_t semi = item.find(';');
    const std::string name = Trim(item.substr(0, semi));
    if (name != "gzip" && name != "x-gzip") continue;
    if (semi == std::string_view::npos) return true;
    // Parameters: only q matters; q=0 (0.0, 0.000) refuses this item, and a later one may admit
    // gzip still ("gzip;q=0, x-gzip"). from_chars: the same in any locale.
    const std::string params = Trim(item.substr(semi + 1));
    const size_t q = params.find("q=");
    if (q == std::string::npos) return true;
    double weight = 0;
    const char* end = params.data() + params.size();
    if (std::from_chars(params.data() + q + 2, end, weight).ec != std::errc()) continue;  // unreadable: not admitted
    if (weight > 0) return true;
  }
  return false;
}

}  // namespace teleread
