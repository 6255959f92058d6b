#include "samples/synthetic.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/ofstd/ofchrenc.h"

#include <cmath>

namespace teleread::samples {
namespace {

const char* SopClassFor(const std::string& modality) {
  if (modality == "CT") return UID_CTImageStorage;
  if (modality == "MR") return UID_MRImageStorage;
  if (modality == "CR") return UID_ComputedRadiographyImageStorage;
  if (modality == "DX") return UID_DigitalXRayImageStorageForPresentation;
  if (modality == "US") return UID_UltrasoundImageStorage;
  if (modality == "ECG") return UID_TwelveLeadECGWaveformStorage;
  return UID_SecondaryCaptureImageStorage;
}

Result<std::string> Encode(const std::string& utf8, const std::string& charset) {
  const char* iconv_name = nullptr;
  if (charset == "GB18030")
    iconv_name = "GB18030";
  else if (charset == "ISO_IR 100")
    iconv_name = "ISO-8859-1";
  else if (charset == "GBK")
    iconv_name = "GBK";
  if (!iconv_name) return utf8;  // ISO_IR 192, or plain ASCII
  OFCharacterEncoding enc;
  OFCondition cond = enc.selectEncoding("UTF-8", iconv_name);
  OFString out;
  if (cond.good()) cond = enc.convertString(OFString(utf8.c_str()), out);
  if (cond.bad()) return Status::InvalidArgument("cannot encode text as " + charset + ": " + cond.text());
  return std::string(out.c_str(), out.length());
}

}  // namespace

namespace {

// Ten seconds of a 12-lead resting ECG at 500 Hz (PS3.3 A.34.3): one multiplex group, leads
// coded in SCPECG, a synthetic sinus rhythm at 75/min scaled per lead.
Status AddTwelveLeadWaveform(DcmDataset& ds, const std::string& acquired) {
  struct Lead {
    const char* code;
    const char* name;
    double gain;
  };
  static const Lead leads[] = {
      {"5.6.3-9-1", "Lead I", 0.6},     {"5.6.3-9-2", "Lead II", 1.0},   {"5.6.3-9-61", "Lead III", 0.4},
      {"5.6.3-9-62", "Lead aVR", -0.8}, {"5.6.3-9-63", "Lead aVL", 0.1}, {"5.6.3-9-64", "Lead aVF", 0.7},
      {"5.6.3-9-3", "Lead V1", -0.5},   {"5.6.3-9-4", "Lead V2", 0.3},   {"5.6.3-9-5", "Lead V3", 0.8},
      {"5.6.3-9-6", "Lead V4", 1.2},    {"5.6.3-9-7", "Lead V5", 1.1},   {"5.6.3-9-8", "Lead V6", 0.9}};
  constexpr int kChannels = 12, kSamples = 5000, kRate = 500;
  ds.putAndInsertString(DCM_AcquisitionDateTime, acquired.c_str());
  ds.putAndInsertString(DCM_ContentDate, acquired.substr(0, 8).c_str());
  ds.putAndInsertString(DCM_ContentTime, acquired.substr(8).c_str());
  ds.putAndInsertString(DCM_Manufacturer, "TeleRead samples");
  DcmItem* group = nullptr;
  if (ds.findOrCreateSequenceItem(DCM_WaveformSequence, group, -2).bad()) return Status::IOError("waveform sequence");
  group->putAndInsertString(DCM_MultiplexGroupLabel, "RHYTHM");
  group->putAndInsertString(DCM_WaveformOriginality, "ORIGINAL");
  group->putAndInsertUint16(DCM_NumberOfWaveformChannels, kChannels);
  group->putAndInsertUint32(DCM_NumberOfWaveformSamples, kSamples);
  group->putAndInsertString(DCM_SamplingFrequency, std::to_string(kRate).c_str());
  group->putAndInsertUint16(DCM_WaveformBitsAllocated, 16);
  group->putAndInsertString(DCM_WaveformSampleInterpretation, "SS");
  for (const Lead& lead : leads) {
    DcmItem* ch = nullptr;
    if (group->findOrCreateSequenceItem(DCM_ChannelDefinitionSequence, ch, -2).bad()) return Status::IOError("channel");
    DcmItem* source = nullptr;
    ch->findOrCreateSequenceItem(DCM_ChannelSourceSequence, source, -2);
    source->putAndInsertString(DCM_CodeValue, lead.code);
    source->putAndInsertString(DCM_CodingSchemeDesignator, "SCPECG");
    source->putAndInsertString(DCM_CodingSchemeVersion, "1.3");
    source->putAndInsertString(DCM_CodeMeaning, lead.name);
    ch->putAndInsertString(DCM_ChannelSensitivity, "5");
    DcmItem* units = nullptr;
    ch->findOrCreateSequenceItem(DCM_ChannelSensitivityUnitsSequence, units, -2);
    units->putAndInsertString(DCM_CodeValue, "uV");
    units->putAndInsertString(DCM_CodingSchemeDesignator, "UCUM");
    units->putAndInsertString(DCM_CodeMeaning, "microvolt");
    ch->putAndInsertString(DCM_ChannelSensitivityCorrectionFactor, "1");
    ch->putAndInsertString(DCM_ChannelBaseline, "0");
    ch->putAndInsertString(DCM_ChannelSampleSkew, "0");
    ch->putAndInsertUint16(DCM_WaveformBitsStored, 16);
  }
  // Samples interleaved by channel; each beat a P wave, a QRS spike and a T wave (in 5 uV units).
  std::vector<Sint16> data(static_cast<size_t>(kChannels) * kSamples);
  for (int t = 0; t < kSamples; ++t) {
    const double phase = std::fmod(t / double(kRate), 0.8);  // 75 beats a minute
    const double beat =
        30 * std::exp(-std::pow((phase - 0.10) / 0.02, 2)) + 220 * std::exp(-std::pow((phase - 0.25) / 0.008, 2)) -
        40 * std::exp(-std::pow((phase - 0.27) / 0.01, 2)) + 60 * std::exp(-std::pow((phase - 0.50) / 0.04, 2));
    for (int c = 0; c < kChannels; ++c) {
      data[static_cast<size_t>(t) * kChannels + c] = static_cast<Sint16>(beat * leads[c].gain);
    }
  }
  if (group
          ->putAndInsertUint16Array(DCM_WaveformData, reinterpret_cast<const Uint16*>(data.data()),
                                    static_cast<unsigned long>(data.size()))
          .bad()) {
    return Status::IOError("waveform data");
  }
  return Status::Ok();
}

}  // namespace

std::string NewUid() {
  char uid[100];
  return dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT);
}

