#include "viewer/ecg.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcitem.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "common/dicom.h"
#include "viewer/text_raster.h"

namespace teleread::viewer {
namespace {

std::string Str(DcmItem* item, const DcmTagKey& tag) {
  OFString v;
  if (item == nullptr || item->findAndGetOFString(tag, v).bad()) return "";
  return v.c_str();
}

double Num(DcmItem* item, const DcmTagKey& tag, double fallback) {
  Float64 v = 0;
  if (item && item->findAndGetFloat64(tag, v).good() && std::isfinite(v)) return v;
  const std::string s = Str(item, tag);
  if (s.empty()) return fallback;
  char* end = nullptr;
  const double d = std::strtod(s.c_str(), &end);
  return end != s.c_str() && std::isfinite(d) ? d : fallback;
}

std::string CodeMeaning(DcmItem* item, const DcmTagKey& sequence) {
  DcmItem* code = nullptr;
  if (item == nullptr || item->findAndGetSequenceItem(sequence, code, 0).bad()) return "";
  return Str(code, DCM_CodeMeaning);
}

std::string CodeValue(DcmItem* item, const DcmTagKey& sequence) {
  DcmItem* code = nullptr;
  if (item == nullptr || item->findAndGetSequenceItem(sequence, code, 0).bad()) return "";
  return Str(code, DCM_CodeValue);
}

// "Lead II", "II (Einthoven)", "aVR (Goldberger)" -> "II", "aVR".
std::string LeadLabel(std::string meaning) {
  for (const char* prefix : {"Lead ", "lead "}) {
    if (meaning.rfind(prefix, 0) == 0) meaning = meaning.substr(std::string(prefix).size());
  }
  if (const size_t paren = meaning.find(" ("); paren != std::string::npos) meaning.resize(paren);
  return meaning;
}

std::string Number(double v) {
  char s[32];
  std::snprintf(s, sizeof s, "%g", v);
  return s;
}

}  // namespace

bool HasWaveform(const std::filesystem::path& file) {
  Result<std::unique_ptr<DicomFile>> ff = DicomFile::Open(file, 256, false);
  return ff.ok() && ff.value()->dataset().tagExists(DCM_WaveformSequence);
}

Result<EcgWaveform> ReadWaveform(const std::filesystem::path& file) {
  Result<std::unique_ptr<DicomFile>> ff = DicomFile::Open(file, 0, false);
  if (!ff.ok()) return Status::Corruption(file.string() + ": " + ff.status().message());
  DcmDataset& ds = ff.value()->dataset();
  DcmSequenceOfItems* groups = nullptr;
  if (ds.findAndGetSequence(DCM_WaveformSequence, groups).bad() || groups == nullptr || groups->card() == 0) {
    return Status::InvalidArgument(file.filename().string() + " holds no waveform");
  }
  DcmItem* group = nullptr;
  Uint16 most = 0;
  for (unsigned long i = 0; i < groups->card(); ++i) {
    Uint16 n = 0;
    (void)groups->getItem(i)->findAndGetUint16(DCM_NumberOfWaveformChannels, n);
    if (n > most) {
      most = n;
      group = groups->getItem(i);
    }
  }
  Uint32 samples = 0;
  Uint16 bits = 0;
  if (group == nullptr || group->findAndGetUint32(DCM_NumberOfWaveformSamples, samples).bad() ||
      group->findAndGetUint16(DCM_WaveformBitsAllocated, bits).bad() || (bits != 8 && bits != 16)) {
    return Status::Corruption(file.filename().string() + ": the waveform's channels, samples or bits are missing");
  }
  EcgWaveform w;
  w.sampling_hz = Num(group, DCM_SamplingFrequency, 0);
  w.group_label = Str(group, DCM_MultiplexGroupLabel);
  if (w.sampling_hz <= 0) return Status::Corruption(file.filename().string() + ": no sampling frequency");
  const std::string interpretation = Str(group, DCM_WaveformSampleInterpretation);
  DcmElement* data = nullptr;
  if (group->findAndGetElement(DCM_WaveformData, data).bad() || data == nullptr) {
    return Status::Corruption(file.filename().string() + ": no waveform data");
  }
  const size_t total = static_cast<size_t>(most) * samples;
  std::vector<double> raw(total);
  if (bits == 16) {
    Uint16* v = nullptr;
    if (data->getUint16Array(v).bad() || v == nullptr || data->getLength() / 2 < total) {
      return Status::Corruption(file.filename().string() +
                                ": the waveform data is shorter than its channels x samples");
    }
    for (size_t i = 0; i < total; ++i)
      raw[i] = interpretation == "SS" ? double(static_cast<Sint16>(v[i])) : double(v[i]);
  } else {
    Uint8* v = nullptr;
    if (data->getUint8Array(v).bad() || v == nullptr || data->getLength() < total) {
      return Status::Corruption(file.filename().string() +
                                ": the waveform data is shorter than its channels x samples");
    }
    for (size_t i = 0; i < total; ++i)
      raw[i] = interpretation == "SB" ? double(static_cast<Sint8>(v[i])) : double(v[i]);
  }
  DcmSequenceOfItems* defs = nullptr;
  (void)group->findAndGetSequence(DCM_ChannelDefinitionSequence, defs);
  for (Uint16 c = 0; c < most; ++c) {
    DcmItem* def = defs && c < defs->card() ? defs->getItem(c) : nullptr;
    EcgChannel ch;
    ch.label = LeadLabel(CodeMeaning(def, DCM_ChannelSourceSequence));
    if (ch.label.empty()) ch.label = Str(def, DCM_ChannelLabel);
    if (ch.label.empty()) ch.label = "ch " + std::to_string(c + 1);
    // PS3.3 C.10.9.1.4.3: value = (sample + baseline) x sensitivity x correction, in the units' code.
    const double sensitivity =
        Num(def, DCM_ChannelSensitivity, 1) * Num(def, DCM_ChannelSensitivityCorrectionFactor, 1);
    const double baseline = Num(def, DCM_ChannelBaseline, 0);
    std::string units = CodeValue(def, DCM_ChannelSensitivityUnitsSequence);
    double factor = 1;
    if (units == "uV") factor = 1e-3;
    if (units == "V") factor = 1e3;
    if (units == "uV" || units == "mV" || units == "V") units = "mV";
    ch.units = units.empty() ? "mV" : units;
    ch.values.resize(samples);
    for (Uint32 t = 0; t < samples; ++t)
      ch.values[t] = (raw[static_cast<size_t>(t) * most + c] + baseline) * sensitivity * factor;
    if (w.filters.empty() && def) {
      const double low = Num(def, DCM_FilterLowFrequency, -1), high = Num(def, DCM_FilterHighFrequency, -1);
      const double notch = Num(def, DCM_NotchFilterFrequency, -1);
      if (low >= 0 || high >= 0)
        w.filters = (low >= 0 ? Number(low) : "?") + "-" + (high >= 0 ? Number(high) : "?") + " Hz";
      if (notch > 0) w.filters += (w.filters.empty() ? "" : ", ") + std::string("notch ") + Number(notch) + " Hz";
    }
    w.channels.push_back(std::move(ch));
  }
  // Measurements and free-text notes the device made.
  DcmSequenceOfItems* notes = nullptr;
  if (ds.findAndGetSequence(DCM_WaveformAnnotationSequence, notes).good() && notes) {
    for (unsigned long i = 0; i < notes->card() && w.annotations.size() < 12; ++i) {
      DcmItem* a = notes->getItem(i);
      std::string text = Str(a, DCM_UnformattedTextValue);
      if (text.empty()) {
        const std::string name = CodeMeaning(a, DCM_ConceptNameCodeSequence);
        const std::string value = Str(a, DCM_NumericValue);
        if (name.empty() || value.empty()) continue;
        const std::string unit = CodeValue(a, DCM_MeasurementUnitsCodeSequence);
        text = name + " " + value + (unit.empty() ? "" : " " + unit);
      }
      if (std::find(w.annotations.begin(), w.annotations.end(), text) == w.annotations.end())
        w.annotations.push_back(text);
    }
  }
  return w;
}

namespace {

void Fill(RgbImage& img, int x0, int y0, int x1, int y1, const uint8_t* c) {
  for (int y = std::max(0, y0); y < std::min(img.height, y1); ++y) {
    for (int x = std::max(0, x0); x < std::min(img.width, x1); ++x) std::copy_n(c, 3, img.At(x, y));
  }
}

// A line of `thick` pixels from (x0, y0) to (x1, y1).
void Line(RgbImage& img, double x0, double y0, double x1, double y1, int thick, const uint8_t* c) {
  const int steps = std::max(1, static_cast<int>(std::ceil(std::max(std::fabs(x1 - x0), std::fabs(y1 - y0)))));
  for (int i = 0; i <= steps; ++i) {
    const double t = static_cast<double>(i) / steps;
    const int x = static_cast<int>(std::lround(x0 + (x1 - x0) * t)),
              y = static_cast<int>(std::lround(y0 + (y1 - y0) * t));
    Fill(img, x - thick / 2, y - thick / 2, x - thick / 2 + thick, y - thick / 2 + thick, c);
  }
}

}  // namespace

EcgPaper DrawEcgPaper(const EcgWaveform& ecg, const ImageIdentity& id, double px_per_mm) {
  static const uint8_t kPaper[3] = {255, 246, 246}, kMinor[3] = {247, 196, 196}, kMajor[3] = {226, 120, 120},
                       kInk[3] = {0, 0, 0};
  static const char* kStandard[] = {"I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"};
  std::map<std::string, int> by_label;
  for (size_t i = 0; i < ecg.channels.size(); ++i) by_label.emplace(ecg.channels[i].label, static_cast<int>(i));
  bool twelve = true;
  for (const char* l : kStandard) twelve &= by_label.count(l) == 1;

  const double mm = px_per_mm;
  const double header_mm = 24, left_mm = 10, row_mm = 30, width_mm = 265;
  const int rows = twelve ? 4 : static_cast<int>(std::max<size_t>(1, ecg.channels.size()));
  const double height_mm = header_mm + rows * row_mm + 6;
  EcgPaper paper;
  paper.px_per_mm = mm;
  RgbImage& img = paper.image = RgbImage(static_cast<int>(width_mm * mm), static_cast<int>(height_mm * mm));
  Fill(img, 0, 0, img.width, img.height, kPaper);
  const int grid_top = static_cast<int>(header_mm * mm);
  for (int k = 0; k * mm < img.width; ++k) {
    Fill(img, static_cast<int>(k * mm), grid_top, static_cast<int>(k * mm) + 1, img.height, k % 5 ? kMinor : kMajor);
  }
  for (int k = 0; grid_top + k * mm < img.height; ++k) {
    const int y = grid_top + static_cast<int>(k * mm);
    Fill(img, 0, y, img.width, y + 1, k % 5 ? kMinor : kMajor);
  }

  TextStyle text;
  text.pixel_height = static_cast<int>(3.4 * mm);
  text.shadow = false;
  for (int c = 0; c < 3; ++c) text.colour[c] = 0;
  const int line = static_cast<int>(4.4 * mm);
  DrawText(img, static_cast<int>(2 * mm), static_cast<int>(1 * mm),
           id.patient_name + "   ID " + id.patient_id + "   DOB " + DicomDateText(id.birth_date) + "  " + id.sex, text);
  std::string settings = "25 mm/s   10 mm/mV   " + Number(ecg.sampling_hz) + " Hz";
  if (!ecg.filters.empty()) settings += "   filter " + ecg.filters;
  DrawText(img, static_cast<int>(2 * mm), static_cast<int>(1 * mm) + line,
           DicomDateText(id.study_date) + "  " + id.study_description + "   " + settings, text);
  // Measurements and statements, wrapped over the header's last two lines.
  std::string notes;
  int note_line = 2;
  for (const std::string& a : ecg.annotations) {
    const std::string longer = notes + (notes.empty() ? "" : "   ") + a;
    if (!notes.empty() && TextWidth(longer, text.pixel_height) > img.width - static_cast<int>(4 * mm) &&
        note_line < 3) {
      DrawText(img, static_cast<int>(2 * mm), static_cast<int>(1 * mm) + note_line++ * line, notes, text);
      notes = a;
    } else {
      notes = longer;
    }
  }
  if (!notes.empty()) DrawText(img, static_cast<int>(2 * mm), static_cast<int>(1 * mm) + note_line * line, notes, text);

  const double px_per_s = 25 * mm, px_per_mv = 10 * mm;
  const int thick = std::max(1, static_cast<int>(std::lround(mm / 3)));
  auto trace = [&](int channel, double start_s, double seconds, int x0, int baseline, const std::string& label) {
    const EcgChannel& ch = ecg.channels[static_cast<size_t>(channel)];
    double scale = px_per_mv;
    if (ch.units != "mV") {  // pressures and the like: fit the row, the scale printed
      double peak = 1e-9;
      for (double v : ch.values) peak = std::max(peak, std::fabs(v));
      scale = row_mm * mm * 0.45 / peak;
    }
    const size_t first = static_cast<size_t>(std::lround(start_s * ecg.sampling_hz));
    const size_t count = std::min(ch.values.size() - std::min(first, ch.values.size()),
                                  static_cast<size_t>(std::lround(seconds * ecg.sampling_hz)));
    for (size_t i = 1; i < count; ++i) {
      Line(img, x0 + (i - 1) * px_per_s / ecg.sampling_hz, baseline - ch.values[first + i - 1] * scale,
           x0 + i * px_per_s / ecg.sampling_hz, baseline - ch.values[first + i] * scale, thick, kInk);
    }
    DrawText(img, x0 + static_cast<int>(1 * mm), baseline - static_cast<int>(16 * mm),
             label + (ch.units == "mV" ? "" : " (" + ch.units + ")"), text);
    paper.segments.push_back({ch.label, channel, start_s, seconds, x0, baseline});
  };
  // 1 mV for 0.2 s: 10 mm tall, 5 mm wide.
  auto calibration = [&](int baseline) {
    const double x = 2 * mm;
    Line(img, x, baseline, x + 1 * mm, baseline, thick, kInk);
    Line(img, x + 1 * mm, baseline, x + 1 * mm, baseline - px_per_mv, thick, kInk);
    Line(img, x + 1 * mm, baseline - px_per_mv, x + 6 * mm, baseline - px_per_mv, thick, kInk);
    Line(img, x + 6 * mm, baseline - px_per_mv, x + 6 * mm, baseline, thick, kInk);
    Line(img, x + 6 * mm, baseline, x + 7 * mm, baseline, thick, kInk);
  };
  if (ecg.channels.empty()) return paper;
  const int x_start = static_cast<int>(left_mm * mm);
  for (int r = 0; r < rows; ++r) {
    const int baseline = grid_top + static_cast<int>((r * row_mm + row_mm * 0.6) * mm);
    calibration(baseline);
    if (twelve && r < 3) {
      for (int c = 0; c < 4; ++c) {
        const int x0 = x_start + static_cast<int>(c * 2.5 * px_per_s);
        if (c > 0) Line(img, x0, baseline - 3 * mm, x0, baseline + 3 * mm, thick, kInk);  // the lead change
        const std::string label = kStandard[c * 3 + r];
        trace(by_label[label], c * 2.5, 2.5, x0, baseline, label);
      }
    } else if (twelve) {
      trace(by_label["II"], 0, 10, x_start, baseline, "II (rhythm)");
    } else {
      trace(r, 0, 10, x_start, baseline, ecg.channels[static_cast<size_t>(r)].label);
    }
  }
  return paper;
}

}  // namespace teleread::viewer
