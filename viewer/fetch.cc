#include "viewer/fetch.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include "common/dicom.h"

namespace teleread::viewer {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

bool IsUid(std::string_view s) {
  if (s.empty() || s.size() > 64 || s.front() == '.' || s.back() == '.') return false;
  return s.find_first_not_of("0123456789.") == std::string_view::npos;
}

// The series and instances of GET /api/v1/studies/{uid}.
Result<std::vector<RemoteSeries>> ParseStudy(const json& study) {
  std::vector<RemoteSeries> all;
  try {
    for (const json& se : study.at("series")) {
      RemoteSeries s{se.at("series_number").get<std::string>(),
                     se.at("modality").get<std::string>(),
                     se.at("description").get<std::string>(),
                     se.value("body_part", ""),
                     {}};
      for (const json& in : se.at("instances")) {
        RemoteInstance i{in.at("sop_instance_uid").get<std::string>(), in.at("sop_class_uid").get<std::string>(),
                         in.at("instance_number").get<std::string>(), s.series_number,
                         in.at("size_bytes").get<uint64_t>()};
        if (!IsUid(i.sop_instance_uid)) {
          return Status::Corruption("the server named an instance '" + i.sop_instance_uid + "', which is not a UID");
        }
        s.instances.push_back(std::move(i));
      }
      all.push_back(std::move(s));
    }
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("unexpected study description from the server: ") + e.what());
  }
  return all;
}

