// fetch, view: a study's instances into the local cache, and pictures of them.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "common/dicom.h"
#include "viewer/cli.h"
#include "viewer/render.h"

namespace teleread::viewer {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct RemoteInstance {
  std::string sop_instance_uid, sop_class_uid, instance_number, series_number;
  uint64_t size_bytes = 0;
};

struct RemoteSeries {
  std::string series_number, modality, description;
  std::vector<RemoteInstance> instances;
};

// UIDs become file names in the cache, so a server's answer must not smuggle in a path.
bool IsUid(std::string_view s) {
  if (s.empty() || s.size() > 64 || s.front() == '.' || s.back() == '.') return false;
  return s.find_first_not_of("0123456789.") == std::string_view::npos;
}

// The series and instances of GET /api/v1/studies/{uid}.
Result<std::vector<RemoteSeries>> ParseStudy(const json& study) {
  std::vector<RemoteSeries> all;
  try {
    for (const json& se : study.at("series")) {
      RemoteSeries s{se.at("series_number").get<std::string>(), se.at("modality").get<std::string>(),
                     se.at("description").get<std::string>(), {}};
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

double Megabytes(uint64_t bytes) { return static_cast<double>(bytes) / 1e6; }

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// "12/40 instances  6.3 MB  12.4 MB/s" rewritten in place on stderr, only when it is a terminal.
class ProgressLine {
 public:
  explicit ProgressLine(size_t total) : enabled_(::isatty(STDERR_FILENO) == 1), total_(total) {}
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
    return Status::Corruption("is " + std::to_string(size) + " bytes, the server has " +
                              std::to_string(in.size_bytes));
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

struct FetchOutcome {
  fs::path directory;
  size_t wanted = 0, fetched = 0, cached = 0, failed = 0;
  uint64_t bytes = 0;  // downloaded by this run
  double seconds = 0;
};

fs::path CachedFile(const fs::path& directory, const RemoteInstance& in) {
  return directory / (in.sop_instance_uid + ".dcm");
}

// Brings `wanted` into <cache>/<study>/<sop>.dcm. Each download goes to "<file>.part" and is
// renamed only once checked, so a final name always holds a whole, verified object; cached
// files that check out are kept, others fetched again. Failures are printed as they happen
// and counted; a transport failure stops the run (the connection is gone).
FetchOutcome FetchInstances(ApiClient& api, const fs::path& cache, const std::string& study,
                            const std::vector<RemoteInstance>& wanted) {
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
  ProgressLine progress(wanted.size());
  for (size_t i = 0; i < wanted.size(); ++i) {
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
      std::cerr << "teleread: the cached copy of " << InstanceName(in) << " " << cached.message()
                << ": fetching it again\n";
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
      problem = Status::IOError((why.is_object() && why.contains("error") ? why["error"].get<std::string>()
                                                                           : got->body) +
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
      Fail(InstanceName(in) + ": " + problem.message());
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
    Fail("'" + study + "' is not a Study Instance UID");
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

struct FetchOptions {
  std::string study, cache;
};

int RunFetch(Session& s, const FetchOptions& o) {
  InitializeDicom();
  ApiClient* api = s.Api();
  if (!api) return 1;
  std::optional<std::vector<RemoteSeries>> series = LoadStudy(*api, o.study);
  if (!series) return 1;
  std::vector<RemoteInstance> all;
  for (const RemoteSeries& se : *series) all.insert(all.end(), se.instances.begin(), se.instances.end());
  const FetchOutcome r = FetchInstances(*api, o.cache.empty() ? DefaultCacheDir() : fs::path(o.cache), o.study, all);
  if (s.as_json) {
    std::cout << json{{"study_instance_uid", o.study}, {"instances", r.wanted}, {"fetched", r.fetched},
                      {"cached", r.cached},           {"failed", r.failed},    {"bytes", r.bytes},
                      {"seconds", r.seconds},         {"directory", r.directory.string()}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << SummaryLine(r) << "\n";
  }
  if (r.failed > 0) {
    return Fail(std::to_string(r.failed) + " of " + std::to_string(r.wanted) +
                " instances are not in the cache; run fetch again to retry");
  }
  return 0;
}

// Series and instance numbers as typed: "3" matches "3" and "03".
bool SameNumber(const std::string& stored, const std::string& typed) {
  char* end_a = nullptr;
  char* end_b = nullptr;
  const long a = std::strtol(stored.c_str(), &end_a, 10), b = std::strtol(typed.c_str(), &end_b, 10);
  if (!stored.empty() && !typed.empty() && *end_a == '\0' && *end_b == '\0') return a == b;
  return stored == typed;
}

struct ViewOptions {
  std::string study, series, instance, preset, wl, out, sheet, cache;
  int frame = 0;
  bool preview = false;
};

std::string WindowText(const std::optional<Window>& w) {
  if (!w) return "colour, not windowed";
  char text[80];
  std::snprintf(text, sizeof text, "window C %g W %g", w->center, w->width);
  return text;
}

int RunView(Session& s, const ViewOptions& o) {
  InitializeDicom();
  const bool preview = !s.as_json && (o.preview || ::isatty(STDOUT_FILENO) == 1);
  if (o.out.empty() && o.sheet.empty() && !preview && !s.as_json) {
    Fail("nothing to show: stdout is not a terminal; pass --out FILE.png, --sheet FILE.png or --preview");
    return 2;
  }
  std::optional<Window> window;
  if (!o.preset.empty()) window = PresetWindow(o.preset);
  if (!o.wl.empty()) window = ParseWindow(o.wl);
  ApiClient* api = s.Api();
  if (!api) return 1;
  std::optional<std::vector<RemoteSeries>> study = LoadStudy(*api, o.study);
  if (!study) return 1;

  auto has_images = [](const RemoteSeries& se) {
    for (const RemoteInstance& in : se.instances) {
      if (IsImageSopClass(in.sop_class_uid)) return true;
    }
    return false;
  };
  const RemoteSeries* series = nullptr;
  std::string numbers;
  for (const RemoteSeries& se : *study) {
    numbers += (numbers.empty() ? "" : ", ") + se.series_number + " (" + se.modality + ")";
    if (series) continue;
    if (o.series.empty() ? has_images(se) : SameNumber(se.series_number, o.series)) series = &se;
  }
  if (!series && !o.series.empty()) return Fail("the study has no series " + o.series + "; its series: " + numbers);
  if (!series) return Fail("the study holds no images; its series: " + numbers);
  if (!has_images(*series)) {
    return Fail("series " + series->series_number + " (" + series->modality +
                ") holds no images: skipped, nothing to view; the study's series: " + numbers);
  }
  std::vector<RemoteInstance> images;
  for (const RemoteInstance& in : series->instances) {
    if (IsImageSopClass(in.sop_class_uid)) {
      images.push_back(in);
    } else {
      std::cerr << "teleread: skipping series " << series->series_number << " #" << in.instance_number
                << ": not an image (SOP class " << in.sop_class_uid << ")\n";
    }
  }
  const RemoteInstance* chosen = &images[(images.size() - 1) / 2];
  if (!o.instance.empty()) {
    chosen = nullptr;
    for (const RemoteInstance& in : images) {
      if (SameNumber(in.instance_number, o.instance)) chosen = &in;
    }
    if (!chosen) {
      return Fail("series " + series->series_number + " has no image with instance number " + o.instance + " (" +
                  std::to_string(images.size()) + " images, numbered " + images.front().instance_number + " to " +
                  images.back().instance_number + ")");
    }
  }

  // Only what is needed: the one instance, or the series for a contact sheet.
  std::vector<RemoteInstance> needed = o.sheet.empty() ? std::vector<RemoteInstance>{*chosen} : images;
  const FetchOutcome fetched =
      FetchInstances(*api, o.cache.empty() ? DefaultCacheDir() : fs::path(o.cache), o.study, needed);
  if (fetched.failed > 0) return Fail("the images are not all in the cache; nothing rendered");
  if (fetched.fetched > 0 && !s.as_json) std::cerr << SummaryLine(fetched) << "\n";

  json report{{"study_instance_uid", o.study}, {"series_number", series->series_number},
              {"instance_number", chosen->instance_number}, {"sop_instance_uid", chosen->sop_instance_uid},
              {"file", CachedFile(fetched.directory, *chosen).string()}};
  Result<RenderedFrame> frame = RenderFrame(CachedFile(fetched.directory, *chosen), {o.frame, window});
  if (!frame.ok()) return Fail(frame.status().message());
  const RgbImage& image = frame->image;
  const std::string what = "series " + series->series_number + " instance " + chosen->instance_number + " frame " +
                           std::to_string(o.frame) + " of " + std::to_string(frame->frames) + ", " +
                           std::to_string(image.width) + "x" + std::to_string(image.height) + ", " +
                           WindowText(frame->window);
  report["frame"] = o.frame;
  report["frames"] = frame->frames;
  report["width"] = image.width;
  report["height"] = image.height;
  report["photometric"] = frame->photometric;
  report["window"] = frame->window ? json{{"center", frame->window->center}, {"width", frame->window->width}}
                                   : json(nullptr);
  if (!o.out.empty()) {
    if (Status st = WritePng(image, o.out); !st.ok()) return Fail(st.message());
    report["out"] = o.out;
    if (!s.as_json) std::cout << "wrote " << o.out << ": " << what << "\n";
  }

  if (!o.sheet.empty()) {
    constexpr int kCell = 256;
    std::vector<SheetTile> tiles;
    for (const RemoteInstance& in : images) {
      Result<RenderedFrame> f = RenderFrame(CachedFile(fetched.directory, in), {0, window});
      if (!f.ok()) {
        std::cerr << "teleread: skipping series " << series->series_number << " #" << in.instance_number
                  << " on the sheet: " << f.status().message() << "\n";
        continue;
      }
      tiles.push_back({FitWithin(f->image, kCell, kCell), in.instance_number});
    }
    if (tiles.empty()) return Fail("no instance of series " + series->series_number + " could be rendered");
    const RgbImage sheet = ContactSheet(tiles, kCell);
    if (Status st = WritePng(sheet, o.sheet); !st.ok()) return Fail(st.message());
    report["sheet"] = {{"file", o.sheet}, {"tiles", tiles.size()}, {"width", sheet.width}, {"height", sheet.height}};
    if (!s.as_json) {
      std::cout << "wrote " << o.sheet << ": series " << series->series_number << ", " << tiles.size()
                << " images in a " << sheet.width / kCell << "x" << sheet.height / kCell << " grid, " << sheet.width
                << "x" << sheet.height << "\n";
    }
  }

  if (s.as_json) {
    std::cout << report.dump(2) << "\n";
  } else if (preview) {
    std::cout << what << "\n" << HalfBlockPreview(image, TerminalColumns(STDOUT_FILENO));
  }
  return 0;
}

}  // namespace

void AddImageCommands(CLI::App& app, Session& s) {
  auto f = std::make_shared<FetchOptions>();
  const std::string cache_help = "Cache directory (default $XDG_CACHE_HOME/teleread or ~/.cache/teleread)";
  CLI::App* fetch = app.add_subcommand("fetch", "Download a study's instances into the local cache");
  fetch->add_option("study", f->study, "Study Instance UID")->required();
  fetch->add_option("--cache", f->cache, cache_help);
  fetch->callback([&s, f] { s.exit_code = RunFetch(s, *f); });

  auto v = std::make_shared<ViewOptions>();
  CLI::App* view = app.add_subcommand("view", "Render an image (PNG, contact sheet, terminal preview); fetches first");
  view->add_option("study", v->study, "Study Instance UID")->required();
  view->add_option("--series", v->series, "Series number (default: the first series with images)");
  view->add_option("--instance", v->instance, "Instance number (default: the middle image)");
  view->add_option("--frame", v->frame, "Frame of a multi-frame image, from 0")->check(CLI::NonNegativeNumber);
  CLI::Option* preset =
      view->add_option("--preset", v->preset, "Window preset")->check(CLI::IsMember(PresetNames()));
  view->add_option("--wl", v->wl, "Window centre,width, e.g. --wl=-600,1500")
      ->check([](const std::string& text) {
        return ParseWindow(text) ? std::string() : std::string("expected CENTER,WIDTH with WIDTH >= 1");
      })
      ->excludes(preset);
  view->add_option("--out", v->out, "Write the image as PNG");
  view->add_option("--sheet", v->sheet, "Write a contact sheet of the series as PNG");
  view->add_flag("--preview", v->preview, "Draw the image on the terminal even when stdout is not one");
  view->add_option("--cache", v->cache, cache_help);
  view->callback([&s, v] { s.exit_code = RunView(s, *v); });
}

}  // namespace teleread::viewer
