// Every kind of object the centre accepts, through the server and `teleread view`: JPEG 2000,
// a real 12-lead ECG, SR documents, an encapsulated PDF, a contact sheet with an undecodable
// image, and a Japanese patient (ISO 2022 IR 87) named everywhere and reportable. Public files
// from pydicom's corpus (Debian python3-pydicom) where they exist; without them, SKIPPED.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcpixel.h"
#include "dcmtk/dcmdata/dcpixseq.h"
#include "dcmtk/dcmdata/dcpxitem.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmdata/dcxfer.h"

#include <fstream>
#include <iostream>
#include <thread>

#include "samples/synthetic.h"
#include "tests/support/scu.h"
#include "tests/support/server_fixture.h"
#include "viewer/render.h"

using namespace teleread::test;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

const fs::path kPydicom = "/usr/lib/python3/dist-packages/pydicom/data";

[[noreturn]] void Skip(const std::string& why) {
  std::cout << "SKIPPED: " << why << std::endl;
  std::exit(77);
}

fs::path PublicFile(const std::string& relative) {
  const fs::path p = kPydicom / relative;
  if (!fs::exists(p)) Skip(p.string() + " is missing: apt-get install python3-pydicom");
  return p;
}

std::string StudyOf(const fs::path& file) {
  DcmFileFormat ff;
  REQUIRE(ff.loadFile(file.c_str()).good());
  OFString uid;
  ff.getDataset()->findAndGetOFString(DCM_StudyInstanceUID, uid);
  return uid.c_str();
}

class ObjectsFixture {
 public:
  ObjectsFixture() : server_(dir_.path() / "server") {
    server_.Start();
    WriteFile(dir_.path() / "wang.li.toml", "server = \"https://127.0.0.1:" + std::to_string(server_.https_port()) +
                                                "\"\n" + "certificate = \"" + (server_.pki() / "wang.li.pem").string() +
                                                "\"\n" + "key = \"" + (server_.pki() / "wang.li.key").string() +
                                                "\"\n" + "ca = \"" + (server_.pki() / "ca.pem").string() + "\"\n");
  }
  CommandResult Cli(std::vector<std::string> args) {
    args.insert(args.begin(), {"/usr/bin/env", "XDG_CACHE_HOME=" + (dir_.path() / "cache").string(), TELEREAD_CLI_BIN,
                               "--profile", (dir_.path() / "wang.li.toml").string()});
    return RunCommand(args);
  }
  // Sends the files as Zhuozhou, each on a context of its own transfer syntax alone (storescu
  // would also propose a native one, which the centre prefers, then fail to convert JPEG 2000);
  // returns the study UID of the first.
  std::string Push(const std::vector<fs::path>& files) {
    for (const fs::path& f : files) {
      DcmFileFormat ff;
      REQUIRE(ff.loadFile(f.c_str()).good());
      DcmDataset& ds = *ff.getDataset();
      ds.loadAllDataIntoMemory();
      OFString cls;
      ds.findAndGetOFString(DCM_SOPClassUID, cls);
      const std::string ts = DcmXfer(ds.getOriginalXfer()).getXferID();
      TestScu scu(server_.port(), "ZZ_PACS", {cls.c_str()}, {ts});
      REQUIRE(scu.Connect() == "");
      INFO(f.string() + " in " + ts);
      REQUIRE(scu.Store(ds, cls.c_str()) == 0);
      scu.Release();
    }
    return StudyOf(files.front());
  }

 protected:
  ScratchDir dir_;
  TestServer server_;
};

}  // namespace

