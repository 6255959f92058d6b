// viewer/render: synthetic images written with DCMTK, rendered, and checked pixel by pixel.
#include <catch2/catch.hpp>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcrleerg.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmjpeg/djencode.h"
#include "dcmtk/dcmjpls/djencode.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "common/dicom.h"
#include "samples/synthetic.h"
#include "tests/support/process.h"
#include "viewer/render.h"

using namespace teleread;
using namespace teleread::viewer;

namespace {

struct MonoSpec {
  std::string photometric = "MONOCHROME2";
  int columns = 1001;
  int rows = 4;
  int frames = 1;
  std::string window_center, window_width;  // none when empty
  // The stored value at (x, y) of frame f.
  std::function<Uint16(int x, int y, int f)> value = [](int x, int, int) { return static_cast<Uint16>(x); };
};

void PutCommon(DcmDataset& ds, const char* sop_class) {
  ds.putAndInsertString(DCM_SOPClassUID, sop_class);
  ds.putAndInsertString(DCM_SOPInstanceUID, samples::NewUid().c_str());
  ds.putAndInsertString(DCM_StudyInstanceUID, samples::NewUid().c_str());
  ds.putAndInsertString(DCM_SeriesInstanceUID, samples::NewUid().c_str());
  ds.putAndInsertString(DCM_Modality, "OT");
}

// A 16-bit unsigned monochrome image with no rescale, so stored values are modality values.
std::filesystem::path WriteMono(const std::filesystem::path& file, const MonoSpec& spec,
                                E_TransferSyntax xfer = EXS_LittleEndianExplicit) {
  DcmFileFormat ff;
  DcmDataset& ds = *ff.getDataset();
  PutCommon(
      ds, spec.frames > 1 ? UID_MultiframeGrayscaleWordSecondaryCaptureImageStorage : UID_SecondaryCaptureImageStorage);
  ds.putAndInsertString(DCM_PhotometricInterpretation, spec.photometric.c_str());
  ds.putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds.putAndInsertUint16(DCM_Rows, static_cast<Uint16>(spec.rows));
  ds.putAndInsertUint16(DCM_Columns, static_cast<Uint16>(spec.columns));
  ds.putAndInsertUint16(DCM_BitsAllocated, 16);
  ds.putAndInsertUint16(DCM_BitsStored, 16);
  ds.putAndInsertUint16(DCM_HighBit, 15);
  ds.putAndInsertUint16(DCM_PixelRepresentation, 0);
  if (spec.frames > 1) ds.putAndInsertString(DCM_NumberOfFrames, std::to_string(spec.frames).c_str());
  if (!spec.window_center.empty()) {
    ds.putAndInsertString(DCM_WindowCenter, spec.window_center.c_str());
    ds.putAndInsertString(DCM_WindowWidth, spec.window_width.c_str());
  }
  std::vector<Uint16> pixels;
  for (int f = 0; f < spec.frames; ++f) {
    for (int y = 0; y < spec.rows; ++y) {
      for (int x = 0; x < spec.columns; ++x) pixels.push_back(spec.value(x, y, f));
    }
  }
  REQUIRE(ds.putAndInsertUint16Array(DCM_PixelData, pixels.data(), static_cast<unsigned long>(pixels.size())).good());
  if (xfer != EXS_LittleEndianExplicit) {
    static const bool registered = [] {
      DcmRLEEncoderRegistration::registerCodecs();
      DJEncoderRegistration::registerCodecs();
      DJLSEncoderRegistration::registerCodecs();
      return true;
    }();
    (void)registered;
    REQUIRE(ds.chooseRepresentation(xfer, nullptr).good());
    REQUIRE(ds.canWriteXfer(xfer));
  }
  REQUIRE(ff.saveFile(file.c_str(), xfer).good());
  return file;
}

// 8-bit RGB: red = 10 x, green = 10 y, blue = 77.
std::filesystem::path WriteRgb(const std::filesystem::path& file, int columns, int rows) {
  DcmFileFormat ff;
  DcmDataset& ds = *ff.getDataset();
  PutCommon(ds, UID_SecondaryCaptureImageStorage);
  ds.putAndInsertString(DCM_PhotometricInterpretation, "RGB");
  ds.putAndInsertUint16(DCM_SamplesPerPixel, 3);
  ds.putAndInsertUint16(DCM_PlanarConfiguration, 0);
  ds.putAndInsertUint16(DCM_Rows, static_cast<Uint16>(rows));
  ds.putAndInsertUint16(DCM_Columns, static_cast<Uint16>(columns));
  ds.putAndInsertUint16(DCM_BitsAllocated, 8);
  ds.putAndInsertUint16(DCM_BitsStored, 8);
  ds.putAndInsertUint16(DCM_HighBit, 7);
  ds.putAndInsertUint16(DCM_PixelRepresentation, 0);
  std::vector<Uint8> pixels;
  for (int y = 0; y < rows; ++y) {
    for (int x = 0; x < columns; ++x) {
      pixels.push_back(static_cast<Uint8>(10 * x));
      pixels.push_back(static_cast<Uint8>(10 * y));
      pixels.push_back(77);
    }
  }
  REQUIRE(ds.putAndInsertUint8Array(DCM_PixelData, pixels.data(), static_cast<unsigned long>(pixels.size())).good());
  REQUIRE(ff.saveFile(file.c_str(), EXS_LittleEndianExplicit).good());
  return file;
}

RenderedFrame Render(const std::filesystem::path& file, std::optional<Window> window = std::nullopt, int frame = 0) {
  Result<RenderedFrame> r = RenderFrame(file, {frame, window});
  INFO(r.status().message());
  REQUIRE(r.ok());
  return std::move(r).value();
}

int Grey(const RenderedFrame& r, int x, int y = 0) {
  const uint8_t* p = r.image.At(x, y);
  REQUIRE((p[0] == p[1] && p[1] == p[2]));
  return p[0];
}

struct RenderFixture {
  RenderFixture() { InitializeDicom(); }
  test::ScratchDir dir{"teleread-render"};
};

}  // namespace

