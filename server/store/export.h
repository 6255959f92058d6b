#pragma once
// teleread-server export: stored studies written out as plain DICOM Part 10 files, byte for
// byte as stored, from either tier (a file under objects/ or an object kept in the index). Reads
// through a read-only SQLite connection, so it runs beside a running server as well as on a
// stopped one's data.
//
// Thread-safety: a plain function; nothing shared.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "common/status.h"

namespace teleread {

struct ExportRequest {
  std::filesystem::path storage_root;            // where index.sqlite and objects/ are
  std::vector<std::string> study_instance_uids;  // these studies...
  std::string member_id;                         // ...or, when set, every study of this member
  std::filesystem::path output_dir;              // created if needed; <study>/<series>/<sop>.dcm
};

struct ExportReport {
  int64_t studies = 0;
  int64_t files = 0;
  int64_t bytes = 0;
};

// NotFound for a study (or member) with nothing stored; files already written stay.
Result<ExportReport> ExportStudies(const ExportRequest& request);

}  // namespace teleread
