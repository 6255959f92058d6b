#include "viewer/reader.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <list>
#include <map>

#include "common/dicom.h"
#include "common/text.h"
#include "viewer/documents.h"
#include "viewer/ecg.h"
#include "viewer/fetch.h"
#include "viewer/overlay.h"
#include "viewer/render.h"
#include "viewer/term_image.h"
#include "viewer/terminal.h"

namespace teleread::viewer {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char* kHelp =
    "↑↓/n p image  ←→ frame  [ ] series  g G first/last  t jump  1-5 presets 0 file  w W width  c C centre  "
    "+ - zoom  HJKL pan  i invert  space cine  x prior  r report  q quit";
const char* kPresets[] = {"lung", "bone", "brain", "abdomen", "soft-tissue"};

bool Displayable(const RemoteInstance& in) {
  const ObjectKind k = KindOfSopClass(in.sop_class_uid);
  return k == ObjectKind::kImage || k == ObjectKind::kWaveform;
}

// One study as the reader holds it: the series with something to draw, and its fetch.
struct Stack {
  std::string study;
  json detail;  // the API's description: the patient is known before any file arrives
  std::vector<RemoteSeries> series;
  fs::path dir;
  std::vector<RemoteInstance> order;  // to fetch: what is on screen first, then the rest
  std::unique_ptr<BackgroundFetch> fetch;

  void StartFetch(const Profile& profile, const fs::path& cache) {
    fetch = std::make_unique<BackgroundFetch>(profile, cache, study, order);
  }
};

std::optional<Stack> OpenStack(Session& s, const std::string& study, const fs::path& cache, size_t first_series) {
  ApiClient* api = s.Api();
  if (!api) return std::nullopt;
  std::optional<json> detail = CallJson(*api, "GET", "/api/v1/studies/" + study);
  if (!detail) return std::nullopt;
  Result<std::vector<RemoteSeries>> all = ParseStudy(*detail);
  if (!all.ok()) {
    Fail(all.status().message());
    return std::nullopt;
  }
  Stack st;
  st.study = study;
  st.detail = std::move(*detail);
  st.dir = cache / study;
  for (RemoteSeries& se : all.value()) {
    std::vector<RemoteInstance> shown;
    for (const RemoteInstance& in : se.instances) {
      if (Displayable(in)) shown.push_back(in);
    }
    se.instances = shown;
    if (!se.instances.empty()) st.series.push_back(std::move(se));
  }
  // What is on screen first, then the rest of the study.
  std::vector<RemoteInstance> order;
  for (size_t k = 0; k < st.series.size(); ++k) {
    const RemoteSeries& se = st.series[(first_series + k) % st.series.size()];
    order.insert(order.end(), se.instances.begin(), se.instances.end());
  }
  st.order = std::move(order);
  return st;
}

struct Pane {
  Stack* stack = nullptr;
  size_t series = 0, position = 0;
  int frame = 0;
};

class Reader {
 public:
  Reader(Session& s, Terminal& term, fs::path cache)
      : s_(s), term_(term), cache_(std::move(cache)), painter_(DetectGraphicsProtocol()) {
    if (const char* t = std::getenv("TELEREAD_READER_TRACE")) trace_.open(t, std::ios::app);
  }

  int Run(const std::string& study) {
    std::optional<Stack> st = OpenStack(s_, study, cache_, 0);
    if (!st) return 1;
    if (st->series.empty()) return Fail("the study holds no images or waveforms to read");
    main_ = std::move(*st);
    pane_.stack = &main_;
    pane_.position = (main_.series[0].instances.size() - 1) / 2;
    // A cached image is drawn before the fetch starts checking the cache on the other core.
    Draw();
    main_.StartFetch(*s_.LoadedProfile(), cache_);
    if (trace_) {
      trace_ << "first_image_epoch_ms "
             << std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count()
             << " drawn=" << drawn_image_ << "\n"
             << std::flush;
    }
    size_t seen_done = 0;
    for (;;) {
      const int key = term_.ReadKey(cine_ ? CineInterval() : 100);
      const Clock::time_point pressed = Clock::now();
      bool redraw = term_.Resized();
      if (key == 'q' && !jumping_) return 0;
      if (key != kNone) redraw |= Handle(key);
      if (cine_ && key == kNone) redraw |= Step(1, true);
      const size_t done = main_.fetch->done() + (prior_ ? prior_->fetch->done() : 0);  // both started by now
      if (done != seen_done) {  // new instances arrived: the status line, or the picture we waited for
        seen_done = done;
        redraw = true;
      }
      if (redraw) {
        Draw();
        if (trace_ && key != kNone) {
          trace_ << "key_ms " << std::chrono::duration<double, std::milli>(Clock::now() - pressed).count()
                 << " drawn=" << drawn_image_ << "\n"
                 << std::flush;
        }
      }
    }
  }

