#pragma once
// A file written once, front to back, with O_DIRECT: the bytes go from a reused, aligned buffer
// to the disk without passing through the page cache. On this VM a page-cache write spends most
// of its time faulting in fresh guest pages (copy_folio_from_iter_atomic: 25-28% of both cores in
// slow CT cells, 1% in fast ones), and the file's pages had to be written back before its fsync
// anyway. The head (kHead bytes) goes the ordinary way, through the page cache, where the parse
// that follows reads it; the rest with O_DIRECT. Where O_DIRECT is refused (by the file system or
// at a write) the file is written the ordinary way.
// The last partial block goes out zero-padded and the file is then cut to its real length, so
// the file holds exactly the bytes appended. Not thread-safe: one writer per file.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>

namespace teleread {

class DirectFile {
 public:
  // Bytes per disk write: a multiple of the alignment; the buffer's size (RSS per receiving association).
  static constexpr size_t kChunk = 256 * 1024;
  static constexpr size_t kAlign = 4096;  // covers any logical block size up to a page
  // Read back at once by the parse (DCMTK reads 64 KiB at offset 128): kept in the page cache.
  static constexpr size_t kHead = 128 * 1024;

  DirectFile() = default;
  ~DirectFile();
  DirectFile(const DirectFile&) = delete;
  DirectFile& operator=(const DirectFile&) = delete;

  // Creates `path` (O_EXCL). 0 or the errno.
  int Create(const std::filesystem::path& path, bool direct = true);
  // 0 or the errno of the failed write (ENOSPC for a write of nothing).
  int Append(const void* data, size_t n);
  // Writes what is buffered, cuts the file to its length and closes it. 0 or the errno.
  int Finish();
  bool direct() const { return direct_; }
  int fd() const { return fd_; }  // open from Create to Finish
  uint64_t size() const { return size_; }

 private:
  int WriteHead();
  int WriteBuffer();
  int DropDirect();

  int fd_ = -1;
  bool direct_ = false;
  std::unique_ptr<char, void (*)(void*)> buffer_{nullptr, nullptr};
  size_t used_ = 0;    // bytes in buffer_
  uint64_t size_ = 0;    // bytes appended
  uint64_t offset_ = 0;  // bytes in the file (the padding not counted)
};

}  // namespace teleread