TEST_CASE_METHOD(RenderFixture, "render applies the linear VOI window of PS3.3 C.11.2.1.2", "[render]") {
  const auto file = WriteMono(dir.path() / "gradient.dcm", {});
  const RenderedFrame r = Render(file, Window{500, 1000});
  CHECK(r.image.width == 1001);
  CHECK(r.image.height == 4);
  CHECK(r.photometric == "MONOCHROME2");
  REQUIRE(r.window);
  CHECK(r.window->center == 500);
  CHECK(r.window->width == 1000);
  // x <= c - 0.5 - (w-1)/2 = 0 gives 0; x > c - 0.5 + (w-1)/2 = 999 gives 255; in between
  // ((x - (c - 0.5)) / (w - 1) + 0.5) * 255, which is 127.63 at x = 500. DCMTK 3.6.7 truncates
  // to the integer below (it does not round), so 500 gives 127.
  CHECK(Grey(r, 0) == 0);
  CHECK(Grey(r, 500) == 127);
  CHECK(Grey(r, 1000) == 255);
  for (int x = 1; x < 1000; ++x) {
    INFO("x = " << x);
    REQUIRE(Grey(r, x) == Approx(std::floor(((x - 499.5) / 999 + 0.5) * 255)).margin(1));
    REQUIRE(Grey(r, x) >= Grey(r, x - 1));
  }
}

TEST_CASE_METHOD(RenderFixture, "render inverts MONOCHROME1 so low stored values are bright", "[render]") {
  MonoSpec spec;
  const RenderedFrame m2 = Render(WriteMono(dir.path() / "m2.dcm", spec), Window{500, 1000});
  spec.photometric = "MONOCHROME1";
  const RenderedFrame m1 = Render(WriteMono(dir.path() / "m1.dcm", spec), Window{500, 1000});
  CHECK(m1.photometric == "MONOCHROME1");
  CHECK(Grey(m1, 0) == 255);
  CHECK(Grey(m1, 1000) == 0);
  // DCMTK inverts before it truncates: 255 - 12.86 gives 242 where MONOCHROME2 gives 12.
  for (int x = 0; x <= 1000; x += 50) {
    INFO("x = " << x);
    CHECK(Grey(m1, x) == Approx(255 - Grey(m2, x)).margin(1));
    CHECK(Grey(m1, x) == Approx(std::floor(255 - std::clamp(((x - 499.5) / 999 + 0.5) * 255, 0.0, 255.0))).margin(1));
  }
}