 private:
  const RemoteSeries& Series(const Pane& p) const { return p.stack->series[p.series]; }
  const RemoteInstance& Instance(const Pane& p) const { return Series(p).instances[p.position]; }

  int CineInterval() const { return std::clamp(static_cast<int>(frame_ms_ > 0 ? frame_ms_ : 100), 15, 1000); }

  // Next/previous image (or frame when `frames`); wraps in cine, stops at the ends otherwise.
  bool Step(int delta, bool frames) {
    if (frames && frames_ > 1) {
      pane_.frame = (pane_.frame + delta + frames_) % frames_;
      return true;
    }
    const long n = static_cast<long>(Series(pane_).instances.size());
    long next = static_cast<long>(pane_.position) + delta;
    if (cine_) next = (next % n + n) % n;
    next = std::clamp(next, 0L, n - 1);
    if (next == static_cast<long>(pane_.position)) return false;
    pane_.position = static_cast<size_t>(next);
    pane_.frame = 0;
    return true;
  }

  void SyncPrior() {
    if (!prior_) return;
    const size_t n = Series(pane_).instances.size(), m = Series(prior_pane_).instances.size();
    prior_pane_.position = n <= 1 ? 0 : static_cast<size_t>(std::lround(double(pane_.position) * (m - 1) / (n - 1)));
  }

  void AdjustWindow(double width_factor, double centre_steps) {
    Window w = window_ ? *window_ : (shown_window_ ? *shown_window_ : Window{40, 400});
    w.width = std::max(1.0, w.width * width_factor);
    w.center += centre_steps * w.width * 0.05;
    window_ = w;
  }

  bool Handle(int key) {
    if (jumping_) {
      if (key >= '0' && key <= '9' && jump_.size() < 6) jump_ += static_cast<char>(key);
      if (key == kBackspace && !jump_.empty()) jump_.pop_back();
      if (key == kEnter || key == kEscape) {
        jumping_ = false;
        if (key == kEnter && !jump_.empty()) {
          const size_t n = Series(pane_).instances.size();
          pane_.position = std::clamp<size_t>(std::stoul(jump_), 1, n) - 1;
          pane_.frame = 0;
        }
      }
      SyncPrior();
      return true;
    }
    switch (key) {
      case kDown:
      case 'n':
      case 'j':
        Step(1, false);
        break;
      case kUp:
      case 'p':
      case 'k':
        Step(-1, false);
        break;
      case kPageDown:
        Step(10, false);
        break;
      case kPageUp:
        Step(-10, false);
        break;
      case kRight:
        Step(1, true);
        break;
      case kLeft:
        Step(-1, true);
        break;
      case ']':
      case '[': {
        const size_t n = main_.series.size();
        pane_.series = (pane_.series + (key == ']' ? 1 : n - 1)) % n;
        pane_.position = (Series(pane_).instances.size() - 1) / 2;
        pane_.frame = 0;
        break;
      }
      case kHome:
      case 'g':
        pane_.position = 0;
        pane_.frame = 0;
        break;
      case kEnd:
      case 'G':
        pane_.position = Series(pane_).instances.size() - 1;
        pane_.frame = 0;
        break;
      case '0':
        window_.reset();
        break;
      case '1':
      case '2':
      case '3':
      case '4':
      case '5':
        window_ = PresetWindow(kPresets[key - '1']);
        break;
      case 'w':
        AdjustWindow(1 / 1.15, 0);
        break;
      case 'W':
        AdjustWindow(1.15, 0);
        break;
      case 'c':
        AdjustWindow(1, -1);
        break;
      case 'C':
        AdjustWindow(1, 1);
        break;
      case '+':
      case '=':
        zoom_ = std::min(8.0, zoom_ * 1.25);
        break;
      case '-':
        zoom_ = std::max(1.0, zoom_ / 1.25);
        break;
      case 'H':
      case kShiftLeft:
        pan_x_ -= 0.1 / zoom_;
        break;
      case 'L':
      case kShiftRight:
        pan_x_ += 0.1 / zoom_;
        break;
      case 'K':
      case kShiftUp:
        pan_y_ -= 0.1 / zoom_;
        break;
      case 'J':
      case kShiftDown:
        pan_y_ += 0.1 / zoom_;
        break;
      case 'i':
        invert_ = !invert_;
        break;
      case ' ':
        cine_ = !cine_;
        break;
      case 't':
        jumping_ = true;
        jump_.clear();
        break;
      case 'x':
        TogglePrior();
        break;
      case 'r':
        OpenReport();
        break;
      default:
        return false;
    }
    SyncPrior();
    return true;
  }

