// fetch, view: a study's instances into the local cache, and pictures of them.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "common/dicom.h"
#include "viewer/cli.h"
#include "viewer/documents.h"
#include "viewer/ecg.h"
#include "viewer/fetch.h"
#include "viewer/overlay.h"
#include "viewer/render.h"
#include "viewer/text_raster.h"

namespace teleread::viewer {
namespace {

namespace fs = std::filesystem;

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
    std::cout << json{{"study_instance_uid", o.study},
                      {"instances", r.wanted},
                      {"fetched", r.fetched},
                      {"cached", r.cached},
                      {"failed", r.failed},
                      {"bytes", r.bytes},
                      {"seconds", r.seconds},
                      {"directory", r.directory.string()}}
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
  int position = 0;  // 1-based; 0: not given
  int frame = 1;     // 1-based, as DICOM counts
  bool preview = false, no_overlay = false;
};

std::string WindowText(const std::optional<Window>& w) {
  if (!w) return "colour, not windowed";
  char text[80];
  std::snprintf(text, sizeof text, "window C %g W %g", w->center, w->width);
  return text;
}

// A tile for an image that cannot be shown: dark red, crossed, with the reason written on it.
RgbImage FailedTile(int cell, const std::string& reason) {
  RgbImage tile(cell, cell);
  for (size_t i = 0; i < tile.rgb.size(); i += 3) tile.rgb[i] = 90;
  for (int k = 0; k < cell; ++k) {
    std::fill_n(tile.At(k, k), 3, 200);
    std::fill_n(tile.At(cell - 1 - k, k), 3, 200);
  }
  TextStyle style;
  style.pixel_height = std::max(10, cell / 18);
  DrawText(tile, 4, cell / 3, "cannot display:", style);
  // The reason wrapped by words to the tile's width.
  std::string line, word;
  int y = cell / 3 + style.pixel_height + 4;
  auto flush = [&] {
    if (!line.empty()) DrawText(tile, 4, y, line, style);
    y += style.pixel_height + 2;
    line.clear();
  };
  for (size_t i = 0; i <= reason.size(); ++i) {
    if (i < reason.size() && reason[i] != ' ') {
      word += reason[i];
      continue;
    }
    if (!line.empty() && TextWidth(line + " " + word, style.pixel_height) > cell - 8) flush();
    line += (line.empty() ? "" : " ") + word;
    word.clear();
  }
  flush();
  return tile;
}

// The preview as large as the terminal allows: half blocks show two pixel rows a line, and
// three lines are kept for the caption and the prompt.
std::string FittedPreview(const RgbImage& image) {
  const int columns = TerminalColumns(STDOUT_FILENO), rows = std::max(4, TerminalRows(STDOUT_FILENO) - 3);
  const int by_height = std::max(1, image.width * 2 * rows / std::max(1, image.height));
  return HalfBlockPreview(image, std::min(columns, by_height));
}

int ShowDocument(Session& s, const RemoteSeries& series, const RemoteInstance& in, const fs::path& file,
                 const ViewOptions& o, json& report) {
  const ObjectKind kind = KindOfSopClass(in.sop_class_uid);
  const std::string what =
      "series " + series.series_number + " #" + in.instance_number + " (" + SopClassName(in.sop_class_uid) + ")";
  report["sop_class"] = SopClassName(in.sop_class_uid);
  if (kind == ObjectKind::kStructuredReport) {
    Result<std::string> text = StructuredReportText(file);
    if (!text.ok()) return Fail(what + ": " + text.status().message());
    report["text"] = text.value();
    if (s.as_json) {
      std::cout << report.dump(2) << "\n";
    } else {
      std::cout << what << "\n" << text.value();
    }
    return 0;
  }
  if (kind == ObjectKind::kEncapsulatedDocument) {
    const fs::path dir = o.out.empty() ? file.parent_path() / "documents" : fs::path(o.out);
    Result<fs::path> saved = SaveEncapsulatedDocument(file, dir);
    if (!saved.ok()) return Fail(what + ": " + saved.status().message());
    report["document"] = saved->string();
    if (s.as_json) {
      std::cout << report.dump(2) << "\n";
    } else {
      std::cout << what << ": the document is saved as " << saved->string()
                << "; open it with your PDF viewer (xdg-open)\n";
    }
    return 0;
  }
  return Fail(what + " holds no pixel data, waveform or document to show");
}

int ShowWaveform(Session& s, const RemoteSeries& series, const RemoteInstance& in, const fs::path& file,
                 const ViewOptions& o, bool preview, json& report) {
  Result<EcgWaveform> ecg = ReadWaveform(file);
  if (!ecg.ok())
    return Fail("series " + series.series_number + " #" + in.instance_number + ": " + ecg.status().message());
  Result<ImageIdentity> id = ReadImageIdentity(file);
  const EcgPaper paper = DrawEcgPaper(ecg.value(), id.ok() ? id.value() : ImageIdentity{});
  const std::string what = "series " + series.series_number + " #" + in.instance_number + " " +
                           SopClassName(in.sop_class_uid) + ", " + std::to_string(ecg->channels.size()) +
                           " channels at " + std::to_string(static_cast<int>(ecg->sampling_hz)) +
                           " Hz, 25 mm/s 10 mm/mV";
  report["waveform"] = {{"channels", ecg->channels.size()}, {"sampling_hz", ecg->sampling_hz},
                        {"filters", ecg->filters},          {"annotations", ecg->annotations},
                        {"width", paper.image.width},       {"height", paper.image.height}};
  if (!o.out.empty()) {
    if (Status st = WritePng(paper.image, o.out); !st.ok()) return Fail(st.message());
    report["out"] = o.out;
    if (!s.as_json) std::cout << "wrote " << o.out << ": " << what << "\n";
  }
  if (s.as_json) {
    std::cout << report.dump(2) << "\n";
  } else if (preview) {
    std::cout << what << "\n" << FittedPreview(paper.image);
  }
  return 0;
}

int RunView(Session& s, const ViewOptions& o) {
  InitializeDicom();
  const bool preview = !s.as_json && (o.preview || ::isatty(STDOUT_FILENO) == 1);
  std::optional<Window> window;
  if (!o.preset.empty()) window = PresetWindow(o.preset);
  if (!o.wl.empty()) window = ParseWindow(o.wl);
  ApiClient* api = s.Api();
  if (!api) return 1;
  std::optional<std::vector<RemoteSeries>> study = LoadStudy(*api, o.study);
  if (!study) return 1;

  auto count_kind = [](const RemoteSeries& se, ObjectKind kind) {
    return std::count_if(se.instances.begin(), se.instances.end(),
                         [&](const RemoteInstance& in) { return KindOfSopClass(in.sop_class_uid) == kind; });
  };
  const RemoteSeries* series = nullptr;
  std::string numbers;
  for (const RemoteSeries& se : *study) {
    numbers += (numbers.empty() ? "" : ", ") + se.series_number + " (" + se.modality + ")";
    if (series) continue;
    if (o.series.empty() ? count_kind(se, ObjectKind::kImage) > 0 : SameNumber(se.series_number, o.series))
      series = &se;
  }
  // A study of waveforms, reports or documents only: its first series.
  if (!series && o.series.empty() && !study->empty()) series = &study->front();
  if (!series && !o.series.empty()) return Fail("the study has no series " + o.series + "; its series: " + numbers);
  if (!series || series->instances.empty()) return Fail("the study holds nothing to show; its series: " + numbers);
  const std::vector<RemoteInstance>& all = series->instances;
  const bool has_images = count_kind(*series, ObjectKind::kImage) > 0;
  if (o.out.empty() && o.sheet.empty() && !preview && !s.as_json && has_images) {
    Fail("nothing to show: stdout is not a terminal; pass --out FILE.png, --sheet FILE.png or --preview");
    return 2;
  }

  // The object: by position in the series, by instance number, else the middle image.
  size_t chosen = 0;
  if (o.position > 0) {
    if (static_cast<size_t>(o.position) > all.size()) {
      return Fail("series " + series->series_number + " has " + std::to_string(all.size()) +
                  " instances; --position counts from 1 to " + std::to_string(all.size()));
    }
    chosen = static_cast<size_t>(o.position) - 1;
  } else if (!o.instance.empty()) {
    std::vector<size_t> matches;
    for (size_t i = 0; i < all.size(); ++i) {
      if (SameNumber(all[i].instance_number, o.instance)) matches.push_back(i);
    }
    if (matches.empty()) {
      return Fail("series " + series->series_number + " has no instance numbered " + o.instance + " (" +
                  std::to_string(all.size()) + " instances, numbered " + all.front().instance_number + " to " +
                  all.back().instance_number + "; or pick by --position 1.." + std::to_string(all.size()) + ")");
    }
    if (matches.size() > 1) {
      std::cerr << "teleread: " << matches.size() << " instances of series " << series->series_number
                << " are numbered " << o.instance << "; showing the first (position " << matches[0] + 1
                << "); pick others with --position\n";
    }
    chosen = matches[0];
  } else {
    std::vector<size_t> images;
    for (size_t i = 0; i < all.size(); ++i) {
      if (KindOfSopClass(all[i].sop_class_uid) == ObjectKind::kImage) images.push_back(i);
    }
    chosen = images.empty() ? 0 : images[(images.size() - 1) / 2];
  }
  const RemoteInstance& in = all[chosen];

  std::vector<RemoteInstance> needed{in};
  if (!o.sheet.empty()) {
    needed.clear();
    for (const RemoteInstance& x : all) {
      if (KindOfSopClass(x.sop_class_uid) == ObjectKind::kImage || &x == &in) needed.push_back(x);
    }
  }
  const FetchOutcome fetched =
      FetchInstances(*api, o.cache.empty() ? DefaultCacheDir() : fs::path(o.cache), o.study, needed);
  if (fetched.failed > 0) return Fail("the objects are not all in the cache; nothing shown");
  if (fetched.fetched > 0 && !s.as_json) std::cerr << SummaryLine(fetched) << "\n";
  const fs::path file = CachedFile(fetched.directory, in);

  json report{{"study_instance_uid", o.study},           {"series_number", series->series_number},
              {"instance_number", in.instance_number},   {"position", chosen + 1},
              {"sop_instance_uid", in.sop_instance_uid}, {"file", file.string()}};
  const ObjectKind kind = KindOfSopClass(in.sop_class_uid);
  if (kind == ObjectKind::kWaveform) return ShowWaveform(s, *series, in, file, o, preview, report);
  if (kind != ObjectKind::kImage) return ShowDocument(s, *series, in, file, o, report);

  Result<RenderedFrame> frame = RenderFrame(file, {o.frame - 1, window});
  // A sheet is still worth writing when the image it was centred on cannot be shown.
  const bool sheet_only = !o.sheet.empty() && o.out.empty();
  if (!frame.ok() && !sheet_only) return Fail(frame.status().message());
  Result<ImageIdentity> id = ReadImageIdentity(file);
  RgbImage image;
  std::string what;
  if (!frame.ok()) report["error"] = frame.status().message();
  if (frame.ok()) {
    image = frame->image;
    if (!o.no_overlay && id.ok()) {
      OverlayPlace place{
          static_cast<int>(chosen) + 1, static_cast<int>(all.size()), o.frame, frame->frames, frame->window, false};
      BurnOverlay(image, id.value(), place);
    }
    what = "series " + series->series_number + " instance " + in.instance_number + " (position " +
           std::to_string(chosen + 1) + " of " + std::to_string(all.size()) + ") frame " + std::to_string(o.frame) +
           " of " + std::to_string(frame->frames) + ", " + std::to_string(image.width) + "x" +
           std::to_string(image.height) + ", " + WindowText(frame->window);
    report["frame"] = o.frame;
    report["frames"] = frame->frames;
    report["width"] = image.width;
    report["height"] = image.height;
    report["photometric"] = frame->photometric;
    report["window"] =
        frame->window ? json{{"center", frame->window->center}, {"width", frame->window->width}} : json(nullptr);
    if (id.ok()) report["patient"] = {{"name", id->patient_name}, {"id", id->patient_id}};
    if (!o.out.empty()) {
      if (Status st = WritePng(image, o.out); !st.ok()) return Fail(st.message());
      report["out"] = o.out;
      if (!s.as_json) std::cout << "wrote " << o.out << ": " << what << "\n";
    }
  }

  if (!o.sheet.empty()) {
    constexpr int kCell = 256;
    std::vector<SheetTile> tiles;
    size_t failed = 0;
    for (size_t i = 0; i < all.size(); ++i) {
      if (KindOfSopClass(all[i].sop_class_uid) != ObjectKind::kImage) continue;
      const std::string label = std::to_string(i + 1) + " #" + all[i].instance_number;
      Result<RenderedFrame> f = RenderFrame(CachedFile(fetched.directory, all[i]), {0, window});
      if (!f.ok()) {
        // The sheet still shows the rest; the tile says why this one cannot be shown.
        std::cerr << "teleread: series " << series->series_number << " #" << all[i].instance_number
                  << " is marked on the sheet: " << f.status().message() << "\n";
        const std::string reason = f.status().message();
        tiles.push_back(
            {FailedTile(kCell, reason.substr(reason.find(": ") == std::string::npos ? 0 : reason.find(": ") + 2)),
             label});
        ++failed;
        continue;
      }
      tiles.push_back({FitWithin(f->image, kCell, kCell), label});
    }
    RgbImage sheet = ContactSheet(tiles, kCell);
    if (!o.no_overlay && id.ok()) {
      sheet = WithIdentityBand(
          sheet, id.value(),
          "series " + series->series_number + "  " + (window ? WindowText(window) : "each image's own window"));
    }
    if (Status st = WritePng(sheet, o.sheet); !st.ok()) return Fail(st.message());
    report["sheet"] = {{"file", o.sheet},
                       {"tiles", tiles.size()},
                       {"failed", failed},
                       {"width", sheet.width},
                       {"height", sheet.height}};
    if (!s.as_json) {
      const int columns = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(tiles.size()))));
      std::cout << "wrote " << o.sheet << ": series " << series->series_number << ", " << tiles.size()
                << " images in a " << columns << "x" << (static_cast<int>(tiles.size()) + columns - 1) / columns
                << " grid, " << sheet.width << "x" << sheet.height
                << (failed ? ", " + std::to_string(failed) + " marked undecodable" : "") << "\n";
    }
  }

  if (s.as_json) {
    std::cout << report.dump(2) << "\n";
  } else if (preview && frame.ok()) {
    std::cout << what << "\n" << FittedPreview(image);
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
  CLI::App* view = app.add_subcommand(
      "view", "Show an object: image (PNG, contact sheet, terminal preview), ECG paper, SR text, PDF; fetches first");
  view->add_option("study", v->study, "Study Instance UID (a prior's too)")->required();
  view->add_option("--series", v->series, "Series number (default: the first series with images)");
  CLI::Option* position =
      view->add_option("--position", v->position, "Instance by its position in the series, from 1 (see `show`)")
          ->check(CLI::PositiveNumber);
  view->add_option("--instance", v->instance, "Instance by its Instance Number (default: the middle image)")
      ->excludes(position);
  view->add_option("--frame", v->frame, "Frame of a multi-frame image, from 1")->check(CLI::PositiveNumber);
  CLI::Option* preset =
      view->add_option("--preset", v->preset, "Window preset")->check(CLI::IsMember(PresetNames(), CLI::ignore_case));
  view->add_option("--wl", v->wl, "Window centre,width, e.g. --wl=-600,1500")
      ->check([](const std::string& text) {
        return ParseWindow(text) ? std::string() : std::string("expected CENTER,WIDTH with WIDTH >= 1");
      })
      ->excludes(preset);
  view->add_option("--out", v->out, "Write the image or ECG as PNG (for a PDF: the directory to save it in)");
  view->add_option("--sheet", v->sheet, "Write a contact sheet of the series as PNG");
  view->add_flag("--preview", v->preview, "Draw the image on the terminal even when stdout is not one");
  view->add_flag("--no-overlay", v->no_overlay, "Leave out the burned-in patient, study and window text");
  view->add_option("--cache", v->cache, cache_help);
  view->callback([&s, v] { s.exit_code = RunView(s, *v); });
}

}  // namespace teleread::viewer