TEST_CASE_METHOD(RenderFixture, "render takes the window from the file else the min and max", "[render]") {
  MonoSpec spec;
  spec.window_center = "100";
  spec.window_width = "200";
  const RenderedFrame from_file = Render(WriteMono(dir.path() / "voi.dcm", spec));
  REQUIRE(from_file.window);
  CHECK(from_file.window->center == 100);
  CHECK(from_file.window->width == 200);
  CHECK(Grey(from_file, 0) == 0);
  CHECK(Grey(from_file, 200) == 255);
  CHECK(Grey(from_file, 100) == Approx(128).margin(1));

  spec.window_center.clear();
  spec.value = [](int x, int, int) { return static_cast<Uint16>(2000 + x); };  // 2000..3000
  const RenderedFrame min_max = Render(WriteMono(dir.path() / "nowindow.dcm", spec));
  REQUIRE(min_max.window);
  CHECK(min_max.window->center == Approx(2500).margin(1));
  CHECK(Grey(min_max, 0) == 0);
  CHECK(Grey(min_max, 1000) == 255);
  CHECK(Grey(min_max, 500) == Approx(128).margin(1));
}

TEST_CASE_METHOD(RenderFixture, "render presets and typed windows change the output", "[render]") {
  CHECK(PresetWindow("lung")->center == -600);
  CHECK(PresetWindow("lung")->width == 1500);
  CHECK(PresetWindow("bone")->center == 300);
  CHECK(PresetWindow("abdomen")->width == 400);
  CHECK(PresetWindow("soft-tissue")->width == 350);
  CHECK_FALSE(PresetWindow("liver"));
  CHECK(PresetNames().size() == 5);
  REQUIRE(ParseWindow("-600,1500"));
  CHECK(ParseWindow("-600,1500")->center == -600);
  CHECK(ParseWindow("40.5,80")->center == 40.5);
  CHECK_FALSE(ParseWindow("40"));
  CHECK_FALSE(ParseWindow("40,0"));
  CHECK_FALSE(ParseWindow("a,80"));
  CHECK_FALSE(ParseWindow("40,80x"));

  const auto file = WriteMono(dir.path() / "gradient.dcm", {});
  const RenderedFrame brain = Render(file, PresetWindow("brain"));  // 0..80
  CHECK(Grey(brain, 0) == 0);
  CHECK(Grey(brain, 40) == Approx(128).margin(2));
  CHECK(Grey(brain, 80) == 255);
  CHECK(Grey(brain, 500) == 255);
  const RenderedFrame lung = Render(file, PresetWindow("lung"));  // -1350..150
  CHECK(Grey(lung, 0) == Approx(((0 + 600.5) / 1499 + 0.5) * 255).margin(1));
  CHECK(Grey(lung, 150) == 255);
  const RenderedFrame typed = Render(file, ParseWindow("40,80"));
  CHECK(typed.image.rgb == brain.image.rgb);
  CHECK(typed.image.rgb != lung.image.rgb);
}

TEST_CASE_METHOD(RenderFixture, "render reads the asked frame of a multi-frame image", "[render]") {
  MonoSpec spec;
  spec.columns = 16;
  spec.rows = 8;
  spec.frames = 3;
  spec.value = [](int x, int, int f) { return static_cast<Uint16>(100 * f + x); };
  const auto file = WriteMono(dir.path() / "multi.dcm", spec);
  const Window w{150, 300};  // 0..300
  const RenderedFrame f0 = Render(file, w, 0);
  const RenderedFrame f2 = Render(file, w, 2);
  CHECK(f0.frames == 3);
  CHECK(f0.image.width == 16);
  CHECK(f0.image.height == 8);
  CHECK(Grey(f0, 0) == 0);
  CHECK(Grey(f2, 0) == Approx(((200 - 149.5) / 299 + 0.5) * 255).margin(1));
  CHECK(Grey(Render(file, w, 1), 0) == Approx(((100 - 149.5) / 299 + 0.5) * 255).margin(1));
  CHECK(f0.image.rgb != f2.image.rgb);
  Result<RenderedFrame> beyond = RenderFrame(file, {3, w});
  REQUIRE_FALSE(beyond.ok());
  CHECK(beyond.status().code() == Status::Code::kInvalidArgument);
  CHECK_THAT(beyond.status().message(), Catch::Contains("3 frames"));
}

TEST_CASE_METHOD(RenderFixture, "render of an RLE compressed image matches the uncompressed one", "[render]") {
  MonoSpec spec;
  spec.columns = 64;
  spec.rows = 48;
  spec.frames = 2;
  spec.value = [](int x, int y, int f) { return static_cast<Uint16>(x * 37 + y * 101 + f * 999); };
  const auto native = WriteMono(dir.path() / "native.dcm", spec);
  const auto rle = WriteMono(dir.path() / "rle.dcm", spec, EXS_RLELossless);
  Result<InstanceSummary> summary = ReadInstanceSummary(rle);
  REQUIRE(summary.ok());
  CHECK(summary->transfer_syntax_uid == UID_RLELosslessTransferSyntax);
  for (int frame : {0, 1}) {
    CHECK(Render(rle, Window{3000, 6000}, frame).image.rgb == Render(native, Window{3000, 6000}, frame).image.rgb);
    CHECK(Render(rle, std::nullopt, frame).image.rgb == Render(native, std::nullopt, frame).image.rgb);
  }
}