namespace {

double Megabytes(uint64_t bytes) { return static_cast<double>(bytes) / 1e6; }

double SecondsSince(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// "12/40 instances  6.3 MB  12.4 MB/s" rewritten in place on stderr, only when it is a terminal.
class ProgressLine {
 public:
  // A total of 0 shows nothing (a caller that reports progress its own way).
  explicit ProgressLine(size_t total) : enabled_(total > 0 && ::isatty(STDERR_FILENO) == 1), total_(total) {}
  ~ProgressLine() { Clear(); }

  void Show(size_t done, uint64_t bytes) {
    if (!enabled_) return;
    const Clock::time_point now = Clock::now();
    if (shown_ && now - last_ < std::chrono::milliseconds(100) && done < total_) return;
    last_ = now;
    shown_ = true;
    const double seconds = std::max(SecondsSince(start_), 1e-3);
    std::fprintf(stderr, "\rfetching %zu/%zu instances  %.1f MB  %.1f MB/s\033[K", done, total_, Megabytes(bytes),
                 Megabytes(bytes) / seconds);
    std::fflush(stderr);
  }
  // Before any other line goes to stderr.
  void Clear() {
    if (!shown_) return;
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
    shown_ = false;
  }

 private:
  const bool enabled_;
  const size_t total_;
  const Clock::time_point start_ = Clock::now();
  Clock::time_point last_;
  bool shown_ = false;
};

// Whether `file` holds the instance the server describes: its size, a readable data set, and
// the SOP Instance UID. Corruption naming what is wrong otherwise.
Status CheckInstanceFile(const fs::path& file, const RemoteInstance& in) {
  std::error_code ec;
  const uint64_t size = fs::file_size(file, ec);
  if (ec) return Status::NotFound(ec.message());
  if (size != in.size_bytes) {
    return Status::Corruption("is " + std::to_string(size) + " bytes, the server has " + std::to_string(in.size_bytes));
  }
  Result<InstanceSummary> summary = ReadInstanceSummary(file);
  if (!summary.ok()) return Status::Corruption("is not readable DICOM (" + summary.status().message() + ")");
  if (summary->sop_instance_uid != in.sop_instance_uid) {
    return Status::Corruption("holds SOP Instance UID " + summary->sop_instance_uid);
  }
  return Status::Ok();
}

std::string InstanceName(const RemoteInstance& in) {
  return "instance " + in.sop_instance_uid + " (series " + in.series_number + " #" + in.instance_number + ")";
}

}  // namespace

fs::path CachedFile(const fs::path& directory, const RemoteInstance& in) {
  return directory / (in.sop_instance_uid + ".dcm");
}

// Brings `wanted` into <cache>/<study>/<sop>.dcm. Each download goes to "<file>.part" and is
// renamed only once checked, so a final name always holds a whole, verified object; cached
// files that check out are kept, others fetched again. Failures are printed as they happen
// and counted; a transport failure stops the run (the connection is gone).
FetchOutcome FetchInstances(ApiClient& api, const fs::path& cache, const std::string& study,
                            const std::vector<RemoteInstance>& wanted, const FetchProgress& report, bool quiet,
                            const std::atomic<bool>* stop) {
  FetchOutcome r;
  r.directory = cache / study;
  r.wanted = wanted.size();
  const Clock::time_point start = Clock::now();
  std::error_code ec;
  fs::create_directories(r.directory, ec);
  if (ec) {
    Fail("cannot create the cache directory " + r.directory.string() + ": " + ec.message());
    r.failed = wanted.size();
    return r;
  }
  ProgressLine progress(quiet ? 0 : wanted.size());
  for (size_t i = 0; i < wanted.size(); ++i) {
    if (stop && stop->load()) {
      r.failed = wanted.size() - r.fetched - r.cached;
      break;
    }
    if (report && i > 0) report(i, wanted.size());
    const RemoteInstance& in = wanted[i];
    progress.Show(i, r.bytes);
    const fs::path file = CachedFile(r.directory, in);
    if (fs::exists(file, ec)) {
      Status cached = CheckInstanceFile(file, in);
      if (cached.ok()) {
        ++r.cached;
        continue;
      }
      progress.Clear();
      if (!quiet) {
        std::cerr << "teleread: the cached copy of " << InstanceName(in) << " " << cached.message()
                  << ": fetching it again\n";
      }
      fs::remove(file, ec);
    }
    const fs::path part = file.string() + ".part";
    auto download = [&] {
      return api.Download("/api/v1/studies/" + study + "/instances/" + in.sop_instance_uid, part,
                          [&](uint64_t n) { progress.Show(i, r.bytes + n); });
    };
    Result<ApiResponse> got = download();
    // Once more on a new connection: the server closes idle ones (say, while we checked a
    // large cache), and Download has dropped the old one.
    if (!got.ok()) got = download();
    Status problem;
    if (!got.ok()) {
      problem = got.status();
    } else if (got->status / 100 != 2) {
      json why = json::parse(got->body, nullptr, false);
      problem =
          Status::IOError((why.is_object() && why.contains("error") ? why["error"].get<std::string>() : got->body) +
                          " (HTTP " + std::to_string(got->status) + ")");
    } else if (Status checked = CheckInstanceFile(part, in); !checked.ok()) {
      problem = Status::Corruption("the download " + checked.message() + "; removed");
    } else {
      fs::rename(part, file, ec);
      if (ec) problem = Status::IOError("cannot rename " + part.string() + ": " + ec.message());
    }
    if (!problem.ok()) {
      fs::remove(part, ec);
      progress.Clear();
      if (!quiet) Fail(InstanceName(in) + ": " + problem.message());
      ++r.failed;
      if (!got.ok()) {
        r.failed = wanted.size() - r.fetched - r.cached;  // the rest was not tried
        break;
      }
      continue;
    }
    ++r.fetched;
    r.bytes += in.size_bytes;
  }
  progress.Show(wanted.size() - r.failed, r.bytes);
  progress.Clear();
  if (report) report(wanted.size(), wanted.size());
  r.seconds = SecondsSince(start);
  return r;
}

std::string SummaryLine(const FetchOutcome& r) {
  char line[200];
  std::snprintf(line, sizeof line, "fetched %zu of %zu instances (%.1f MB) in %.1f s; %zu already cached", r.fetched,
                r.wanted, Megabytes(r.bytes), r.seconds, r.cached);
  return line;
}

// The study's description from the server; nullopt after printing why.
std::optional<std::vector<RemoteSeries>> LoadStudy(ApiClient& api, const std::string& study) {
  if (!IsUid(study)) {
    Fail("'" + study + "' is not a Study Instance UID (digits and dots, at most 64 characters)");
    return std::nullopt;
  }
  std::optional<json> j = CallJson(api, "GET", "/api/v1/studies/" + study);
  if (!j) return std::nullopt;
  Result<std::vector<RemoteSeries>> series = ParseStudy(*j);
  if (!series.ok()) {
    Fail(series.status().message());
    return std::nullopt;
  }
  return std::move(series).value();
}

}  // namespace teleread::viewer

#include <thread>

namespace teleread::viewer {

struct BackgroundFetch::Worker {
  std::thread thread;
};

BackgroundFetch::BackgroundFetch(Profile profile, std::filesystem::path cache, std::string study,
                                 std::vector<RemoteInstance> wanted)
    : total_(wanted.size()), worker_(std::make_unique<Worker>()) {
  worker_->thread = std::thread([this, profile = std::move(profile), cache = std::move(cache), study = std::move(study),
                                 wanted = std::move(wanted)] {
    ApiClient api(profile);
    const FetchOutcome r = FetchInstances(
        api, cache, study, wanted, [this](size_t done, size_t) { done_ = done; }, true, &stop_);
    failed_ = r.failed;
    done_ = r.wanted - r.failed;
    finished_ = true;
  });
}

BackgroundFetch::~BackgroundFetch() {
  stop_ = true;
  if (worker_->thread.joinable()) worker_->thread.join();
}

}  // namespace teleread::viewer
