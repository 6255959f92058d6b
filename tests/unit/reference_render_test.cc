// Our renders of public real-world files (pydicom's test corpus, Debian python3-pydicom), none of
// them written here, against independent decoders: DCMTK's dcmj2pnm for what DCMTK decodes, and
// GDCM's `gdcmconv --raw` (OpenJPEG inside GDCM) for JPEG 2000. Same size, mean difference at
// most one grey level. ECG paper against the waveform's own sample values; identity in Latin,
// Chinese and Japanese names. A missing tool or corpus makes ctest report SKIPPED (exit 77).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <iostream>

#include "common/dicom.h"
#include "samples/synthetic.h"
#include "tests/support/process.h"
#include "viewer/ecg.h"
#include "viewer/overlay.h"
#include "viewer/render.h"
#include "viewer/text_raster.h"

using namespace teleread;
using namespace teleread::viewer;
using teleread::test::CommandResult;
using teleread::test::RunCommand;
using teleread::test::ScratchDir;
namespace fs = std::filesystem;

namespace {

const fs::path kPydicom = "/usr/lib/python3/dist-packages/pydicom/data";

[[noreturn]] void Skip(const std::string& why) {
  std::cout << "SKIPPED: " << why << std::endl;
  std::exit(77);  // ctest's SKIP_RETURN_CODE for these tests
}

fs::path PublicFile(const std::string& relative) {
  const fs::path p = kPydicom / relative;
  if (!fs::exists(p)) Skip(p.string() + " is missing: apt-get install python3-pydicom");
  return p;
}

std::string Tool(const std::string& path, const std::string& package) {
  if (path.empty() || !fs::exists(path)) Skip("the reference tool is missing: apt-get install " + package);
  return path;
}

double MeanDifference(const RgbImage& a, const RgbImage& b) {
  REQUIRE(a.width == b.width);
  REQUIRE(a.height == b.height);
  double sum = 0;
  for (size_t i = 0; i < a.rgb.size(); ++i) sum += std::abs(int(a.rgb[i]) - int(b.rgb[i]));
  return sum / static_cast<double>(a.rgb.size());
}

// dcmj2pnm's PNG of the first frame with the window we applied (none for colour), so that the
// decoding and the VOI transform are what is compared.
RgbImage DcmtkReference(const fs::path& file, const fs::path& out, const std::optional<Window>& window) {
  // dcmj2pnm has no JPEG-LS decoder; its sibling dcml2pnm has.
  std::string tool = Tool(DCMJ2PNM_BIN, "dcmtk");
  if (file.filename().string().find("jpeg_ls") != std::string::npos) {
    tool = (fs::path(tool).parent_path() / "dcml2pnm").string();
  }
  std::vector<std::string> args{tool, "--write-png"};
  if (window) {
    char c[64], w[64];
    std::snprintf(c, sizeof c, "%.10g", window->center);
    std::snprintf(w, sizeof w, "%.10g", window->width);
    args.insert(args.end(), {"+Ww", c, w});
  }
  args.insert(args.end(), {file.string(), out.string()});
  CommandResult r = RunCommand(args);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  Result<RgbImage> png = ReadPng(out);
  REQUIRE(png.ok());
  return png.value();
}

}  // namespace

