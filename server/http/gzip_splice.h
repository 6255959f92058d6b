#pragma once
// A gzip answer whose bulk is compressed once and shared by many callers: the shared part is
// kept as raw deflate blocks that end on a byte boundary and are not final (a sync flush), and
// each caller's own text before and after it goes in as stored (uncompressed) blocks around it.
// The shared blocks refer back only within themselves, so they decode the same after any prefix
// (RFC 1951); the gzip trailer's CRC-32 is combined from the parts' (crc32_combine), never
// computed over the whole again.
//
// Thread-safety: free functions; a DeflatedPart is immutable once made.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace teleread {

struct DeflatedPart {
  std::string blocks;  // raw deflate, sync-flushed, no final block
  uint32_t crc = 0;    // CRC-32 of the text
  size_t size = 0;     // the text's length
};

// Compresses `text` once (zlib level 1: the first gzip callers of a page wait for it). The
// blocks are held at their exact size (capacity too), at most DeflatedBound(text.size()).
DeflatedPart DeflatePart(std::string_view text);
// The most DeflatePart's blocks take for a text of `size` bytes (zlib's deflateBound, and the
// sync flush's marker).
size_t DeflatedBound(size_t size);

// One gzip member (RFC 1952): `prefix`, the part's text, `suffix`, in this order.
std::string GzipAround(std::string_view prefix, const DeflatedPart& part, std::string_view suffix);

// Whether an Accept-Encoding header value admits gzip ("gzip" or "x-gzip" listed with a q other
// than 0). "*" is not taken as gzip: an answer unasked for in gzip is never sent in gzip.
bool AcceptsGzip(std::string_view accept_encoding);

}  // namespace teleread