  void TogglePrior() {
    if (prior_) {
      prior_.reset();
      message_ = "prior closed";
      return;
    }
    ApiClient* api = s_.Api();
    std::optional<json> priors =
        api ? CallJson(*api, "GET", "/api/v1/studies/" + main_.study + "/priors") : std::nullopt;
    if (!priors || (*priors)["priors"].empty()) {
      message_ = "no prior study of this patient";
      return;
    }
    const json& p = (*priors)["priors"][0];  // the most recent
    std::optional<Stack> st = OpenStack(s_, p["study_instance_uid"].get<std::string>(), cache_, 0);
    if (!st || st->series.empty()) {
      message_ = "the prior holds no images";
      return;
    }
    prior_ = std::make_unique<Stack>(std::move(*st));
    prior_->StartFetch(*s_.LoadedProfile(), cache_);
    prior_pane_ = Pane{prior_.get(), 0, 0, 0};
    // The prior's series that matches: same modality and body part, else same modality.
    const RemoteSeries& now = Series(pane_);
    int best = -1;
    for (size_t i = 0; i < prior_->series.size(); ++i) {
      const RemoteSeries& se = prior_->series[i];
      const int score = (se.modality == now.modality) * 2 + (se.body_part == now.body_part && !se.body_part.empty());
      if (score > best) best = score, prior_pane_.series = i;
    }
    prior_date_ = DicomDateText(p.value("study_date", ""));
    message_ = "prior " + prior_date_ + " " + p.value("description", "") + " (" + p.value("modalities", "") + ")";
    SyncPrior();
  }

  void OpenReport() {
    term_.Suspend();
    std::string self(4096, '\0');
    const ssize_t n = ::readlink("/proc/self/exe", self.data(), self.size() - 1);
    self.resize(n > 0 ? static_cast<size_t>(n) : 0);
    const std::string command = "'" + self + "' --profile '" + s_.profile_path + "' report new " + main_.study;
    const int rc = std::system(command.c_str());
    std::cout << "\n(report " << (rc == 0 ? "draft written" : "not written") << "; press Enter to return to the images)"
              << std::flush;
    std::string line;
    std::getline(std::cin, line);
    term_.Resume();
  }

  // The picture of a pane's current object, windowed; nullopt with `why` when it is not there yet.
  std::optional<RgbImage> Picture(const Pane& p, std::string& why, std::optional<Window>& applied, int& frames,
                                  ImageIdentity& id) {
    const RemoteInstance& in = Instance(p);
    const fs::path file = CachedFile(p.stack->dir, in);
    std::error_code ec;
    if (!fs::exists(file, ec)) {
      const BackgroundFetch* f = p.stack->fetch.get();
      why = f ? "fetching " + std::to_string(f->done()) + "/" + std::to_string(f->total()) + "..." : "fetching...";
      if (f && f->finished()) why = "this instance could not be fetched";
      return std::nullopt;
    }
    char key[200];
    std::snprintf(key, sizeof key, "%s/%d/%g/%g/%d", in.sop_instance_uid.c_str(), p.frame,
                  window_ ? window_->center : 0, window_ ? window_->width : -1, window_.has_value());
    Result<ImageIdentity> ident = ReadImageIdentity(file);
    if (ident.ok()) id = ident.value();
    auto hit = cache_images_.find(key);
    if (hit != cache_images_.end()) {
      applied = hit->second.window;
      frames = hit->second.frames;
      return hit->second.image;
    }
    Cached c;
    if (KindOfSopClass(in.sop_class_uid) == ObjectKind::kWaveform) {
      Result<EcgWaveform> ecg = ReadWaveform(file);
      if (!ecg.ok()) {
        why = ecg.status().message();
        return std::nullopt;
      }
      c.image = DrawEcgPaper(ecg.value(), id, 4).image;
    } else {
      Result<RenderedFrame> f = RenderFrame(file, {p.frame, window_});
      if (!f.ok()) {
        why = f.status().message();
        return std::nullopt;
      }
      c.image = std::move(f->image);
      c.window = f->window;
      c.frames = f->frames;
    }
    if (cache_images_.size() > 48) cache_images_.clear();  // a few series' worth at most
    applied = c.window;
    frames = c.frames;
    return cache_images_.emplace(key, std::move(c)).first->second.image;
  }

