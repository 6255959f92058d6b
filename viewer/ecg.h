#pragma once
// Waveform objects (12-lead, General and Ambulatory ECG, Hemodynamic) drawn as ECG paper: 25 mm/s,
// 10 mm/mV on a 1 mm / 5 mm grid, the 3x4 layout of the twelve standard leads with a rhythm strip
// of lead II below, a 1 mV calibration pulse at the start of every row, the file's sampling and
// filter settings and its annotations (heart rate, PR, QRS, QT... where the file has them).
// Other channel sets are drawn one strip per channel.
//
// Threads: any; the functions work on their arguments only.
#include <filesystem>
#include <string>
#include <vector>

#include "common/status.h"
#include "viewer/overlay.h"
#include "viewer/render.h"

namespace teleread::viewer {

struct EcgChannel {
  std::string label;           // "I", "II", "aVR", "V1", ... or the source's code meaning
  std::string units;           // "mV" after conversion of uV/mV/V; otherwise as stored (e.g. "mm[Hg]")
  std::vector<double> values;  // in `units`
};

struct EcgWaveform {
  double sampling_hz = 0;
  std::string group_label;
  std::vector<EcgChannel> channels;
  std::string filters;                   // "0.05-150 Hz, notch 50 Hz"; empty when not stated
  std::vector<std::string> annotations;  // "Heart rate 75 /min", free text, ...
};

// The first multiplex group of a waveform object (the one with most channels when there are
// several). InvalidArgument when the object has no waveform; Corruption when it is malformed.
Result<EcgWaveform> ReadWaveform(const std::filesystem::path& file);

// Whether the file holds a Waveform Sequence (cheap check, values not loaded).
bool HasWaveform(const std::filesystem::path& file);

struct EcgPaper {
  RgbImage image;
  double px_per_mm = 0;
  // Where each drawn segment's zero line and first sample are, to check the drawing against
  // the values: one per lead box (3x4 layout) or strip, and the rhythm strip last.
  struct Segment {
    std::string label;
    int channel = 0;
    double start_s = 0, seconds = 0;
    int x0 = 0, baseline_y = 0;
  };
  std::vector<Segment> segments;
};

// Draws the waveform on paper at `px_per_mm` (5: 0.2 mm a pixel). Identity goes in the header.
EcgPaper DrawEcgPaper(const EcgWaveform& ecg, const ImageIdentity& id, double px_per_mm = 5);

}  // namespace teleread::viewer