Result<std::vector<std::filesystem::path>> WriteSeries(const SeriesSpec& spec, const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create " + dir.string() + ": " + ec.message());
  std::string study_uid = spec.study_instance_uid.empty() ? NewUid() : spec.study_instance_uid;
  std::string series_uid = spec.series_instance_uid.empty() ? NewUid() : spec.series_instance_uid;
  Result<std::string> name = Encode(spec.patient_name, spec.specific_character_set);
  Result<std::string> description = Encode(spec.study_description, spec.specific_character_set);
  Result<std::string> institution = Encode(spec.institution, spec.specific_character_set);
  if (!name.ok()) return name.status();
  if (!description.ok()) return description.status();
  if (!institution.ok()) return institution.status();
  const E_TransferSyntax xfer = DcmXfer(spec.transfer_syntax.c_str()).getXfer();

  std::vector<std::filesystem::path> written;
  std::vector<Uint16> pixels(static_cast<size_t>(spec.rows) * spec.columns);
  for (int n = 1; n <= spec.instances; ++n) {
    DcmFileFormat ff;
    DcmDataset& ds = *ff.getDataset();
    std::string sop_uid = NewUid();
    auto put = [&](const DcmTagKey& tag, const std::string& value) {
      if (!value.empty()) ds.putAndInsertString(tag, value.c_str());
    };
    put(DCM_SpecificCharacterSet, spec.specific_character_set);
    put(DCM_SOPClassUID, SopClassFor(spec.modality));
    put(DCM_SOPInstanceUID, sop_uid);
    put(DCM_StudyInstanceUID, study_uid);
    put(DCM_SeriesInstanceUID, series_uid);
    put(DCM_PatientName, name.value());
    put(DCM_PatientID, spec.patient_id);
    put(DCM_RETIRED_OtherPatientIDs, spec.other_patient_ids);
    put(DCM_PatientBirthDate, spec.birth_date);
    put(DCM_PatientSex, spec.sex);
    put(DCM_PatientAge, spec.age);
    put(DCM_StudyDate, spec.study_date);
    put(DCM_StudyTime, spec.study_time);
    put(DCM_AccessionNumber, spec.accession_number);
    put(DCM_StudyID, "1");
    put(DCM_StudyDescription, description.value());
    put(DCM_SeriesDescription, spec.series_description);
    put(DCM_InstitutionName, institution.value());
    put(DCM_ReferringPhysicianName, spec.referring_physician);
    put(DCM_RequestedProcedurePriority, spec.priority);
    put(DCM_Modality, spec.modality);
    put(DCM_BodyPartExamined, spec.body_part);
    put(DCM_SeriesNumber, std::to_string(spec.series_number));
    put(DCM_InstanceNumber, std::to_string(n));
    if (spec.modality == "ECG") {
      if (Status st = AddTwelveLeadWaveform(ds, spec.study_date + spec.study_time); !st.ok()) return st;
      std::filesystem::path path = dir / ("ECG" + std::to_string(n) + ".dcm");
      OFCondition cond = ff.saveFile(path.c_str(), xfer);
      if (cond.bad()) return Status::IOError("cannot write " + path.string() + ": " + cond.text());
      written.push_back(path);
      continue;
    }
    put(DCM_ImageType, "ORIGINAL\\PRIMARY\\AXIAL");
    put(DCM_PatientOrientation, "L\\P");
    put(DCM_PhotometricInterpretation, "MONOCHROME2");
    put(DCM_ImagePositionPatient, "0\\0\\" + std::to_string(n * 5));
    put(DCM_SliceThickness, "5");
    put(DCM_WindowCenter, "40");
    put(DCM_WindowWidth, "400");
    put(DCM_RescaleIntercept, "-1024");
    put(DCM_RescaleSlope, "1");
    ds.putAndInsertUint16(DCM_SamplesPerPixel, 1);
    ds.putAndInsertUint16(DCM_Rows, static_cast<Uint16>(spec.rows));
    ds.putAndInsertUint16(DCM_Columns, static_cast<Uint16>(spec.columns));
    ds.putAndInsertUint16(DCM_BitsAllocated, 16);
    ds.putAndInsertUint16(DCM_BitsStored, 12);
    ds.putAndInsertUint16(DCM_HighBit, 11);
    ds.putAndInsertUint16(DCM_PixelRepresentation, 0);
    // A body-like disc whose size changes along the series, over a soft gradient.
    const double cx = spec.columns / 2.0, cy = spec.rows / 2.0;
    const double radius = std::min(cx, cy) * (0.6 + 0.3 * std::sin(n * 0.3));
    for (int y = 0; y < spec.rows; ++y) {
      for (int x = 0; x < spec.columns; ++x) {
        double d = std::hypot(x - cx, y - cy);
        double v = d < radius ? 1000 + 60 * std::sin(x * 0.05) * std::cos(y * 0.05) : 24 + y % 8;
        pixels[static_cast<size_t>(y) * spec.columns + x] = static_cast<Uint16>(v);
      }
    }
    ds.putAndInsertUint16Array(DCM_PixelData, pixels.data(), static_cast<unsigned long>(pixels.size()));
    char file_name[32];
    std::snprintf(file_name, sizeof file_name, "IM%05d.dcm", n);
    std::filesystem::path path = dir / file_name;
    OFCondition cond = ff.saveFile(path.c_str(), xfer);
    if (cond.bad()) return Status::IOError("cannot write " + path.string() + ": " + cond.text());
    written.push_back(path);
  }
  return written;
}

