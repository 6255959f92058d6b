#include "server/http/tar_stream.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>

namespace teleread {

std::string TarStream::Next() {
  if (done_) return "";
  if (!in_.is_open()) {
    if (index_ == files_.size()) {
      done_ = true;
      return std::string(1024, '\0');
    }
    // One object open at a time: one held in the index lives in a memory file until read.
    Result<ObjectHandle> object =
        objects_ ? objects_->Open(files_[index_].second) : Result<ObjectHandle>(Status::NotFound("no store"));
    std::error_code ec;
    if (object.ok()) {
      current_ = std::move(object.value());
      in_.open(current_.path(), std::ios::binary);
      if (current_.ranged()) {  // an object inside a segment
        in_.seekg(static_cast<std::streamoff>(current_.offset()));
        remaining_ = current_.length();
      } else {
        remaining_ = std::filesystem::file_size(current_.path(), ec);
      }
      size_ = remaining_;
    }
    if (!object.ok() || !in_ || ec) {
      done_ = true;
      failed_ = files_[index_].second;
      return "";
    }
    return Header(files_[index_].first, remaining_);
  }
  std::string piece(std::min<uint64_t>(remaining_, kPiece), '\0');
  in_.read(piece.data(), static_cast<std::streamsize>(piece.size()));
  if (in_.gcount() != static_cast<std::streamsize>(piece.size())) {  // the file shrank under us
    done_ = true;
    failed_ = files_[index_].second;
    return "";
  }
  remaining_ -= piece.size();
  if (remaining_ == 0) {
    piece.append((512 - size_ % 512) % 512, '\0');
    in_.close();
    current_ = ObjectHandle();
    ++index_;
  }
  return piece;
}

std::string TarStream::Header(const std::string& name, uint64_t size) {
  std::string h(512, '\0');
  auto put = [&h](size_t at, size_t len, const std::string& v) {
    h.replace(at, std::min(len, v.size()), v.substr(0, len));
  };
  auto octal = [](uint64_t v, int width) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%0*llo", width, static_cast<unsigned long long>(v));
    return std::string(buf);
  };
  put(0, 100, name);
  put(100, 8, "0000644");
  put(108, 8, "0000000");
  put(116, 8, "0000000");
  put(124, 12, octal(size, 11));
  put(136, 12, octal(static_cast<uint64_t>(std::time(nullptr)), 11));
  put(148, 8, "        ");
  h[156] = '0';
  put(257, 6, std::string("ustar\0", 6));
  put(263, 2, "00");
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  put(148, 8, octal(sum, 6) + std::string("\0 ", 2));
  return h;
}

}  // namespace teleread