  // Draws one pane in the cell rectangle; returns its caption.
  std::string DrawPane(Pane& p, int left, int top, int columns, int rows, const TerminalSize& size, std::string& out) {
    std::string why;
    std::optional<Window> applied;
    int frames = 1;
    ImageIdentity id;
    std::optional<RgbImage> picture = Picture(p, why, applied, frames, id);
    const RemoteSeries& se = Series(p);
    std::string caption = se.modality + " Se " + se.series_number + " Im " + std::to_string(p.position + 1) + "/" +
                          std::to_string(se.instances.size()) + " #" + Instance(p).instance_number;
    if (frames > 1) caption += " Fr " + std::to_string(p.frame + 1) + "/" + std::to_string(frames);
    char wl[64] = "";
    if (applied) std::snprintf(wl, sizeof wl, " W %g L %g", applied->width, applied->center);
    caption += wl;
    if (&p == &pane_) {
      shown_window_ = applied;
      frames_ = frames;
      frame_ms_ = id.frame_time_ms;
    }
    char move[32];
    std::snprintf(move, sizeof move, "\033[%d;%dH", top, left);
    if (!picture) {
      std::snprintf(move, sizeof move, "\033[%d;%dH", top + rows / 2, left + 2);
      out += move + why.substr(0, static_cast<size_t>(std::max(0, columns - 4)));
      return caption;
    }
    RgbImage image = std::move(*picture);
    if (invert_) {
      for (uint8_t& v : image.rgb) v = static_cast<uint8_t>(255 - v);
    }
    if (zoom_ > 1.0) {
      const int w = std::max(1, static_cast<int>(image.width / zoom_)),
                h = std::max(1, static_cast<int>(image.height / zoom_));
      pan_x_ = std::clamp(pan_x_, -0.5 + 0.5 / zoom_, 0.5 - 0.5 / zoom_);
      pan_y_ = std::clamp(pan_y_, -0.5 + 0.5 / zoom_, 0.5 - 0.5 / zoom_);
      const int x0 = std::clamp(static_cast<int>((0.5 + pan_x_) * image.width) - w / 2, 0, image.width - w);
      const int y0 = std::clamp(static_cast<int>((0.5 + pan_y_) * image.height) - h / 2, 0, image.height - h);
      RgbImage crop(w, h);
      for (int y = 0; y < h; ++y) std::copy_n(image.At(x0, y0 + y), static_cast<size_t>(w) * 3, crop.At(0, y));
      image = std::move(crop);
    }
    // Pixel protocols are sharp enough for burned-in text; symbol cells are not, and the
    // patient is named on the top line anyway.
    if (painter_.protocol() != GraphicsProtocol::kSymbols) {
      BurnOverlay(image, id,
                  OverlayPlace{static_cast<int>(p.position) + 1, static_cast<int>(se.instances.size()), p.frame + 1,
                               frames, applied, invert_});
    }
    out += move + painter_.Encode(image, columns, rows, left, size.cell_width, size.cell_height);
    drawn_image_ = true;
    return caption;
  }

