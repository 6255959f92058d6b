#include "viewer/overlay.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/dicom.h"
#include "viewer/text_raster.h"

namespace teleread::viewer {
namespace {

std::string Text(DcmDataset& ds, const DcmTagKey& tag, const std::string& charset, const char* delimiters = "\\") {
  const char* raw = nullptr;
  if (ds.findAndGetString(tag, raw).bad() || raw == nullptr) return "";
  std::string value(raw);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\0')) value.pop_back();
  Result<std::string> utf8 = DecodeToUtf8(charset, value, delimiters);
  if (utf8.ok()) return utf8.value();
  std::string ascii;  // an unknown character set still shows what ASCII there is
  for (char c : value) ascii += static_cast<unsigned char>(c) < 0x80 ? c : '?';
  return ascii;
}

}  // namespace

Result<ImageIdentity> ReadImageIdentity(const std::filesystem::path& file) {
  Result<std::unique_ptr<DicomFile>> ff = DicomFile::Open(file, 1024, false);
  if (!ff.ok()) return Status::Corruption(file.string() + ": " + ff.status().message());
  DcmDataset& ds = ff.value()->dataset();
  OFString charset;
  (void)ds.findAndGetOFStringArray(DCM_SpecificCharacterSet, charset);
  const std::string cs = charset.c_str();
  ImageIdentity id;
  id.patient_name = Text(ds, DCM_PatientName, cs, "\\^=");
  id.patient_id = Text(ds, DCM_PatientID, cs);
  id.birth_date = Text(ds, DCM_PatientBirthDate, cs);
  id.sex = Text(ds, DCM_PatientSex, cs);
  id.age = Text(ds, DCM_PatientAge, cs);
  id.study_date = Text(ds, DCM_StudyDate, cs);
  id.study_description = Text(ds, DCM_StudyDescription, cs);
  id.accession_number = Text(ds, DCM_AccessionNumber, cs);
  id.modality = Text(ds, DCM_Modality, cs);
  id.series_number = Text(ds, DCM_SeriesNumber, cs);
  id.series_description = Text(ds, DCM_SeriesDescription, cs);
  id.instance_number = Text(ds, DCM_InstanceNumber, cs);
  std::array<double, 6> o{};
  bool have = true;
  for (unsigned long i = 0; i < 6 && have; ++i) {
    Float64 v = 0;
    have = ds.findAndGetFloat64(DCM_ImageOrientationPatient, v, i).good();
    o[i] = v;
  }
  // Multi-frame objects keep it in the shared functional groups.
  if (!have) {
    DcmItem* shared = nullptr;
    DcmItem* plane = nullptr;
    have = ds.findAndGetSequenceItem(DCM_SharedFunctionalGroupsSequence, shared, 0).good() && shared &&
           shared->findAndGetSequenceItem(DCM_PlaneOrientationSequence, plane, 0).good() && plane;
    for (unsigned long i = 0; i < 6 && have; ++i) {
      Float64 v = 0;
      have = plane->findAndGetFloat64(DCM_ImageOrientationPatient, v, i).good();
      o[i] = v;
    }
  }
  if (have) id.orientation = o;
  Float64 rate = 0;
  if (ds.findAndGetFloat64(DCM_FrameTime, rate).good() && rate > 0) {
    id.frame_time_ms = rate;
  } else if (ds.findAndGetFloat64(DCM_CineRate, rate).good() && rate > 0) {
    id.frame_time_ms = 1000.0 / rate;
  } else if (ds.findAndGetFloat64(DCM_RecommendedDisplayFrameRate, rate).good() && rate > 0) {
    id.frame_time_ms = 1000.0 / rate;
  }
  return id;
}

std::string DirectionLetters(double x, double y, double z) {
  struct Axis {
    double v;
    char pos, neg;
  } axes[] = {{x, 'L', 'R'}, {y, 'P', 'A'}, {z, 'H', 'F'}};
  std::sort(std::begin(axes), std::end(axes),
            [](const Axis& a, const Axis& b) { return std::fabs(a.v) > std::fabs(b.v); });
  std::string out;
  for (const Axis& a : axes) {
    // A component below ~0.3 (about 17 degrees) is not worth a letter.
    if (std::fabs(a.v) < (out.empty() ? 1e-6 : 0.3)) break;
    out += a.v > 0 ? a.pos : a.neg;
    if (out.size() == 2) break;
  }
  return out;
}

std::string DicomDateText(const std::string& da) {
  if (da.size() == 8 && da.find_first_not_of("0123456789") == std::string::npos) {
    return da.substr(0, 4) + "-" + da.substr(4, 2) + "-" + da.substr(6, 2);
  }
  return da;
}

void BurnOverlay(RgbImage& image, const ImageIdentity& id, const OverlayPlace& place) {
  if (image.width <= 0 || image.height <= 0) return;
  TextStyle style;
  style.pixel_height = std::clamp(std::min(image.width, image.height) / 32, 10, 24);
  const int line = style.pixel_height + style.pixel_height / 4, margin = style.pixel_height / 2;
  auto right = [&](int y, const std::string& text) {
    DrawText(image, image.width - margin - TextWidth(text, style.pixel_height), y, text, style);
  };
  const std::string sex_age = id.sex + (id.age.empty() ? "" : " " + id.age);
  const std::string top_left[] = {id.patient_name, "ID " + id.patient_id,
                                  "DOB " + DicomDateText(id.birth_date) + "  " + sex_age};
  for (int i = 0; i < 3; ++i) DrawText(image, margin, margin + i * line, top_left[i], style);
  right(margin, DicomDateText(id.study_date) + (id.accession_number.empty() ? "" : "  Acc " + id.accession_number));
  right(margin + line, id.study_description);

  std::string where = id.modality + " Se " + id.series_number;
  if (place.count > 0) where += "  Im " + std::to_string(place.position) + "/" + std::to_string(place.count);
  where += "  #" + id.instance_number;
  if (place.frames > 1) where += "  Fr " + std::to_string(place.frame) + "/" + std::to_string(place.frames);
  DrawText(image, margin, image.height - margin - line, where, style);
  char wl[96];
  if (place.window) {
    std::snprintf(wl, sizeof wl, "W %g L %g%s", place.window->width, place.window->center,
                  place.inverted ? "  inv" : "");
  } else {
    std::snprintf(wl, sizeof wl, "colour%s", place.inverted ? "  inv" : "");
  }
  right(image.height - margin - line, wl);

  if (id.orientation) {
    const auto& o = *id.orientation;
    const std::string r = DirectionLetters(o[0], o[1], o[2]), l = DirectionLetters(-o[0], -o[1], -o[2]);
    const std::string b = DirectionLetters(o[3], o[4], o[5]), t = DirectionLetters(-o[3], -o[4], -o[5]);
    TextStyle big = style;
    big.pixel_height = style.pixel_height * 3 / 2;
    big.colour[2] = 64;  // yellow: markers are not identity text
    const int mid_y = image.height / 2 - big.pixel_height / 2;
    DrawText(image, margin, mid_y, l, big);
    DrawText(image, image.width - margin - TextWidth(r, big.pixel_height), mid_y, r, big);
    DrawText(image, image.width / 2 - TextWidth(t, big.pixel_height) / 2, margin + 3 * line, t, big);
    DrawText(image, image.width / 2 - TextWidth(b, big.pixel_height) / 2,
             image.height - margin - line - big.pixel_height - line / 2, b, big);
  }
}

RgbImage WithIdentityBand(const RgbImage& sheet, const ImageIdentity& id, const std::string& detail) {
  TextStyle style;
  style.pixel_height = 16;
  const int line = 20, band = 2 * line + 8;
  RgbImage out(sheet.width, sheet.height + band);
  std::copy(sheet.rgb.begin(), sheet.rgb.end(), out.rgb.begin() + static_cast<std::ptrdiff_t>(band) * sheet.width * 3);
  DrawText(out, 6, 4,
           id.patient_name + "   ID " + id.patient_id + "   DOB " + DicomDateText(id.birth_date) + "  " + id.sex,
           style);
  DrawText(out, 6, 4 + line, DicomDateText(id.study_date) + "  " + id.study_description + "   " + detail, style);
  return out;
}

}  // namespace teleread::viewer