TEST_CASE("render matches DCMTK dcmj2pnm on public files (native, RLE, JPEG, JPEG-LS, colour)", "[render][reference]") {
  InitializeDicom();
  ScratchDir dir;
  // CT and MR from several vendors, big endian, RLE, JPEG-LS, lossy and extended JPEG, RGB in
  // several encodings, a multi-frame CT.
  const char* cases[] = {"test_files/CT_small.dcm",           "test_files/MR_small.dcm",
                         "test_files/MR_small_RLE.dcm",       "test_files/MR_small_jpeg_ls_lossless.dcm",
                         "test_files/MR_small_bigendian.dcm", "test_files/JPEG-lossy.dcm",
                         "test_files/JPGExtended.dcm",        "test_files/SC_rgb_rle.dcm",
                         "test_files/SC_rgb_jpeg_dcmtk.dcm",  "test_files/SC_rgb.dcm",
                         "test_files/liver_1frame.dcm"};
  int compared = 0;
  for (const char* name : cases) {
    const fs::path file = kPydicom / name;
    if (!fs::exists(file)) continue;  // corpora differ between pydicom versions; CT_small must exist
    INFO(name);
    Result<RenderedFrame> ours = RenderFrame(file, {});
    INFO((ours.ok() ? std::string() : ours.status().message()));
    REQUIRE(ours.ok());
    const RgbImage reference = DcmtkReference(file, dir.path() / "ref.png", ours->window);
    CHECK(MeanDifference(ours->image, reference) <= 1.0);
    ++compared;
  }
  CHECK(compared >= 8);
  CHECK(fs::exists(PublicFile("test_files/CT_small.dcm")));
}

TEST_CASE("render decodes JPEG 2000 like GDCM does (gdcmconv --raw)", "[render][reference][j2k]") {
  InitializeDicom();
  const std::string gdcmconv = Tool(GDCMCONV_BIN, "libgdcm-tools");
  ScratchDir dir;
  // Lossless and lossy, 8 and 16 bit, signed, from GDCM's and others' encoders.
  for (const char* name : {"test_files/JPEG2000.dcm", "test_files/MR_small_jp2klossless.dcm", "test_files/693_J2KI.dcm",
                           "test_files/GDCMJ2K_TextGBR.dcm"}) {
    INFO(name);
    const fs::path file = PublicFile(name), raw = dir.path() / "raw.dcm";
    CommandResult conv = RunCommand({gdcmconv, "--raw", file.string(), raw.string()});
    INFO(conv.output);
    REQUIRE(conv.exit_code == 0);
    Result<RenderedFrame> ours = RenderFrame(file, {});
    INFO((ours.ok() ? std::string() : ours.status().message()));
    REQUIRE(ours.ok());
    // The same window on both, so that only the decoding differs.
    Result<RenderedFrame> reference = RenderFrame(raw, {0, ours->window});
    REQUIRE(reference.ok());
    CHECK(MeanDifference(ours->image, reference->image) <= 1.0);
  }
}

TEST_CASE("ECG paper: a lead's peak in pixels is its amplitude at 10 mm/mV", "[render][ecg]") {
  InitializeDicom();
  ScratchDir dir;
  samples::SeriesSpec spec;
  spec.modality = "ECG";
  spec.patient_name = "陈^静";
  Result<std::vector<fs::path>> files = samples::WriteSeries(spec, dir.path());
  REQUIRE(files.ok());
  std::vector<fs::path> inputs{files->front()};
  // A real resting ECG (pydicom's corpus) too, when installed.
  if (fs::exists(kPydicom / "test_files/waveform_ecg.dcm")) inputs.push_back(kPydicom / "test_files/waveform_ecg.dcm");
  for (const fs::path& file : inputs) {
    INFO(file.string());
    Result<EcgWaveform> ecg = ReadWaveform(file);
    REQUIRE(ecg.ok());
    REQUIRE(ecg->channels.size() >= 1);
    for (double px_per_mm : {4.0, 5.0}) {
      const EcgPaper paper = DrawEcgPaper(ecg.value(), ImageIdentity{}, px_per_mm);
      REQUIRE(!paper.segments.empty());
      const EcgPaper::Segment& strip = paper.segments.back();  // the rhythm strip (or last channel)
      const EcgChannel& ch = ecg->channels[static_cast<size_t>(strip.channel)];
      REQUIRE(ch.units == "mV");
      // Skip the label at the strip's start: from 20 mm on.
      const double skip_s = 20.0 / 25.0;
      const size_t first = static_cast<size_t>(skip_s * ecg->sampling_hz);
      const size_t last = std::min(ch.values.size(), static_cast<size_t>(strip.seconds * ecg->sampling_hz));
      size_t at = first;
      for (size_t i = first; i < last; ++i) {
        if (ch.values[i] > ch.values[at]) at = i;
      }
      const double peak = ch.values[at];
      REQUIRE(peak > 0.1);
      const double expected = peak * 10 * px_per_mm;  // pixels above the zero line
      const double thickness = std::max(1.0, std::round(px_per_mm / 3));
      // In the peak sample's column, the topmost ink between the zero line and a little above
      // where the peak belongs (leads of the row above may reach lower elsewhere).
      const int x = strip.x0 + static_cast<int>(std::lround(at * 25 * px_per_mm / ecg->sampling_hz));
      const int window_top = strip.baseline_y - static_cast<int>(expected + 2 * thickness + 3);
      int top = strip.baseline_y + 1;
      for (int dx = -1; dx <= 1; ++dx) {
        for (int y = window_top; y <= strip.baseline_y; ++y) {
          const uint8_t* p = paper.image.At(x + dx, y);
          if (p[0] == 0 && p[1] == 0 && p[2] == 0) {
            top = std::min(top, y);
            break;
          }
        }
      }
      CHECK(std::abs((strip.baseline_y - top) - expected) <= thickness / 2 + 1.5);
      CHECK(paper.image.width == static_cast<int>(265 * px_per_mm));
    }
  }
}

