#pragma once
// A byte range of a file as Beast's File: `http::basic_file_body<RangeFile>` streams a stored
// object that lies inside a segment (ObjectHandle::Range) as file_body streams a whole file,
// with its length as the body's size and its first byte as position 0.
#include <boost/beast/core/file.hpp>

#include <algorithm>
#include <cstdint>

namespace teleread {

class RangeFile {
 public:
  using native_handle_type = boost::beast::file::native_handle_type;

  RangeFile() = default;
  RangeFile(RangeFile&&) = default;
  RangeFile& operator=(RangeFile&&) = default;

  // Opens `path` for reading and places it at `offset`.
  void OpenRange(char const* path, std::uint64_t offset, std::uint64_t length, boost::beast::error_code& ec) {
    file_.open(path, boost::beast::file_mode::scan, ec);
    if (ec) return;
    offset_ = offset;
    length_ = length;
    file_.seek(offset, ec);
  }

  bool is_open() const { return file_.is_open(); }
  void close(boost::beast::error_code& ec) { file_.close(ec); }
  void open(char const* path, boost::beast::file_mode mode, boost::beast::error_code& ec) {
    file_.open(path, mode, ec);
    offset_ = 0;
    length_ = ec ? 0 : file_.size(ec);
  }
  std::uint64_t size(boost::beast::error_code& ec) const {
    ec = {};
    return length_;
  }
  std::uint64_t pos(boost::beast::error_code& ec) const { return file_.pos(ec) - offset_; }
  void seek(std::uint64_t offset, boost::beast::error_code& ec) { file_.seek(offset_ + offset, ec); }
  std::size_t read(void* buffer, std::size_t n, boost::beast::error_code& ec) const {
    const std::uint64_t at = pos(ec);
    if (ec) return 0;
    return file_.read(buffer, static_cast<std::size_t>(std::min<std::uint64_t>(n, length_ - std::min(at, length_))),
                      ec);
  }
  std::size_t write(void const*, std::size_t, boost::beast::error_code& ec) {
    ec = boost::beast::errc::make_error_code(boost::beast::errc::operation_not_permitted);
    return 0;
  }

 private:
  boost::beast::file file_;
  std::uint64_t offset_ = 0, length_ = 0;
};

}  // namespace teleread
