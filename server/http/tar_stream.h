#pragma once
// Produces a ustar archive piece by piece: a header block, the file's bytes, padding to 512,
// and two zero blocks at the end. A file that cannot be read whole ends it unfinished. Used by
// the HTTPS server to stream a study's objects without a copy on disk or in memory.
//
// Thread-safety: one stream per response, used from one thread at a time.
#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "server/store/object_handle.h"
#include "server/store/object_store.h"

namespace teleread {

class TarStream {
 public:
  // `files`: (name in the archive, path recorded in the index), opened through `objects`.
  TarStream(std::vector<std::pair<std::string, std::string>> files, const ObjectStore* objects)
      : files_(std::move(files)), objects_(objects) {}

  // The next piece, empty when the archive is complete or cannot be (see failed()).
  std::string Next();
  // The file that could not be read whole; empty while all is well.
  const std::string& failed() const { return failed_; }

 private:
  static constexpr uint64_t kPiece = 256 * 1024;
  static std::string Header(const std::string& name, uint64_t size);

  std::vector<std::pair<std::string, std::string>> files_;
  const ObjectStore* objects_;
  ObjectHandle current_;  // the object being read
  uint64_t size_ = 0;     // its size
  std::string failed_;
  size_t index_ = 0;
  std::ifstream in_;
  uint64_t remaining_ = 0;
  bool done_ = false;
};

}  // namespace teleread
