// The fuzz targets' inputs replayed in the ordinary test builds: every crash the fuzzers found,
// named after it, and the seed corpora and saved crashes through every entry point. Also the
// (hidden) generator of the binary seeds and fixture data. See docs/fuzzing.md.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcsequen.h"

#include "samples/synthetic.h"
#include "server/pki/pki.h"
#include "tests/fuzz/targets.h"
#include "tests/support/reports.h"

using namespace teleread;
namespace fs = std::filesystem;

namespace {

const char* const kTargets[] = {"fuzz_dataset_summary", "fuzz_charset", "fuzz_report", "fuzz_http_request",
                                "fuzz_query_identifier"};

std::string Saved(const std::string& target, const std::string& name) {
  return test::ReadFile(fuzz::FuzzDir() / "regressions" / target / name);
}

fuzz::HttpTarget& Http() {
  static fuzz::HttpTarget target;
  return target;
}

std::vector<fs::path> FilesOf(const std::string& target) {
  std::vector<fs::path> files;
  for (const char* kind : {"corpus", "regressions"}) {
    const fs::path dir = fuzz::FuzzDir() / kind / target;
    if (!fs::is_directory(dir)) continue;
    for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

TEST_CASE("fuzz corpora and saved crashes replay through every entry point", "[fuzz]") {
  fuzz::QuietLogging();  // thousands of refusals; ctest runs each test case in a process of its own
  size_t replayed = 0;
  for (const char* target : kTargets) {
    for (const fs::path& file : FilesOf(target)) {
      INFO(file.string());
      const std::string bytes = test::ReadFile(file);
      (void)fuzz::DatasetSummary(bytes);
      CHECK(fuzz::Charset(bytes).broken == "");
      (void)fuzz::Report(bytes);
      CHECK_NOTHROW(Http().Exchange(bytes));
      CHECK(fuzz::QueryIdentifier(bytes) == "");
      ++replayed;
    }
  }
  CHECK(replayed >= 40);
}

TEST_CASE("fuzz seeds reach the deep paths they were made for", "[fuzz]") {
  const fs::path corpus = fuzz::FuzzDir() / "corpus";
  SECTION("a GB18030 object is summarised in UTF-8") {
    Result<InstanceSummary> s =
        fuzz::DatasetSummary(test::ReadFile(corpus / "fuzz_dataset_summary" / "ct-gb18030.dcm"));
    REQUIRE(s.ok());
    CHECK(s->patient_name == "张^三");
  }
  SECTION("the signed report verifies against the fixture CA") {
    fuzz::ReportOutcome r = fuzz::Report(test::ReadFile(corpus / "fuzz_report" / "signed.dcm"));
    REQUIRE(r.report.ok());
    INFO(r.signer.status().ToString());
    REQUIRE(r.signer.ok());
    CHECK(r.signer->common_name == "wang.li");
  }
  SECTION("the report submission is accepted (or, replayed, recognised as re-sent)") {
    std::vector<HttpResponse> answers = Http().Exchange(test::ReadFile(corpus / "fuzz_http_request" / "post-report"));
    REQUIRE(answers.size() == 1);
    INFO(answers[0].body);
    CHECK((answers[0].status == 201 || answers[0].status == 200));
  }
  SECTION("pipelined requests are all answered") {
    std::vector<HttpResponse> answers = Http().Exchange(test::ReadFile(corpus / "fuzz_http_request" / "pipelined"));
    REQUIRE(answers.size() == 3);
    for (const HttpResponse& a : answers) CHECK(a.status == 200);
  }
}

TEST_CASE("fuzz regression: charset value padded with NULs decodes as it encodes", "[fuzz]") {
  // "\0\0\0\0\0\0\0\n\x7fI": EncodeFromUtf8 trimmed the value to the default repertoire,
  // DecodeToUtf8 refused it as unsupported.
  fuzz::CharsetOutcome out = fuzz::Charset(Saved("fuzz_charset", "nul-padded-charset-value"));
  CHECK(out.broken == "");
  Result<std::string> padded = DecodeToUtf8(std::string(7, '\0'), "\x7fI");
  REQUIRE(padded.ok());
  CHECK(padded.value() == "\x7fI");
  Result<std::string> latin = DecodeToUtf8("ISO_IR 100 ", "M\xfcller");
  REQUIRE(latin.ok());
  CHECK(latin.value() == "Müller");
}

TEST_CASE("fuzz regression: http study UID that is not UTF-8", "[fuzz]") {
  // GET /api/v1/studies/1.2.2\xd476.../priors: the UID went into the JSON answer, and
  // nlohmann::json's dump threw on the byte (a 500 from the transport).
  std::vector<HttpResponse> answers = Http().Exchange(Saved("fuzz_http_request", "non-utf8-study-uid-in-path"));
  REQUIRE(answers.size() == 1);
  CHECK(answers[0].status == 200);
  const nlohmann::json body = nlohmann::json::parse(answers[0].body);
  CHECK_THAT(body["study_instance_uid"].get<std::string>(), Catch::Contains("\xEF\xBF\xBD"));  // U+FFFD
  CHECK(body["priors"].empty());
}

TEST_CASE("fuzz regression: http percent sign not followed by two hex digits", "[fuzz]") {
  // A path segment "...%\xff\xff...": std::stoi threw std::invalid_argument (a 500).
  std::vector<HttpResponse> answers = Http().Exchange(Saved("fuzz_http_request", "percent-not-followed-by-hex"));
  REQUIRE(answers.size() == 1);
  CHECK(answers[0].status == 404);
  const std::string get = std::string(1, '\0') + "GET /api/v1/studies/%zz%4 HTTP/1.1\r\nHost: t\r\n\r\n";
  answers = Http().Exchange(get);
  REQUIRE(answers.size() == 1);
  CHECK(answers[0].status == 404);
  CHECK_THAT(answers[0].body, Catch::Contains("no study %zz%4"));
  answers = Http().Exchange(std::string(1, '\0') + "GET /api/v1/%77ho%61mi HTTP/1.1\r\nHost: t\r\n\r\n");
  REQUIRE(answers.size() == 1);
  CHECK(answers[0].status == 200);  // escapes still decode: /api/v1/whoami
}

TEST_CASE("fuzz regression: dataset summary of a deflated element claiming 3 GB", "[fuzz]") {
  // A 771-byte deflated CT whose element claims 0xE055CF54 bytes: DCMTK cannot leave a deflated
  // value on disk and allocated all of it (libFuzzer's out-of-memory at malloc(3763618132)).
  Result<InstanceSummary> s = fuzz::DatasetSummary(Saved("fuzz_dataset_summary", "deflated-element-claims-3-gb"));
  REQUIRE_FALSE(s.ok());
  CHECK(s.status().code() == Status::Code::kCorruption);
  CHECK_THAT(s.status().message(), Catch::Contains("longer than the data set"));
  // Deflated objects are still read, and their nesting is now checked like any other's.
  const fs::path corpus = fuzz::FuzzDir() / "corpus" / "fuzz_dataset_summary";
  Result<InstanceSummary> deflated = fuzz::DatasetSummary(test::ReadFile(corpus / "ct-deflated.dcm"));
  REQUIRE(deflated.ok());
  CHECK(deflated->patient_name == "张^三");
  Result<InstanceSummary> deep = fuzz::DatasetSummary(test::ReadFile(corpus / "nested-130-deflated.dcm"));
  REQUIRE_FALSE(deep.ok());
  CHECK_THAT(deep.status().message(), Catch::Contains("nested deeper than 128"));
}

TEST_CASE("fuzz regression: dataset summary of a deflated object whose meta header has a foreign group", "[fuzz]") {
  // After the first fix: (0002,0003) mutated to (0202,0003). Our meta scan stopped there and
  // never saw the deflated transfer syntax; DCMTK reads as far as (0002,0000) says, so it
  // inflated the data set and allocated the 3 GB an element claimed.
  Result<InstanceSummary> s = fuzz::DatasetSummary(Saved("fuzz_dataset_summary", "deflated-meta-with-foreign-group"));
  REQUIRE_FALSE(s.ok());
  CHECK(s.status().code() == Status::Code::kCorruption);
}

TEST_CASE("fuzz regression: dataset summary of a deflated element with an unknown VR", "[fuzz]") {
  // After the second fix: Study Description's VR mutated from LO to "LC". DCMTK reads a VR it
  // does not know but spelt in capitals with a 4-byte length (3 GB here), our scan read 2 bytes.
  Result<InstanceSummary> s = fuzz::DatasetSummary(Saved("fuzz_dataset_summary", "deflated-unknown-vr-long-length"));
  REQUIRE_FALSE(s.ok());
  CHECK(s.status().code() == Status::Code::kCorruption);
}

TEST_CASE("fuzz regression: report whose element claims 4 GB", "[fuzz]") {
  // The report seed with 4 bytes inserted before "DICM": a bare implicit data set whose first
  // element claims 0xFFF90000 bytes. Loading every value, DCMTK allocated the claim before
  // reading it (libFuzzer's out-of-memory at malloc(4294508544)) and then failed with "Invalid
  // stream". Values are now loaded only up to the file's size, so DCMTK would leave the claim on
  // disk and check it against the bytes there; the element scan, which checks every length on
  // the file path too, refuses it first.
  fuzz::ReportOutcome out = fuzz::Report(Saved("fuzz_report", "element-claims-4-gb"));
  REQUIRE_FALSE(out.report.ok());
  CHECK(out.report.status().code() == Status::Code::kInvalidArgument);
  CHECK_THAT(out.report.status().message(), Catch::Contains("longer than the data set"));
  REQUIRE_FALSE(out.signer.ok());
  CHECK_THAT(out.signer.status().message(), Catch::Contains("longer than the data set"));
  // A report is still read whole: its text values are all loaded.
  const std::string seed = test::ReadFile(fuzz::FuzzDir() / "corpus" / "fuzz_report" / "signed.dcm");
  fuzz::ReportOutcome good = fuzz::Report(seed);
  REQUIRE(good.report.ok());
  CHECK_FALSE(good.report->content.findings.empty());
  CHECK(good.signer.ok());
}

TEST_CASE("fuzz regression: deflated data set behind a meta header without its preamble", "[fuzz]") {
  // Made by hand after a review of the fix above: no preamble and no "DICM", a meta group that
  // names the deflated syntax, then a deflated Pixel Data claiming 0xFFF00000 bytes. DCMTK reads
  // such a meta group too and inflates the data set, where no value can be left on disk, so the
  // cap does not help; we had taken the file for a bare data set.
  const std::string bytes = Saved("fuzz_report", "deflated-meta-without-preamble");
  fuzz::ReportOutcome out = fuzz::Report(bytes);
  REQUIRE_FALSE(out.report.ok());
  CHECK_THAT(out.report.status().message(), Catch::Contains("meta header without its preamble"));
  REQUIRE_FALSE(out.signer.ok());
  CHECK_THAT(out.signer.status().message(), Catch::Contains("meta header without its preamble"));
  Result<InstanceSummary> s = fuzz::DatasetSummary(bytes);
  REQUIRE_FALSE(s.ok());
  CHECK(s.status().code() == Status::Code::kCorruption);
}

TEST_CASE("fuzz regression: deflated for DCMTK only, with no data set", "[fuzz]") {
  // Made by hand after a review: a meta header naming the deflated syntax in a value padded with
  // NULs to 256 bytes (DCMTK reads up to the NUL, our meta scan passes over a value that long and
  // takes the data set for explicit VR little endian), and nothing after it.
  // DCMTK asks to inflate only when data set bytes follow, so the in-place parse accepted an
  // empty object that the file path refuses.
  const std::string bytes = Saved("fuzz_dataset_summary", "deflated-meta-empty-data-set");
  Result<InstanceSummary> s = fuzz::DatasetSummary(bytes);
  REQUIRE_FALSE(s.ok());
  CHECK_THAT(s.status().message(), Catch::Contains("does not say plainly that the data set is deflated"));
  Result<InstanceSummary> in_place = ReadInstanceSummaryFromMemory(bytes);
  REQUIRE_FALSE(in_place.ok());
  CHECK(in_place.status().message() == s.status().message());
  CHECK(fuzz::QueryIdentifier(Saved("fuzz_query_identifier", "deflated-meta-empty-data-set")) == "");
}

TEST_CASE("fuzz regression: identifier whose data set a top-level delimiter ends", "[fuzz]") {
  // fuzz_query_identifier, 60 s: an (FFFE,E00D) item delimiter outside any sequence, then bytes
  // that do not walk. DCMTK ends the data set at the delimiter and reads nothing after it; the
  // in-place scan went on and refused a length past the end, the file scan (lengths unchecked)
  // did not: refused from memory, parsed from a file.
  const std::string saved = Saved("fuzz_query_identifier", "item-delimiter-ends-the-data-set");
  CHECK(fuzz::QueryIdentifier(saved) == "");
  Result<std::unique_ptr<DicomFile>> in_place = DicomFile::Parse(std::string_view(saved).substr(1));
  INFO(in_place.status().ToString());
  REQUIRE(in_place.ok());
  CHECK(in_place.value()->dataset().card() == 3);  // the elements before the delimiter
}

TEST_CASE("fuzz regression: identifier whose meta header names two transfer syntaxes", "[fuzz]") {
  // fuzz_query_identifier, 60 s: (0002,0010) implicit VR little endian, then a second (0002,0010)
  // holding another UID. DCMTK keeps the first and read the data set as implicit; our meta scan
  // kept the last, walked the data set as explicit and, in memory, refused a length past the end.
  const std::string saved = Saved("fuzz_query_identifier", "repeated-transfer-syntax-first-wins");
  CHECK(fuzz::QueryIdentifier(saved) == "");
  Result<std::unique_ptr<DicomFile>> in_place = DicomFile::Parse(std::string_view(saved).substr(1));
  INFO(in_place.status().ToString());
  REQUIRE(in_place.ok());
  CHECK(in_place.value()->dataset().getOriginalXfer() == EXS_LittleEndianImplicit);
}

TEST_CASE("fuzz regression: identifier whose plain value starts with an item", "[fuzz]") {
  // Made by hand for a fuzz_query_identifier failure CI saw (refused from memory, parsed from a
  // file; its input was not kept): implicit VR, a Patient's Name of 16 bytes that start with an
  // item holding an element claiming 255 bytes. DCMTK reads the name as bytes; the scan walked it
  // as a sequence and, in memory only, refused the claim. Only a private value can be a sequence
  // the scan does not know of (by its creator): a public one is now walked as DCMTK reads it.
  const std::string saved = Saved("fuzz_query_identifier", "plain-value-starting-with-an-item");
  CHECK(fuzz::QueryIdentifier(saved) == "");
  Result<std::unique_ptr<DicomFile>> in_place = DicomFile::Parse(std::string_view(saved).substr(1));
  INFO(in_place.status().ToString());
  REQUIRE(in_place.ok());
  DcmElement* name = nullptr;
  REQUIRE(in_place.value()->dataset().findAndGetElement(DCM_PatientName, name).good());
  CHECK(name->getLength() == 16);
  test::ScratchDir dir;
  test::WriteFile(dir.path() / "identifier.dcm", saved.substr(1));
  CHECK(DicomFile::Open(dir.path() / "identifier.dcm", 0, true).ok());
}

TEST_CASE("fuzz regression: identifier whose private sequence claims bytes past the end", "[fuzz]") {
  // Made by hand for the same failure: implicit VR, creator DCMTK_ANONYMIZER and its (0009,1000),
  // a sequence in private.dic, claiming 100 bytes at the end of the object. DCMTK reads an empty
  // sequence; the scan, which does not track creators, saw a plain value and refused its length
  // in memory, while the file scan did not check lengths. Both check them now: bytes a length
  // skips past the end are bytes the scan cannot vouch for.
  const std::string saved = Saved("fuzz_query_identifier", "private-sequence-past-the-end");
  CHECK(fuzz::QueryIdentifier(saved) == "");
  Result<std::unique_ptr<DicomFile>> in_place = DicomFile::Parse(std::string_view(saved).substr(1));
  REQUIRE_FALSE(in_place.ok());
  CHECK_THAT(in_place.status().message(), Catch::Contains("(0009,1000) is longer than the data set"));
  test::ScratchDir dir;
  test::WriteFile(dir.path() / "identifier.dcm", saved.substr(1));
  Result<std::unique_ptr<DicomFile>> from_file = DicomFile::Open(dir.path() / "identifier.dcm", 0, true);
  REQUIRE_FALSE(from_file.ok());
  CHECK(from_file.status().message() == in_place.status().message());
}

TEST_CASE("fuzz regression: charset text with a UTF-8-encoded surrogate", "[fuzz]") {
  // "ISO_IR 192\n\xed\xbc\xa0Zhang^San": U+DF20 is no character, so the text is not UTF-8 and
  // the harness' round-trip invariant does not apply; it took the bytes for UTF-8. Decoding
  // refuses such bytes; encoding to ISO_IR 192 (the fallback of C-FIND answers) now replaces
  // each ill-formed byte by U+FFFD, so that what goes out is always UTF-8.
  const std::string bytes = Saved("fuzz_charset", "utf8-encoded-surrogate");
  CHECK(fuzz::Charset(bytes).broken == "");
  const std::string text = bytes.substr(bytes.find('\n') + 1);
  CHECK(EncodeFromUtf8("ISO_IR 192", text).value() == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDZhang^San");
  CHECK(DecodeToUtf8("ISO_IR 192", EncodeFromUtf8("ISO_IR 192", text).value()).ok());
  CHECK_FALSE(DecodeToUtf8("ISO_IR 192", text).ok());
  // Well-formed text passes unchanged, up to the last code point; the rest is replaced.
  const std::string fine = "张^三 Müller \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF";
  CHECK(EncodeFromUtf8("ISO_IR 192", fine).value() == fine);
  CHECK(EncodeFromUtf8("ISO_IR 192", "\xC0\xAF").value() == "\xEF\xBF\xBD\xEF\xBF\xBD");      // overlong '/'
  CHECK(EncodeFromUtf8("ISO_IR 192", "\xF4\x90\x80\x80").value().size() == 12);               // beyond U+10FFFF
  CHECK(EncodeFromUtf8("ISO_IR 192", "ab\xE5\xBC").value() == "ab\xEF\xBF\xBD\xEF\xBF\xBD");  // cut short
  CHECK_FALSE(EncodeFromUtf8("ISO_IR 100", text).ok());
}

// Writes the binary seeds and the fixture data (a study, the CA certificate that signed the
// report seeds; its key is thrown away) into $TELEREAD_FUZZ_SEED_DIR, laid out as tests/fuzz:
//   TELEREAD_FUZZ_SEED_DIR=tests/fuzz build/tests/teleread_tests "[.fuzz-seeds]"
TEST_CASE("write the fuzz seeds", "[.fuzz-seeds]") {
  const char* out_env = std::getenv("TELEREAD_FUZZ_SEED_DIR");
  REQUIRE(out_env != nullptr);
  const fs::path out = out_env;
  InitializeDicom();
  test::ScratchDir scratch;
  const std::string org = "Lixian Regional Imaging Reading Centre";  // as in config/teleread.toml
  const fs::path pki = scratch.path() / "pki";
  REQUIRE(InitCertificateAuthority(pki, org).ok());
  // Long-lived, so that the committed seeds keep verifying: the CA itself is good for 10 years.
  REQUIRE(IssueCertificate(pki, IssueRequest{CertKind::kRadiologist, "wang.li", org, {}, {}, 3000, 0}).ok());

  const fs::path summary = out / "corpus" / "fuzz_dataset_summary", report = out / "corpus" / "fuzz_report";
  const fs::path http = out / "corpus" / "fuzz_http_request", charset = out / "corpus" / "fuzz_charset";
  for (const fs::path& d : {out / "data", summary, report, http, charset}) fs::create_directories(d);
  fs::copy_file(pki / "ca.pem", out / "data" / "ca.pem", fs::copy_options::overwrite_existing);

  samples::SeriesSpec spec;
  spec.patient_name = "张^三";
  spec.patient_id = "ZZ0001";
  spec.specific_character_set = "GB18030";
  spec.study_description = "胸部CT平扫";
  spec.accession_number = "ACC1";
  spec.priority = "STAT";
  spec.rows = spec.columns = 8;
  auto write = [&](samples::SeriesSpec s, const fs::path& to) {
    auto files = samples::WriteSeries(s, scratch.path() / to.filename());
    REQUIRE(files.ok());
    fs::copy_file(files->front(), to, fs::copy_options::overwrite_existing);
  };
  write(spec, out / "data" / "study.dcm");
  fs::copy_file(out / "data" / "study.dcm", summary / "ct-gb18030.dcm", fs::copy_options::overwrite_existing);
  for (const auto& [ts, name] :
       std::vector<std::pair<std::string, std::string>>{{"1.2.840.10008.1.2", "ct-implicit-le.dcm"},
                                                        {"1.2.840.10008.1.2.2", "ct-explicit-be.dcm"},
                                                        {"1.2.840.10008.1.2.1.99", "ct-deflated.dcm"}}) {
    samples::SeriesSpec s = spec;
    s.transfer_syntax = ts;
    write(s, summary / name);
  }
  samples::SeriesSpec latin = spec;
  latin.patient_name = "Müller^Jürgen";
  latin.specific_character_set = "ISO_IR 100";
  latin.study_description = "Thorax ohne KM";
  latin.modality = "MR";
  write(latin, summary / "mr-latin1.dcm");

  auto edit = [&](const fs::path& from, const fs::path& to, const std::function<void(DcmDataset&)>& change, bool meta,
                  E_TransferSyntax xfer = EXS_LittleEndianExplicit) {
    DcmFileFormat ff;
    REQUIRE(ff.loadFile(from.c_str()).good());
    change(*ff.getDataset());
    REQUIRE((meta ? ff.saveFile(to.c_str(), xfer) : ff.getDataset()->saveFile(to.c_str(), xfer)).good());
  };
  edit(
      out / "data" / "study.dcm", summary / "ct-no-meta.dcm", [](DcmDataset&) {}, false);
  edit(
      out / "data" / "study.dcm", summary / "cr-iso2022-jp.dcm",
      [](DcmDataset& ds) {
        ds.putAndInsertString(DCM_SpecificCharacterSet, "\\ISO 2022 IR 87");
        ds.putAndInsertString(DCM_PatientName,
                              "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B");
        ds.putAndInsertString(DCM_Modality, "CR");
      },
      true);
  // Sequences nested 12 deep (accepted) and 130 deep (refused by CheckNestingDepth), also deflated.
  auto nest = [](int depth) {
    return [depth](DcmDataset& ds) {
      DcmItem* item = &ds;
      for (int i = 0; i < depth; ++i) {
        DcmItem* inner = nullptr;
        REQUIRE(item->findOrCreateSequenceItem(DCM_ContentSequence, inner, 0).good());
        item = inner;
      }
      item->putAndInsertString(DCM_CodeValue, "deep");
    };
  };
  edit(out / "data" / "study.dcm", summary / "nested-12.dcm", nest(12), true);
  edit(out / "data" / "study.dcm", summary / "nested-130.dcm", nest(130), true);
  edit(out / "data" / "study.dcm", summary / "nested-130-deflated.dcm", nest(130), true,
       EXS_DeflatedLittleEndianExplicit);

  Result<InstanceSummary> fixture = ReadInstanceSummary(out / "data" / "study.dcm");
  REQUIRE(fixture.ok());
  const test::SampleStudy study = test::FindSampleStudy(out / "data", fixture->study_instance_uid);
  test::WriteSignedReport(study, pki, "wang.li", report / "signed.dcm");
  fs::rename(report / "signed.dcm.unsigned", report / "unsigned.dcm");
  fs::copy_file(report / "signed.dcm", summary / "sr-signed.dcm", fs::copy_options::overwrite_existing);

  // HTTP: the first byte picks the caller (0 wang.li, 1 ops, 2 ZZ_PACS, 3 none), see HttpTarget.
  const std::string uid = fixture->study_instance_uid, sop = fixture->sop_instance_uid;
  Result<ReportInfo> signed_report = ReadReport(report / "signed.dcm");
  REQUIRE(signed_report.ok());
  auto get = [](const std::string& target) { return "GET " + target + " HTTP/1.1\r\nHost: teleread\r\n\r\n"; };
  auto post = [](const std::string& target, const std::string& type, const std::string& body) {
    return "POST " + target + " HTTP/1.1\r\nHost: teleread\r\n" +
           (type.empty() ? "" : "Content-Type: " + type + "\r\n") + "Content-Length: " + std::to_string(body.size()) +
           "\r\n\r\n" + body;
  };
  const std::string studies = "/api/v1/studies/" + uid;
  const std::vector<std::pair<std::string, std::string>> requests = {
      {"worklist", std::string(1, '\0') + get("/api/v1/worklist")},
      {"worklist-filtered",
       std::string(1, '\0') + get("/api/v1/worklist?modality=CT&priority=STAT&state=claimed&mine=1&limit=5&offset=0")},
      {"worklist-admin", "\x01" + get("/api/v1/worklist?member=zhuozhou&state=waiting")},
      {"whoami", std::string(1, '\0') + get("/api/v1/whoami")},
      {"study", std::string(1, '\0') + get(studies)},
      {"study-escaped", std::string(1, '\0') + get("/api/v1/studies/" + uid.substr(0, 1) + "%2E" + uid.substr(2))},
      {"priors", std::string(1, '\0') + get(studies + "/priors")},
      {"archive", std::string(1, '\0') + get(studies + "/archive")},
      {"instance", std::string(1, '\0') + get(studies + "/instances/" + sop)},
      {"claim", std::string(1, '\0') + post(studies + "/claim", "", "")},
      {"renew", std::string(1, '\0') + post(studies + "/renew", "", "")},
      {"release", std::string(1, '\0') + post(studies + "/release", "", "")},
      {"reassign", "\x01" + post(studies + "/reassign?to=zhao.min", "", "")},
      {"post-report",
       std::string(1, '\0') + post(studies + "/reports", "application/dicom", test::ReadFile(report / "signed.dcm"))},
      {"post-report-chunked", std::string(1, '\0') + "POST " + studies +
                                  "/reports HTTP/1.1\r\nHost: t\r\n"
                                  "Transfer-Encoding: chunked\r\nContent-Type: application/dicom\r\n\r\n"
                                  "4\r\nDICM\r\n0\r\n\r\n"},
      {"reports-member", "\x02" + get("/api/v1/reports?study=" + uid)},
      {"reports-of-study", "\x02" + get(studies + "/reports")},
      {"report-file", "\x02" + get("/api/v1/reports/" + signed_report->sop_instance_uid)},
      {"deliveries", "\x01" + get("/api/v1/deliveries?state=pending&limit=10&study=" + uid)},
      {"delivery-retry", "\x01" + post("/api/v1/deliveries/1/retry", "", "")},
      {"metrics", "\x03" + get("/metrics")},
      {"healthz", std::string(1, '\0') + get("/healthz")},
      {"pipelined", std::string(1, '\0') + get("/healthz") + get("/api/v1/whoami") + get("/metrics")},
      {"no-certificate", "\x03" + get("/api/v1/worklist")},
      {"bad-request-line", std::string(1, '\0') + "GET\r\n\r\n"},
      {"bad-percent", std::string(1, '\0') + get("/api/v1/studies/%4")},
  };
  for (const auto& [name, bytes] : requests) test::WriteFile(http / name, bytes);

  // Character sets: "<Specific Character Set>\n<text in it>".
  const std::vector<std::pair<std::string, std::string>> texts = {
      {"ascii", "\nDoe^John"},
      {"latin1", "ISO_IR 100\nM\xfcller^J\xfcrgen"},
      {"utf8", "ISO_IR 192\n\xe5\xbc\xa0^\xe4\xb8\x89=Zhang^San"},
      {"gb18030", "GB18030\n\xd5\xc5^\xc8\xfd\x81\x30\x81\x30"},
      {"gbk", "GBK\n\xd5\xc5^\xc8\xfd"},
      {"cyrillic", "ISO_IR 144\n\xbb\xee\xdc\xd1\xd5\xdd\xd5\xe0\xd3"},
      {"greek", "ISO_IR 126\n\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2"},
      {"thai", "ISO_IR 166\n\xbb\xd8\xc3\xd4\xca"},
      {"iso2022-jp", "\\ISO 2022 IR 87\nYamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B"},
      {"iso2022-kr", "\\ISO 2022 IR 149\nHong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7"},
      {"katakana", "ISO_IR 13\\ISO 2022 IR 87\n\xd4\xcf\xc0\xde^\xc0\xdb\xb3"},
  };
  for (const auto& [name, bytes] : texts) test::WriteFile(charset / name, bytes);
}