Result<std::vector<std::filesystem::path>> WriteConsortium(const std::filesystem::path& dir, int ct_slices) {
  std::vector<SeriesSpec> specs;
  auto add = [&](SeriesSpec s) { specs.push_back(std::move(s)); };
  {
    SeriesSpec s;  // Zhuozhou: urgent chest CT, Chinese name sent in GB18030
    s.patient_name = "张^三";
    s.patient_id = "ZZ100234";
    s.other_patient_ids = "130681197003150012";
    s.sex = "M";
    s.specific_character_set = "GB18030";
    s.study_description = "胸部CT平扫";
    s.institution = "涿州市医院";
    s.priority = "STAT";
    s.accession_number = "ZZ26112001";
    s.body_part = "CHEST";
    s.instances = ct_slices;
    add(s);
  }
  {
    SeriesSpec s;  // Zhuozhou: routine knee X-ray, Latin name
    s.patient_name = "Liu^Yang";
    s.patient_id = "ZZ100871";
    s.sex = "F";
    s.age = "034Y";
    s.modality = "CR";
    s.study_description = "Knee AP/LAT";
    s.institution = "Zhuozhou Hospital";
    s.accession_number = "ZZ26112002";
    s.body_part = "KNEE";
    s.instances = 2;
    s.rows = s.columns = 1024;
    add(s);
  }
  {
    SeriesSpec s;  // Laishui: head MR, Chinese name in UTF-8
    s.patient_name = "李^四";
    s.patient_id = "LS0042";
    s.sex = "F";
    s.age = "061Y";
    s.modality = "MR";
    s.study_description = "头颅MR";
    s.institution = "涞水县医院";
    s.priority = "HIGH";
    s.accession_number = "LS26112001";
    s.body_part = "HEAD";
    s.instances = 12;
    s.rows = s.columns = 256;
    add(s);
  }
  {
    SeriesSpec s;  // Yixian: the Zhuozhou patient again, known here under another local ID
    s.patient_name = "张^三";
    s.patient_id = "YX-77310";
    s.other_patient_ids = "130681197003150012";
    s.sex = "M";
    s.specific_character_set = "ISO_IR 192";
    s.modality = "DX";
    s.study_description = "胸部正位";
    s.institution = "易县医院";
    s.accession_number = "YX26112001";
    s.body_part = "CHEST";
    s.study_date = "20261118";
    s.instances = 1;
    s.rows = s.columns = 1024;
    add(s);
  }
  {
    SeriesSpec s;  // Yixian: abdominal ultrasound, Latin-1 name
    s.patient_name = "Müller^Anna";
    s.patient_id = "YX-80211";
    s.sex = "F";
    s.age = "029Y";
    s.specific_character_set = "ISO_IR 100";
    s.modality = "US";
    s.study_description = "Abdomen US";
    s.institution = "Yixian Hospital";
    s.accession_number = "YX26112002";
    s.body_part = "ABDOMEN";
    s.instances = 3;
    s.rows = 480;
    s.columns = 640;
    add(s);
  }
  {
    SeriesSpec s;  // Laishui: a resting 12-lead ECG, Chinese name in UTF-8
    s.patient_name = "陈^静";
    s.patient_id = "LS300518";
    s.sex = "F";
    s.age = "047Y";
    s.modality = "ECG";
    s.study_description = "静息12导联心电图";
    s.institution = "涞水县医院";
    s.accession_number = "LS26112003";
    s.priority = "HIGH";
    s.study_time = "101500";
    add(s);
  }
  const char* members[] = {"ZZ_PACS", "ZZ_PACS", "LS_PACS", "YX_PACS", "YX_PACS", "LS_PACS"};
  std::vector<std::filesystem::path> all;
  for (size_t i = 0; i < specs.size(); ++i) {
    std::filesystem::path study_dir = dir / members[i] / ("study" + std::to_string(i + 1));
    Result<std::vector<std::filesystem::path>> files = WriteSeries(specs[i], study_dir);
    if (!files.ok()) return files.status();
    all.insert(all.end(), files->begin(), files->end());
  }
  return all;
}

}  // namespace teleread::samples