TEST_CASE_METHOD(RenderFixture, "render of JPEG Lossless and JPEG-LS Lossless images matches the uncompressed one",
                 "[render]") {
  MonoSpec spec;
  spec.columns = 64;
  spec.rows = 48;
  spec.frames = 2;
  spec.value = [](int x, int y, int f) { return static_cast<Uint16>(x * 37 + y * 101 + f * 999); };
  const auto native = WriteMono(dir.path() / "native.dcm", spec);
  const std::pair<E_TransferSyntax, const char*> kinds[] = {{EXS_JPEGProcess14SV1, UID_JPEGProcess14SV1TransferSyntax},
                                                            {EXS_JPEGLSLossless, UID_JPEGLSLosslessTransferSyntax}};
  for (const auto& [xfer, uid] : kinds) {
    INFO(uid);
    const auto compressed = WriteMono(dir.path() / (std::string(uid) + ".dcm"), spec, xfer);
    Result<InstanceSummary> summary = ReadInstanceSummary(compressed);
    REQUIRE(summary.ok());
    CHECK(summary->transfer_syntax_uid == uid);
    CHECK(teleread::test::ReadFile(compressed) != teleread::test::ReadFile(native));
    for (int frame : {0, 1}) {
      CHECK(Render(compressed, Window{3000, 6000}, frame).image.rgb ==
            Render(native, Window{3000, 6000}, frame).image.rgb);
      CHECK(Render(compressed, std::nullopt, frame).image.rgb == Render(native, std::nullopt, frame).image.rgb);
    }
  }
}

TEST_CASE_METHOD(RenderFixture, "render passes RGB through without windowing", "[render]") {
  const RenderedFrame r = Render(WriteRgb(dir.path() / "rgb.dcm", 20, 10), Window{0, 10});
  CHECK(r.photometric == "RGB");
  CHECK_FALSE(r.window);
  REQUIRE(r.image.width == 20);
  REQUIRE(r.image.height == 10);
  const uint8_t* p = r.image.At(7, 3);
  CHECK(int{p[0]} == 70);
  CHECK(int{p[1]} == 30);
  CHECK(int{p[2]} == 77);
}

