#include "server/store/export.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <string_view>
#include <vector>

#include "common/write_all.h"

#include "server/store/index.h"
#include "server/store/object_store.h"
#include "server/store/sqlite.h"

namespace teleread {
namespace fs = std::filesystem;
namespace {

struct Row {
  std::string series_uid, sop_uid, path;
};

// UIDs are digits and dots; anything else (a damaged row) must not leave the output directory.
// A name that had to change gets a hash of the UID, so that two such UIDs (1.2a, 1.2b) differ.
std::string SafeName(const std::string& uid) {
  std::string out;
  for (char c : uid) out += (c >= '0' && c <= '9') || c == '.' ? c : '_';
  if (out == uid && out != "." && out != "..") return out;
  const std::string hash = ObjectStore::InIndexPathFor(uid).substr(std::string_view("index:").size(), 12);
  return (out.empty() || out == "." || out == ".." ? "_" : out) + "_" + hash;
}

// Written to <out>.part, renamed when whole: a full disk leaves no truncated .dcm.
Status WriteWhole(const fs::path& out, const std::function<Status(const fs::path&)>& write) {
  fs::path part = out;
  part += ".part";
  Status s = write(part);
  std::error_code ec;
  if (s.ok()) {
    fs::rename(part, out, ec);
    if (ec) s = Status::IOError("cannot rename " + part.string() + ": " + ec.message());
  }
  if (!s.ok()) fs::remove(part, ec);
  return s;
}

Status WriteBytes(const fs::path& path, std::string_view bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return Status::FromErrno(errno, "create " + path.string());
  const int err = WriteAll(fd, bytes);
  if (::close(fd) != 0 && err == 0) return Status::FromErrno(errno, "close " + path.string());
  return err == 0 ? Status::Ok() : Status::FromErrno(err, "write " + path.string());
}

// `length` bytes of `src` from `offset` (an object inside a segment) as the file `path`.
Status CopyRange(const fs::path& src, uint64_t offset, uint64_t length, const fs::path& path) {
  const int in = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return Status::FromErrno(errno, "open " + src.string());
  const int out = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (out < 0) {
    const int err = errno;
    ::close(in);
    return Status::FromErrno(err, "create " + path.string());
  }
  int err = 0;
  std::vector<char> buf;
  for (uint64_t done = 0; done < length && err == 0;) {
    auto at = static_cast<off_t>(offset + done);
    ssize_t n = buf.empty() ? ::copy_file_range(in, &at, out, nullptr, length - done, 0) : -1;
    if (n < 0 && (buf.empty() && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP))) {
      buf.resize(1 << 20);  // no in-kernel copy here: read and write
    }
    if (!buf.empty()) {
      n = ::pread(in, buf.data(), std::min<uint64_t>(buf.size(), length - done), at);
      if (n > 0) err = WriteAll(out, std::string_view(buf.data(), static_cast<size_t>(n)));
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) err = errno;
    if (n == 0) err = EIO;  // the segment ends before the object
    if (n > 0) done += static_cast<uint64_t>(n);
  }
  ::close(in);
  if (::close(out) != 0 && err == 0) err = errno;
  return err == 0 ? Status::Ok() : Status::FromErrno(err, "copy " + src.string() + " to " + path.string());
}

Result<std::vector<std::string>> MemberStudies(Database& db, const std::string& member_id) {
  Statement q(db.handle(), "SELECT study_instance_uid FROM studies WHERE member_id = ?1 ORDER BY id");
  q.Bind(1, member_id);
  std::vector<std::string> out;
  for (;;) {
    Result<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) break;
    out.push_back(q.Text(0));
  }
  if (out.empty()) return Status::NotFound("member " + member_id + " has no stored study");
  return out;
}

Result<std::vector<Row>> StudyRows(Database& db, const std::string& study_uid) {
  Statement q(db.handle(),
              "SELECT se.series_instance_uid, i.sop_instance_uid, i.path FROM studies st "
              "JOIN series se ON se.study_pk = st.id JOIN instances i ON i.series_pk = se.id "
              "WHERE st.study_instance_uid = ?1 ORDER BY se.id, i.id");
  q.Bind(1, study_uid);
  std::vector<Row> out;
  for (;;) {
    Result<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) break;
    out.push_back(Row{q.Text(0), q.Text(1), q.Text(2)});
  }
  if (out.empty()) return Status::NotFound("no study " + study_uid + " is stored");
  return out;
}

}  // namespace

Result<ExportReport> ExportStudies(const ExportRequest& req) {
  Result<std::unique_ptr<Database>> opened = Database::Open(req.storage_root / "index.sqlite", true);
  if (!opened.ok()) return opened.status();
  Database& db = *opened.value();
  std::vector<std::string> studies = req.study_instance_uids;
  if (!req.member_id.empty()) {
    Result<std::vector<std::string>> found = MemberStudies(db, req.member_id);
    if (!found.ok()) return found.status();
    studies = std::move(found.value());
  }
  if (studies.empty()) return Status::InvalidArgument("no study to export");
  // All rows first (one read each), so that a study is exported as one snapshot of the index.
  std::vector<std::pair<std::string, std::vector<Row>>> rows;
  for (const std::string& uid : studies) {
    Result<std::vector<Row>> r = StudyRows(db, uid);
    if (!r.ok()) return r.status();
    rows.emplace_back(uid, std::move(r.value()));
  }
  ExportReport report;
  for (const auto& [study_uid, objects] : rows) {
    for (const Row& o : objects) {
      const fs::path dir = req.output_dir / SafeName(study_uid) / SafeName(o.series_uid);
      std::error_code ec;
      fs::create_directories(dir, ec);
      if (ec) return Status::IOError("cannot create " + dir.string() + ": " + ec.message());
      const fs::path out = dir / (SafeName(o.sop_uid) + ".dcm");
      if (ObjectStore::InIndex(o.path)) {
        Status s = ReadObjectData(db.handle(), o.path, [&](std::string_view bytes) {
          report.bytes += static_cast<int64_t>(bytes.size());
          return WriteWhole(out, [bytes](const fs::path& part) { return WriteBytes(part, bytes); });
        });
        if (s.code() == Status::Code::kNotFound) {
          return Status::Corruption("instance " + o.sop_uid + " has no data in the index");
        }
        if (!s.ok()) return s;
      } else if (ObjectStore::InSegment(o.path)) {
        Result<ObjectHandle> object = ObjectStore(req.storage_root).Open(o.path);
        if (!object.ok()) return object.status();
        Status s = WriteWhole(out, [&object](const fs::path& part) {
          return CopyRange(object->path(), object->offset(), object->length(), part);
        });
        if (!s.ok()) return s;
        report.bytes += static_cast<int64_t>(object->length());
      } else {
        const fs::path src = req.storage_root / o.path;
        Status s = WriteWhole(out, [&src](const fs::path& part) {
          std::error_code copy_ec;
          fs::copy_file(src, part, fs::copy_options::overwrite_existing, copy_ec);
          return copy_ec ? Status::IOError("cannot copy " + src.string() + ": " + copy_ec.message()) : Status::Ok();
        });
        if (!s.ok()) return s;
        report.bytes += static_cast<int64_t>(fs::file_size(out, ec));
      }
      ++report.files;
    }
    ++report.studies;
  }
  return report;
}

}  // namespace teleread