  void Draw() {
    const TerminalSize size = term_.Size();
    std::string out = "\033[?2026h\033[0m\033[H\033[2J";  // synchronized update where supported
    if (painter_.protocol() == GraphicsProtocol::kKitty) out += "\033_Ga=d\033\\";
    drawn_image_ = false;
    // The top line: whose images these are, always (from the server, before any file is here).
    const json& d = main_.detail;
    auto v = [&](const char* k) { return d.value(k, std::string()); };
    std::string age = v("patient_age");
    while (age.size() > 1 && age[0] == '0') age.erase(0, 1);
    const std::string banner = v("patient_name") + "  ID " + v("patient_id") + "  DOB " +
                               DicomDateText(v("patient_birth_date")) + " " + v("patient_sex") + " " + age + "  |  " +
                               DicomDateText(v("study_date")) + " " + v("description") + "  Acc " +
                               v("accession_number") + "  from " + v("member");
    out += "\033[1;7m" + PadToWidth(banner, size.columns) + "\033[0m";
    const int rows = std::max(2, size.rows - 3);
    std::string caption;
    if (prior_) {
      const int half = size.columns / 2;
      caption = "NOW " + DrawPane(pane_, 1, 2, half - 1, rows, size, out);
      caption +=
          "  |  PRIOR " + prior_date_ + " " + DrawPane(prior_pane_, half + 1, 2, size.columns - half, rows, size, out);
    } else {
      caption = DrawPane(pane_, 1, 2, size.columns, rows, size, out);
    }
    std::string status = caption + "  zoom " + std::to_string(zoom_).substr(0, 4) + (invert_ ? "  inverted" : "") +
                         (cine_ ? "  cine" : "");
    if (main_.fetch && !main_.fetch->finished()) {
      status += "  fetching " + std::to_string(main_.fetch->done()) + "/" + std::to_string(main_.fetch->total());
    }
    if (jumping_) status = "jump to position: " + jump_ + "_  (Enter, Esc)";
    if (!message_.empty() && !jumping_) status += "  " + message_;
    char move[32];
    std::snprintf(move, sizeof move, "\033[%d;1H", size.rows - 1);
    out += std::string(move) + "\033[0m\033[7m" + PadToWidth(status, size.columns) + "\033[0m";
    std::snprintf(move, sizeof move, "\033[%d;1H", size.rows);
    out += std::string(move) + PadToWidth(kHelp, size.columns - 1) + "\033[?2026l";
    term_.Write(out);
  }

  struct Cached {
    RgbImage image;
    std::optional<Window> window;
    int frames = 1;
  };

  Session& s_;
  Terminal& term_;
  fs::path cache_;
  TerminalPainter painter_;
  Stack main_;
  std::unique_ptr<Stack> prior_;
  Pane pane_, prior_pane_;
  std::string prior_date_, message_, jump_;
  std::optional<Window> window_, shown_window_;
  std::map<std::string, Cached> cache_images_;
  double zoom_ = 1, pan_x_ = 0, pan_y_ = 0, frame_ms_ = 0;
  int frames_ = 1;
  bool invert_ = false, cine_ = false, jumping_ = false, drawn_image_ = false;
  std::ofstream trace_;
};

struct ReadOptions {
  std::string study, cache;
};

}  // namespace

void AddReaderCommand(CLI::App& app, Session& s) {
  auto o = std::make_shared<ReadOptions>();
  CLI::App* read = app.add_subcommand("read", "Read a study interactively in the terminal (keys on the bottom line)");
  read->add_option("study", o->study, "Study Instance UID")->required();
  read->add_option("--cache", o->cache, "Cache directory (default $XDG_CACHE_HOME/teleread or ~/.cache/teleread)");
  read->callback([&s, o] {
    InitializeDicom();
    if (!IsUid(o->study)) {
      s.exit_code = Fail("'" + o->study + "' is not a Study Instance UID (digits and dots, at most 64 characters)");
      return;
    }
    if (!s.LoadedProfile()) {
      s.exit_code = 1;
      return;
    }
    Terminal term;
    if (!term.ok()) {
      s.exit_code = Fail("read needs a terminal; for scripts use `teleread view`");
      return;
    }
    Reader reader(s, term, o->cache.empty() ? DefaultCacheDir() : fs::path(o->cache));
    s.exit_code = reader.Run(o->study);
  });
}

}  // namespace teleread::viewer