TEST_CASE("identity of Latin, Chinese and Japanese names is read and drawn in its own script", "[render][identity]") {
  InitializeDicom();
  ScratchDir dir;
  samples::SeriesSpec spec;
  spec.patient_name = "张^三";
  spec.patient_id = "ZZ100234";
  spec.specific_character_set = "GB18030";
  spec.rows = spec.columns = 256;
  Result<std::vector<fs::path>> files = samples::WriteSeries(spec, dir.path());
  REQUIRE(files.ok());
  Result<ImageIdentity> chinese = ReadImageIdentity(files->front());
  REQUIRE(chinese.ok());
  CHECK(chinese->patient_name == "张^三");
  CHECK(chinese->patient_id == "ZZ100234");

  // pydicom's character set files: German (ISO_IR 100) and Japanese (ISO 2022 IR 87).
  Result<ImageIdentity> german = ReadImageIdentity(PublicFile("charset_files/chrGerm.dcm"));
  REQUIRE(german.ok());
  CHECK(german->patient_name == "Äneas^Rüdiger");
  Result<ImageIdentity> japanese = ReadImageIdentity(PublicFile("charset_files/chrJapMulti.dcm"));
  REQUIRE(japanese.ok());
  CHECK_THAT(japanese->patient_name, Catch::Contains("やまだ") || Catch::Contains("山田"));

  // Drawn: the CJK glyphs are not the placeholder a font without them would draw.
  if (TextFontPath().empty()) Skip("no CJK font: apt-get install fonts-wqy-microhei");
  RgbImage a(200, 40), b(200, 40);
  DrawText(a, 2, 2, "张^三");
  DrawText(b, 2, 2, "?^?");
  CHECK(MeanDifference(a, b) > 1.0);
  // The overlay changes the image in its corners and leaves the middle alone.
  Result<RenderedFrame> frame = RenderFrame(files->front(), {});
  REQUIRE(frame.ok());
  RgbImage burned = frame->image;
  BurnOverlay(burned, chinese.value(), OverlayPlace{1, 1, 1, 1, frame->window, false});
  int changed_corner = 0;
  for (int y = 0; y < 40; ++y) {
    for (int x = 0; x < 100; ++x) changed_corner += burned.At(x, y)[0] != frame->image.At(x, y)[0];
  }
  CHECK(changed_corner > 50);
  CHECK(std::equal(burned.At(100, 128), burned.At(156, 128), frame->image.At(100, 128)));
  // Orientation markers from Image Orientation (Patient): an axial slice has L on the right.
  CHECK(DirectionLetters(1, 0, 0) == "L");
  CHECK(DirectionLetters(-1, 0, 0) == "R");
  CHECK(DirectionLetters(0, 1, 0) == "P");
  CHECK(DirectionLetters(0, 0, -1) == "F");
  CHECK(DirectionLetters(0.7, 0.7, 0) == "LP");
}