TEST_CASE_METHOD(RenderFixture, "render refuses objects without pixels and missing files", "[render]") {
  DcmFileFormat ff;
  DcmDataset& ds = *ff.getDataset();
  PutCommon(ds, UID_BasicTextSRStorage);
  ds.putAndInsertString(DCM_Modality, "SR");
  const auto sr = dir.path() / "sr.dcm";
  REQUIRE(ff.saveFile(sr.c_str(), EXS_LittleEndianExplicit).good());
  Result<RenderedFrame> r = RenderFrame(sr, {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Status::Code::kInvalidArgument);
  CHECK_THAT(r.status().message(), Catch::Contains("not an image") && Catch::Contains("BasicTextSRStorage"));
  CHECK(RenderFrame(dir.path() / "none.dcm", {}).status().code() == Status::Code::kNotFound);
  CHECK(IsImageSopClass(UID_CTImageStorage));
  CHECK_FALSE(IsImageSopClass(UID_BasicTextSRStorage));
}

TEST_CASE_METHOD(RenderFixture, "render writes a PNG that reads back identical", "[render]") {
  const RenderedFrame r = Render(WriteRgb(dir.path() / "rgb.dcm", 21, 9));
  const auto png = dir.path() / "out.png";
  REQUIRE(WritePng(r.image, png).ok());
  CHECK_FALSE(std::filesystem::exists(png.string() + ".part"));
  Result<RgbImage> back = ReadPng(png);
  REQUIRE(back.ok());
  CHECK(back->width == 21);
  CHECK(back->height == 9);
  CHECK(back->rgb == r.image.rgb);
  CHECK(ReadPng(dir.path() / "rgb.dcm").status().code() == Status::Code::kIOError);
  CHECK_FALSE(WritePng(r.image, dir.path() / "no" / "such" / "dir.png").ok());
}

TEST_CASE("render resizes by averaging and fits within a box", "[render]") {
  RgbImage img(4, 2);
  for (int x = 0; x < 4; ++x) {
    for (int y = 0; y < 2; ++y) std::fill_n(img.At(x, y), 3, static_cast<uint8_t>(x < 2 ? 0 : 200));
  }
  const RgbImage half = Resize(img, 2, 1);
  CHECK(int{half.At(0, 0)[0]} == 0);
  CHECK(int{half.At(1, 0)[0]} == 200);
  const RgbImage mixed = Resize(img, 1, 1);
  CHECK(int{mixed.At(0, 0)[0]} == 100);
  const RgbImage twice = Resize(img, 8, 4);
  CHECK(int{twice.At(3, 3)[0]} == 0);
  CHECK(int{twice.At(4, 0)[0]} == 200);
  const RgbImage fit = FitWithin(img, 256, 256);
  CHECK(fit.width == 256);
  CHECK(fit.height == 128);
  CHECK(FitWithin(RgbImage(1000, 10), 256, 256).height == 3);
}

TEST_CASE("render contact sheet tiles thumbnails in a grid with labels", "[render]") {
  std::vector<SheetTile> tiles;
  for (int i = 1; i <= 3; ++i) {
    RgbImage img(128, 64);
    std::fill(img.rgb.begin(), img.rgb.end(), static_cast<uint8_t>(60 * i));
    tiles.push_back({img, std::to_string(i)});
  }
  const RgbImage sheet = ContactSheet(tiles, 64);
  CHECK(sheet.width == 128);  // 2 columns for 3 tiles
  CHECK(sheet.height == 128);
  // Tile 2 (top right), scaled to 64x32 and centred: rows 16..47 hold it, the rest is black.
  CHECK(int{sheet.At(64 + 32, 10)[0]} == 0);
  CHECK(int{sheet.At(64 + 32, 30)[0]} == 120);
  CHECK(int{sheet.At(32, 64 + 30)[0]} == 180);
  CHECK(int{sheet.At(64 + 32, 64 + 30)[0]} == 0);  // no fourth tile
  // The label "2" at (1, 1), scale 1: a black box with the glyph's top row (0x0E) in white.
  CHECK(int{sheet.At(64 + 1, 1)[0]} == 0);
  CHECK(int{sheet.At(64 + 1 + 1 + 1, 2)[0]} == 255);
  CHECK(int{sheet.At(64 + 1 + 1 + 0, 2)[0]} == 0);
  CHECK(ContactSheet({}, 64).width == 0);
}

TEST_CASE("render half-block preview has one line per two pixel rows and 24-bit colours", "[render]") {
  RgbImage img(4, 4);
  std::copy_n(std::vector<uint8_t>{255, 0, 0}.begin(), 3, img.At(0, 0));
  std::copy_n(std::vector<uint8_t>{0, 0, 255}.begin(), 3, img.At(0, 1));
  std::copy_n(std::vector<uint8_t>{1, 2, 3}.begin(), 3, img.At(3, 3));
  const std::string text = HalfBlockPreview(img, 4);
  std::vector<std::string> lines;
  for (size_t start = 0, end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    lines.push_back(text.substr(start, end - start));
  }
  REQUIRE(lines.size() == 2);
  for (const std::string& line : lines) {
    size_t blocks = 0;
    for (size_t at = 0; (at = line.find("\u2580", at)) != std::string::npos; at += 3) ++blocks;
    CHECK(blocks == 4);
    CHECK_THAT(line, Catch::EndsWith("\033[0m"));
  }
  CHECK_THAT(lines[0], Catch::StartsWith("\033[38;2;255;0;0m\033[48;2;0;0;255m\u2580"));
  CHECK_THAT(lines[1], Catch::Contains("\033[38;2;0;0;0m\033[48;2;1;2;3m\u2580\033[0m"));

  // Scaled to the width asked for; an odd number of pixel rows leaves a last half line.
  const std::string wide = HalfBlockPreview(RgbImage(100, 50), 80);  // 80 x 40 pixels: 20 lines
  CHECK(std::count(wide.begin(), wide.end(), '\n') == 20);
  const std::string odd = HalfBlockPreview(RgbImage(10, 5), 10);
  CHECK(std::count(odd.begin(), odd.end(), '\n') == 3);
  CHECK_THAT(odd, Catch::Contains("\033[49m"));
  CHECK(TerminalColumns(-1) == 80);
}