TEST_CASE_METHOD(ObjectsFixture, "view decodes JPEG 2000 and shows a real ECG, SR documents and a PDF",
                 "[view][objects]") {
  const std::string j2k = Push({PublicFile("test_files/JPEG2000.dcm")});
  const fs::path png = dir_.path() / "j2k.png";
  CommandResult image = Cli({"view", j2k, "--out", png.string()});
  INFO(image.output);
  CHECK(image.exit_code == 0);
  CHECK_THAT(image.output, Catch::Contains("wrote " + png.string()));
  CHECK(image.output.find("Missing attribute") == std::string::npos);  // DCMTK's old failure, and no noise
  CHECK(teleread::viewer::ReadPng(png).ok());

  const std::string ecg = Push({PublicFile("test_files/waveform_ecg.dcm")});
  const fs::path paper = dir_.path() / "ecg.png";
  CommandResult waveform = Cli({"view", ecg, "--out", paper.string()});
  INFO(waveform.output);
  CHECK(waveform.exit_code == 0);
  CHECK_THAT(waveform.output,
             Catch::Contains("TwelveLeadECGWaveformStorage, 12 channels at 1000 Hz, 25 mm/s 10 mm/mV"));
  teleread::Result<teleread::viewer::RgbImage> drawn = teleread::viewer::ReadPng(paper);
  REQUIRE(drawn.ok());
  CHECK(drawn->width == 265 * 5);

  const std::string sr = Push({PublicFile("test_files/test-SR.dcm")});
  CommandResult text = Cli({"view", sr});
  INFO(text.output);
  CHECK(text.exit_code == 0);
  // Its content tree, the Latin-1 name of its observer in UTF-8.
  CHECK_THAT(text.output, Catch::Contains("Comprehensive SR Document") && Catch::Contains("Riesmeier^Jörg") &&
                              Catch::Contains("<contains TEXT:(,,\"Text Code\")=\"A mass of\">"));

  // An encapsulated PDF is saved as the PDF it carries.
  DcmFileFormat ff;
  DcmDataset& ds = *ff.getDataset();
  const std::string pdf_bytes = "%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";
  const std::string pdf_study = teleread::samples::NewUid();
  ds.putAndInsertString(DCM_SOPClassUID, UID_EncapsulatedPDFStorage);
  ds.putAndInsertString(DCM_SOPInstanceUID, teleread::samples::NewUid().c_str());
  ds.putAndInsertString(DCM_StudyInstanceUID, pdf_study.c_str());
  ds.putAndInsertString(DCM_SeriesInstanceUID, teleread::samples::NewUid().c_str());
  ds.putAndInsertString(DCM_PatientID, "ZZ-PDF");
  ds.putAndInsertString(DCM_PatientName, "Pdf^Patient");
  ds.putAndInsertString(DCM_Modality, "DOC");
  ds.putAndInsertString(DCM_MIMETypeOfEncapsulatedDocument, "application/pdf");
  ds.putAndInsertUint8Array(DCM_EncapsulatedDocument, reinterpret_cast<const Uint8*>(pdf_bytes.data()),
                            static_cast<unsigned long>(pdf_bytes.size()));
  const fs::path pdf = dir_.path() / "pdf.dcm";
  REQUIRE(ff.saveFile(pdf.c_str(), EXS_LittleEndianExplicit).good());
  Push({pdf});
  CommandResult saved = Cli({"view", pdf_study, "--out", (dir_.path() / "docs").string()});
  INFO(saved.output);
  CHECK(saved.exit_code == 0);
  CHECK_THAT(saved.output, Catch::Contains("the document is saved as " + (dir_.path() / "docs").string()));
  fs::path written;
  for (const auto& e : fs::directory_iterator(dir_.path() / "docs")) written = e.path();
  REQUIRE(written.extension() == ".pdf");
  std::ifstream in(written, std::ios::binary);
  const std::string back((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(back == pdf_bytes);
}

TEST_CASE_METHOD(ObjectsFixture, "a contact sheet with an undecodable image still renders, the tile marked",
                 "[view][objects]") {
  teleread::samples::SeriesSpec spec;
  spec.patient_name = "Sheet^Test";
  spec.patient_id = "ZZ-SHEET";
  spec.instances = 3;
  spec.rows = spec.columns = 128;
  teleread::Result<std::vector<fs::path>> files = teleread::samples::WriteSeries(spec, dir_.path() / "sheet");
  REQUIRE(files.ok());
  // Instance 2 becomes JPEG 2000 whose code stream is garbage.
  DcmFileFormat ff;
  REQUIRE(ff.loadFile(files.value()[1].c_str()).good());
  DcmDataset& ds = *ff.getDataset();
  ds.loadAllDataIntoMemory();  // saved over the file it was read from
  ds.findAndDeleteElement(DCM_PixelData);
  auto* seq = new DcmPixelSequence(DCM_PixelSequenceTag);
  seq->insert(new DcmPixelItem(DCM_PixelItemTag));  // an empty offset table
  auto* fragment = new DcmPixelItem(DCM_PixelItemTag);
  std::vector<Uint8> garbage(1000);
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<Uint8>(i * 37 + 11);
  fragment->putUint8Array(garbage.data(), static_cast<unsigned long>(garbage.size()));
  seq->insert(fragment);
  auto* pixels = new DcmPixelData(DCM_PixelData);
  pixels->putOriginalRepresentation(EXS_JPEG2000LosslessOnly, nullptr, seq);
  ds.insert(pixels, true);
  REQUIRE(ff.saveFile(files.value()[1].c_str(), EXS_JPEG2000LosslessOnly).good());
  const std::string study = Push(files.value());

  const fs::path sheet = dir_.path() / "sheet.png";
  CommandResult r = Cli({"view", study, "--sheet", sheet.string()});
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.output, Catch::Contains("3 images in a 2x2 grid") && Catch::Contains("1 marked undecodable") &&
                           Catch::Contains("is marked on the sheet") && Catch::Contains("OpenJPEG cannot decode"));
  teleread::Result<teleread::viewer::RgbImage> png = teleread::viewer::ReadPng(sheet);
  REQUIRE(png.ok());
  // The marked tile (top right) is dark red, not black.
  const uint8_t* p = png->At(256 + 20, 48 + 200);
  CHECK(p[0] == 90);
  CHECK(p[1] == 0);
}

TEST_CASE_METHOD(ObjectsFixture, "a Japanese patient (ISO 2022 IR 87) is named everywhere and reportable",
                 "[view][identity]") {
  teleread::samples::SeriesSpec spec;
  spec.patient_name = "Yamada^Tarou";
  spec.patient_id = "ZZ-JP-1";
  spec.rows = spec.columns = 128;
  spec.study_description = "Chest CT";
  teleread::Result<std::vector<fs::path>> files = teleread::samples::WriteSeries(spec, dir_.path() / "jp");
  REQUIRE(files.ok());
  DcmFileFormat ff;
  REQUIRE(ff.loadFile(files->front().c_str()).good());
  DcmDataset& ds = *ff.getDataset();
  ds.loadAllDataIntoMemory();  // saved over the file it was read from
  // PS3.5 H.3.1: Yamada^Tarou=山田^太郎=やまだ^たろう
  ds.putAndInsertString(DCM_SpecificCharacterSet, "\\ISO 2022 IR 87");
  ds.putAndInsertString(DCM_PatientName,
                        "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B");
  REQUIRE(ff.saveFile(files->front().c_str(), EXS_LittleEndianExplicit).good());
  const std::string study = Push(files.value());
  const std::string name = "Yamada^Tarou=山田^太郎=やまだ^たろう";

  CommandResult show;
  for (int i = 0; i < 100; ++i) {  // the index has it once the store is acknowledged
    show = Cli({"show", study});
    if (show.exit_code == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  INFO(show.output);
  CHECK_THAT(show.output, Catch::StartsWith(name + "   ID ZZ-JP-1"));
  const fs::path png = dir_.path() / "jp.png";
  CommandResult view = Cli({"--json", "view", study, "--out", png.string()});
  INFO(view.output);
  REQUIRE(view.exit_code == 0);
  CHECK(json::parse(view.output)["patient"]["name"] == name);
  // The report of such a study: its text converts (it failed with "Cannot open character encoding").
  const fs::path text = dir_.path() / "report.txt";
  WriteFile(text, "Findings:\n異常なし。\nImpression:\n正常。\n");
  CommandResult report =
      Cli({"report", "new", study, "--file", text.string(), "--out", (dir_.path() / "r.dcm").string()});
  INFO(report.output);
  CHECK(report.exit_code == 0);
  CHECK_THAT(report.output, Catch::StartsWith("report for " + name + " (ID ZZ-JP-1"));
  CHECK(fs::exists(dir_.path() / "r.dcm"));
}
