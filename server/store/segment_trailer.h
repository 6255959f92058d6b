#pragma once
// What ends each object's slot in a segment (store/README.md): 64 bytes naming the object's
// offset, length and XXH3-64 hash, in the last bytes of the block after the object's last byte
// (the padding before them is zeros), sealed with an HMAC under the installation's trailer key
// (segments/trailer.key), so that no sender can plant one inside an object's bytes. A segment
// can then be read without the index: start-up finds the objects stored past the last one a row
// names (stored between the two steps of a backup, or synced before a crash cut their commit
// off), and proves each whole before it is indexed again.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace teleread {

constexpr size_t kSegmentTrailerBytes = 64;

struct SegmentTrailer {
  uint64_t offset = 0;  // of the object's first byte in the segment
  uint64_t length = 0;
  uint64_t hash = 0;  // XXH3-64 of the object's bytes
};

// The trailer key of the segments in `dir` (32 random bytes in dir/trailer.key, mode 0600), made
// and synced when there is none and `create`; NotFound without one otherwise.
Result<std::string> SegmentTrailerKey(const std::filesystem::path& dir, bool create);

// The trailer sealed under `key`; empty when it cannot be sealed (OpenSSL failed).
std::string EncodeSegmentTrailer(const SegmentTrailer& trailer, std::string_view key);
// A trailer from exactly kSegmentTrailerBytes bytes, if they hold one sealed under `key`.
std::optional<SegmentTrailer> DecodeSegmentTrailer(std::string_view bytes, std::string_view key);
// Where the slot of an object at `offset` of `length` bytes ends, its trailer included: the next
// object's offset (a multiple of `align`).
uint64_t SegmentSlotEnd(uint64_t offset, uint64_t length, uint64_t align);

// XXH3-64 over bytes given piece by piece.
class ObjectHasher {
 public:
  ObjectHasher();
  ~ObjectHasher();
  ObjectHasher(const ObjectHasher&) = delete;
  ObjectHasher& operator=(const ObjectHasher&) = delete;
  void Reset();
  void Update(const void* data, size_t n);
  uint64_t Digest() const;

 private:
  void* state_;  // XXH3_state_t
};

// Zeros over the trailer of the object at `offset` of `length` bytes (a refused or unneeded copy
// that no row names), so that no scan finds it again; synced before it returns: the refusal it
// goes with must not be undone by a replay after a power cut that took the winner's unsynced row
// (index.h, Durability), as start-up replays segments in the order they were made.
Status VoidSegmentTrailer(const std::filesystem::path& segment, uint64_t offset, uint64_t length, uint64_t align);

// What an indexed object's trailer says of its bytes now.
enum class TrailerCheck {
  kWhole,      // its bytes match the hash its trailer took as they arrived
  kDamaged,    // they do not, or cannot be read
  kNoTrailer,  // no trailer sealed under `key` names it (stored before trailers)
};
Result<TrailerCheck> CheckSegmentObject(const std::filesystem::path& segment, uint64_t offset, uint64_t length,
                                        uint64_t align, std::string_view key);

struct SegmentScan {
  std::vector<SegmentTrailer> objects;  // in order, each proven whole: its bytes match its hash
  int damaged = 0;                      // trailers whose object's bytes do not match their hash
};
// The objects of `segment` whose slots lie wholly at or after `from` (a multiple of `align`).
// Space without a trailer (an object cut short, never acknowledged) is stepped over.
// An object whose bytes cannot be read counts as damaged. Zeros at the end of the file, past
// the last object found (or `from`) and the last block that holds anything (an allocated or
// pre-written tail no one wrote), are cut off: a segment is never written again by a later
// process, so the next start reads no more of it and the space is free again.
Result<SegmentScan> FindSegmentObjects(const std::filesystem::path& segment, uint64_t from, uint64_t align,
                                       std::string_view key);

}  // namespace teleread
