#pragma once
// A study's description from the reading API and its instances brought into the local cache:
// <cache>/<study UID>/<SOP Instance UID>.dcm, each verified (size, parse, UID) before it gets
// its final name. Shared by fetch, view and the interactive reader.
//
// Threads: FetchInstances uses the ApiClient it is given and nothing else shared; run it on one
// thread per client (the reader fetches on a thread of its own with its own client).
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "viewer/cli.h"

namespace teleread::viewer {

struct RemoteInstance {
  std::string sop_instance_uid, sop_class_uid, instance_number, series_number;
  uint64_t size_bytes = 0;
};

struct RemoteSeries {
  std::string series_number, modality, description, body_part;
  std::vector<RemoteInstance> instances;
};

// Whether `s` has the form of a UID (digits and dots, at most 64 characters).
bool IsUid(std::string_view s);

// The series and instances of GET /api/v1/studies/{uid}.
Result<std::vector<RemoteSeries>> ParseStudy(const json& study);

struct FetchOutcome {
  std::filesystem::path directory;
  size_t wanted = 0, fetched = 0, cached = 0, failed = 0;
  uint64_t bytes = 0;  // downloaded by this run
  double seconds = 0;
};

std::filesystem::path CachedFile(const std::filesystem::path& directory, const RemoteInstance& in);

// Called after each instance is in the cache (or failed): done so far, of total.
using FetchProgress = std::function<void(size_t done, size_t total)>;

// Brings `wanted` into <cache>/<study>/. Failures are printed (unless `quiet`) and counted; a
// transport failure stops the run. `stop` (optional) is checked between instances.
FetchOutcome FetchInstances(ApiClient& api, const std::filesystem::path& cache, const std::string& study,
                            const std::vector<RemoteInstance>& wanted, const FetchProgress& progress = {},
                            bool quiet = false, const std::atomic<bool>* stop = nullptr);

std::string SummaryLine(const FetchOutcome& r);

// The study's description from the server; nullopt after printing why (a malformed UID is named
// as such before any request).
std::optional<std::vector<RemoteSeries>> LoadStudy(ApiClient& api, const std::string& study);

}  // namespace teleread::viewer

namespace teleread::viewer {

// FetchInstances on a thread of its own with its own connection, for the interactive reader:
// the instances in the order given (what is on screen first), progress readable at any time.
// The destructor stops after the instance in flight and joins.
class BackgroundFetch {
 public:
  BackgroundFetch(Profile profile, std::filesystem::path cache, std::string study, std::vector<RemoteInstance> wanted);
  ~BackgroundFetch();
  BackgroundFetch(const BackgroundFetch&) = delete;
  BackgroundFetch& operator=(const BackgroundFetch&) = delete;

  size_t done() const { return done_.load(); }
  size_t total() const { return total_; }
  bool finished() const { return finished_.load(); }
  size_t failed() const { return failed_.load(); }

 private:
  const size_t total_;
  std::atomic<size_t> done_{0}, failed_{0};
  std::atomic<bool> finished_{false}, stop_{false};
  struct Worker;
  std::unique_ptr<Worker> worker_;
};

}  // namespace teleread::viewer
