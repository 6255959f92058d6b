#pragma once
// Burned-in annotation of rendered images: who the patient is, which study, series, instance
// and frame, the window, and the patient's directions at the image edges. A PNG that leaves the
// workstation names its patient, as film always did.
//
// Threads: any; the functions work on their arguments only.
#include <array>
#include <filesystem>
#include <optional>
#include <string>

#include "common/status.h"
#include "viewer/render.h"

namespace teleread::viewer {

// The identifying attributes of one object, text in UTF-8 (decoded from its Specific Character
// Set, names as stored: "张^三", "Yamada^Tarou=山田^太郎").
struct ImageIdentity {
  std::string patient_name, patient_id, birth_date, sex, age;
  std::string study_date, study_description, accession_number;
  std::string modality, series_number, series_description, instance_number;
  std::optional<std::array<double, 6>> orientation;  // Image Orientation (Patient): row, column cosines
  double frame_time_ms = 0;  // cine: Frame Time, else from Cine Rate or Recommended Display Frame Rate; 0 unknown
};

// Reads the identity of `file` (values only, no pixel data). Corruption when unreadable.
Result<ImageIdentity> ReadImageIdentity(const std::filesystem::path& file);

// Where the image sits in what is being read.
struct OverlayPlace {
  int position = 0, count = 0;  // 1-based position in the series; 0: not shown
  int frame = 1, frames = 1;    // 1-based
  std::optional<Window> window;
  bool inverted = false;
};

// The patient's direction a unit vector in LPS coordinates points to, strongest axis first:
// "L", "R", "A", "P", "H", "F", or two letters for an oblique direction ("LA"); "" for a zero vector.
std::string DirectionLetters(double x, double y, double z);

// Four corners of text (patient, ID, birth date and sex; study date and description; series,
// instance and frame; window) and, where the orientation is known, markers at the middle of each
// edge. Text height follows the image size.
void BurnOverlay(RgbImage& image, const ImageIdentity& id, const OverlayPlace& place);

// `sheet` with a band above it naming the patient and the study, and `detail` (series, window).
RgbImage WithIdentityBand(const RgbImage& sheet, const ImageIdentity& id, const std::string& detail);

// "20261120" -> "2026-11-20"; anything else unchanged.
std::string DicomDateText(const std::string& da);

}  // namespace teleread::viewer
