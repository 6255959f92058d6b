// The report SR and its signature: round trip, DCMTK's and dicom3tools' own checkers, and
// every way a signature must fail.
#include <zlib.h>
#include <catch2/catch.hpp>
#include <fstream>

#include "common/dicom.h"
#include "common/report.h"
#include "common/signing.h"
#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcfilefo.h"
#include "samples/synthetic.h"
#include "server/pki/pki.h"
#include "tests/support/process.h"

using namespace teleread;
namespace fs = std::filesystem;

namespace {

const char kOrg[] = "Lixian Regional Imaging Reading Centre";

class ReportFixture {
 public:
  ReportFixture() {
    InitializeDicom();
    REQUIRE(InitCertificateAuthority(ca(), kOrg).ok());
    REQUIRE(InitCertificateAuthority(dir_.path() / "foreign", "Somewhere Else").ok());
    Issue(ca(), CertKind::kRadiologist, "wang.li");
    Issue(ca(), CertKind::kMember, "ZZ_PACS");  // may authenticate, not commit to content
    Issue(dir_.path() / "foreign", CertKind::kRadiologist, "wang.li");
    IssueRequest expired{CertKind::kRadiologist, "old.doctor", kOrg, {}, {}, 5, -10};
    REQUIRE(IssueCertificate(ca(), expired).ok());

    samples::SeriesSpec spec;
    spec.patient_name = "张^三";
    spec.patient_id = "ZZ0001";
    spec.specific_character_set = "GB18030";
    spec.modality = "CT";
    spec.study_description = "胸部CT平扫";
    spec.accession_number = "ACC1";
    spec.instances = 3;
    spec.rows = spec.columns = 16;
    auto files = samples::WriteSeries(spec, dir_.path() / "study");
    REQUIRE(files.ok());
    study_files_ = files.value();
    for (const fs::path& f : study_files_) {
      auto s = ReadInstanceSummary(f);
      REQUIRE(s.ok());
      evidence_.push_back(InstanceRef{s->series_instance_uid, s->sop_class_uid, s->sop_instance_uid});
      study_uid_ = s->study_instance_uid;
    }
  }

  fs::path ca() const { return dir_.path() / "ca"; }
  fs::path path(const std::string& name) const { return dir_.path() / name; }

  void Issue(const fs::path& ca_dir, CertKind kind, const std::string& cn) {
    IssueRequest r;
    r.kind = kind;
    r.common_name = cn;
    r.organization = kOrg;
    REQUIRE(IssueCertificate(ca_dir, r).ok());
  }

  ReportRequest Request() const {
    ReportRequest r;
    r.content.findings = "右肺上叶见一直径约8mm磨玻璃结节，边界清。";
    r.content.impression = "右肺上叶磨玻璃结节，建议3个月后复查。";
    r.content.recommendation = "Follow-up CT in 3 months.";
    r.content.critical = true;
    r.content.radiologist_id = "wang.li";
    r.content.radiologist_name = "王^丽";
    r.content.organization = kOrg;
    r.study_instance = study_files_.front();
    r.evidence = evidence_;
    return r;
  }

  // A signed report of the sample study, by `cn` of `ca_dir`.
  fs::path Signed(const std::string& name, const fs::path& ca_dir, const std::string& cn, bool check_validity = true) {
    fs::path unsigned_sr = path(name + ".unsigned.dcm"), out = path(name + ".dcm");
    REQUIRE(WriteReport(Request(), unsigned_sr).ok());
    Status s = SignReportFile(unsigned_sr, out, ca_dir / (cn + ".pem"), ca_dir / (cn + ".key"), "", check_validity);
    INFO(s.ToString());
    REQUIRE(s.ok());
    return out;
  }

 protected:
  test::ScratchDir dir_;
  std::vector<fs::path> study_files_;
  std::vector<InstanceRef> evidence_;
  std::string study_uid_;
};

}  // namespace

TEST_CASE_METHOD(ReportFixture, "a report SR round-trips its content and Chinese text", "[report]") {
  fs::path sr = path("r.dcm");
  REQUIRE(WriteReport(Request(), sr).ok());
  Result<ReportInfo> info = ReadReport(sr);
  REQUIRE(info.ok());
  CHECK(info->sop_class_uid == kBasicTextSrClass);
  CHECK(info->study_instance_uid == study_uid_);
  CHECK(info->series_instance_uid != evidence_.front().series_instance_uid);
  CHECK(info->patient_id == "ZZ0001");
  CHECK(info->patient_name == "张^三");  // converted from the study's GB18030
  CHECK(info->accession_number == "ACC1");
  CHECK(info->content.findings == Request().content.findings);
  CHECK(info->content.impression == Request().content.impression);
  CHECK(info->content.recommendation == "Follow-up CT in 3 months.");
  CHECK(info->content.critical);
  CHECK(info->content.radiologist_id == "wang.li");
  CHECK(info->content.radiologist_name == "王^丽");
  CHECK(info->content.organization == kOrg);
  CHECK(info->completion_flag == "COMPLETE");
  CHECK(info->verification_flag == "VERIFIED");
  CHECK(info->evidence.size() == 3);
  CHECK_FALSE(info->predecessor);
  CHECK(info->content_datetime.size() == 14);

  ReportRequest amend = Request();
  amend.content.critical = false;
  amend.predecessor = InstanceRef{info->series_instance_uid, info->sop_class_uid, info->sop_instance_uid};
  REQUIRE(WriteReport(amend, path("a.dcm")).ok());
  Result<ReportInfo> amended = ReadReport(path("a.dcm"));
  REQUIRE(amended.ok());
  REQUIRE(amended->predecessor);
  CHECK(amended->predecessor->sop_instance_uid == info->sop_instance_uid);
  CHECK_FALSE(amended->content.critical);
  CHECK(amended->sop_instance_uid != info->sop_instance_uid);

  ReportRequest empty = Request();
  empty.content.impression.clear();
  CHECK(WriteReport(empty, path("e.dcm")).code() == Status::Code::kInvalidArgument);
  CHECK(ReadReport(study_files_.front()).status().code() == Status::Code::kInvalidArgument);
}

TEST_CASE_METHOD(ReportFixture, "a signed report passes dcmsign and dciodvfy", "[report]") {
  fs::path sr = Signed("s", ca(), "wang.li");
  Result<VerifiedSigner> signer = VerifyReportSignature(sr, ca() / "ca.pem");
  INFO(signer.status().ToString());
  REQUIRE(signer.ok());
  CHECK(signer->common_name == "wang.li");
  CHECK(signer->organizational_unit == "radiologist");
  CHECK(signer->signed_at.size() >= 14);
  CHECK(signer->not_after > 0);
  CHECK(ReadReport(sr).ok());

  test::CommandResult dcmsign =
      test::RunCommand({DCMSIGN_BIN, "--verify", "+cf", (ca() / "ca.pem").string(), sr.string()});
  INFO(dcmsign.output);
  CHECK(dcmsign.exit_code == 0);
  CHECK(dcmsign.output.find("Signature Verification : OK") != std::string::npos);
  // Without our CA DCMTK finds the signature intact but cannot trust the signer.
  CHECK(test::RunCommand({DCMSIGN_BIN, "--verify", sr.string()}).exit_code != 0);

  test::CommandResult dciodvfy = test::RunCommand({DCIODVFY_BIN, sr.string()});
  INFO(dciodvfy.output);
  CHECK(dciodvfy.output.find("Error") == std::string::npos);
  CHECK(dciodvfy.output.find("BasicTextSR") != std::string::npos);
}

TEST_CASE_METHOD(ReportFixture, "a deflated report is signed in place and still reads", "[report]") {
  // `teleread report sign` writes over its input. A deflated input's meta header and data set
  // are read from the file that saving replaces, so saving straight onto it lost the report.
  const fs::path sr = path("deflated.dcm");
  REQUIRE(WriteReport(Request(), path("plain.dcm")).ok());
  {
    DcmFileFormat ff;
    REQUIRE(ff.loadFile(path("plain.dcm").c_str()).good());
    REQUIRE(ff.saveFile(sr.c_str(), EXS_DeflatedLittleEndianExplicit).good());
  }
  Status s = SignReportFile(sr, sr, ca() / "wang.li.pem", ca() / "wang.li.key");
  INFO(s.ToString());
  REQUIRE(s.ok());
  CHECK_FALSE(fs::exists(sr.string() + ".part"));
  Result<VerifiedSigner> signer = VerifyReportSignature(sr, ca() / "ca.pem");
  INFO(signer.status().ToString());
  REQUIRE(signer.ok());
  CHECK(signer->common_name == "wang.li");
  Result<ReportInfo> info = ReadReport(sr);
  REQUIRE(info.ok());
  CHECK(info->content.findings == Request().content.findings);
  // A failed write leaves the input as it was.
  const std::string before = test::ReadFile(sr);
  fs::create_directory(path("occupied.dcm.part"));
  fs::copy_file(sr, path("occupied.dcm"));
  CHECK_FALSE(
      SignReportFile(path("occupied.dcm"), path("occupied.dcm"), ca() / "wang.li.pem", ca() / "wang.li.key").ok());
  CHECK(test::ReadFile(path("occupied.dcm")) == before);
}

TEST_CASE_METHOD(ReportFixture, "a signed report re-encoded in either deflated syntax still verifies", "[report]") {
  // Compressed bytes are not the canonical encoding of the content: the content check alone applies.
  const fs::path signed_sr = Signed("d", ca(), "wang.li");
  for (E_TransferSyntax xfer : {EXS_DeflatedLittleEndianExplicit, EXS_JPIPReferencedDeflate}) {
    const fs::path out = path("redeflated-" + std::to_string(static_cast<int>(xfer)) + ".dcm");
    DcmFileFormat ff;
    REQUIRE(ff.loadFile(signed_sr.c_str()).good());
    REQUIRE(ff.saveFile(out.c_str(), xfer).good());
    DcmFileFormat back;
    REQUIRE(back.loadFile(out.c_str()).good());
    REQUIRE(back.getDataset()->getOriginalXfer() == xfer);
    Result<VerifiedSigner> signer = VerifyReportSignature(out, ca() / "ca.pem");
    INFO(signer.status().ToString());
    CHECK(signer.ok());
    // A changed byte in the compressed stream is still caught (by the inflate or the signature).
    std::string bytes = test::ReadFile(out);
    bytes[bytes.size() - 40] = static_cast<char>(bytes[bytes.size() - 40] ^ 0x5a);
    const fs::path tampered = path("tampered-" + std::to_string(static_cast<int>(xfer)) + ".dcm");
    test::WriteFile(tampered, bytes);
    CHECK_FALSE(VerifyReportSignature(tampered, ca() / "ca.pem").ok());
  }
}

TEST_CASE_METHOD(ReportFixture, "one flipped byte anywhere in the signed data set fails verification", "[report]") {
  fs::path sr = Signed("f", ca(), "wang.li");
  const std::string original = test::ReadFile(sr);
  // The data set starts after the preamble, "DICM" and the file meta group (0002), which is
  // PS3.10 packaging and not part of what is signed.
  size_t start = 132;
  while (start + 8 < original.size() && original[start] == 0x02 && original[start + 1] == 0x00) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(original.data() + start);
    const bool long_form = (p[4] == 'O' && p[5] == 'B');
    start += long_form ? 12 + (p[8] | p[9] << 8 | p[10] << 16 | p[11] << 24) : 8 + (p[6] | p[7] << 8);
  }
  REQUIRE(start < original.size());
  int flips = 0, accepted = 0;
  std::string first_accepted;
  for (size_t i = start; i < original.size(); i += 1) {
    std::string copy = original;
    copy[i] = static_cast<char>(copy[i] ^ 0x01);
    fs::path tampered = path("t.dcm");
    test::WriteFile(tampered, copy);
    ++flips;
    if (VerifyReportSignature(tampered, ca() / "ca.pem").ok()) {
      if (accepted++ < 10) first_accepted += std::to_string(i) + " ";
    }
  }
  INFO(flips << " flips; accepted at offsets " << first_accepted << " of " << original.size());
  CHECK(flips > 1000);
  CHECK(accepted == 0);
}

namespace {

// Where a Part 10 file's data set starts: after the preamble, "DICM" and the meta group (0002).
size_t DataSetStart(const std::string& file) {
  size_t start = 132;
  while (start + 8 < file.size() && file[start] == 0x02 && file[start + 1] == 0x00) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(file.data() + start);
    const bool long_form = (p[4] == 'O' && p[5] == 'B');
    start += long_form ? 12 + (p[8] | p[9] << 8 | p[10] << 16 | p[11] << 24) : 8 + (p[6] | p[7] << 8);
  }
  return start;
}

// Raw deflate (no zlib header), as the Deflated transfer syntaxes store a data set.
std::string Deflate(const std::string& in, bool inflate) {
  z_stream z{};
  REQUIRE((inflate ? inflateInit2(&z, -MAX_WBITS)
                   : deflateInit2(&z, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY)) == Z_OK);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  std::string out;
  char buf[16384];
  int rc = Z_OK;
  do {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate ? ::inflate(&z, Z_NO_FLUSH) : ::deflate(&z, Z_FINISH);
    out.append(buf, sizeof buf - z.avail_out);
  } while (rc == Z_OK);
  inflate ? inflateEnd(&z) : deflateEnd(&z);
  REQUIRE(rc == Z_STREAM_END);
  return out;
}

}  // namespace

TEST_CASE_METHOD(ReportFixture, "one flipped byte anywhere in a deflated signed data set fails verification",
                 "[report]") {
  // Compressed bytes have no canonical form: what they inflate to is checked as a plain file is.
  const fs::path plain = Signed("df", ca(), "wang.li");
  const std::string original = test::ReadFile(plain);
  const size_t start = DataSetStart(original);
  const fs::path deflated = path("df-deflated.dcm");
  {
    DcmFileFormat ff;
    REQUIRE(ff.loadFile(plain.c_str()).good());
    REQUIRE(ff.saveFile(deflated.c_str(), EXS_DeflatedLittleEndianExplicit).good());
  }
  const std::string packed = test::ReadFile(deflated);
  const std::string meta = packed.substr(0, DataSetStart(packed));
  // DCMTK deflated the very bytes that were signed: the check below compares like with like.
  REQUIRE(Deflate(packed.substr(meta.size()), true) == original.substr(start));
  REQUIRE(VerifyReportSignature(deflated, ca() / "ca.pem").ok());
  int flips = 0, accepted = 0;
  std::string first_accepted;
  for (size_t i = start; i < original.size(); ++i) {
    std::string data = original.substr(start);
    data[i - start] = static_cast<char>(data[i - start] ^ 0x01);
    const fs::path tampered = path("dt.dcm");
    test::WriteFile(tampered, meta + Deflate(data, false));
    ++flips;
    if (VerifyReportSignature(tampered, ca() / "ca.pem").ok()) {
      if (accepted++ < 10) first_accepted += std::to_string(i) + " ";
    }
  }
  INFO(flips << " flips; accepted at offsets " << first_accepted);
  CHECK(flips > 1000);
  CHECK(accepted == 0);
}

TEST_CASE_METHOD(ReportFixture, "signatures by a foreign CA or an expired or non-committing certificate fail",
                 "[report]") {
  Result<VerifiedSigner> foreign = VerifyReportSignature(Signed("x", path("foreign"), "wang.li"), ca() / "ca.pem");
  REQUIRE_FALSE(foreign.ok());
  CHECK_THAT(foreign.status().message(), Catch::Contains("not trusted"));
  REQUIRE(WriteReport(Request(), path("m.dcm")).ok());

  Status refused = SignReportFile(path("m.dcm"), path("o0.dcm"), ca() / "old.doctor.pem", ca() / "old.doctor.key");
  CHECK_THAT(refused.message(), Catch::Contains("has expired"));
  Result<VerifiedSigner> expired = VerifyReportSignature(Signed("o", ca(), "old.doctor", false), ca() / "ca.pem");
  REQUIRE_FALSE(expired.ok());
  CHECK_THAT(expired.status().message(), Catch::Contains("expired"));

  Status member = SignReportFile(path("m.dcm"), path("m2.dcm"), ca() / "ZZ_PACS.pem", ca() / "ZZ_PACS.key");
  CHECK(member.code() == Status::Code::kInvalidArgument);
  CHECK_THAT(member.message(), Catch::Contains("nonRepudiation"));
  // Wrong key for the certificate.
  Status mismatch = SignReportFile(path("m.dcm"), path("m3.dcm"), ca() / "wang.li.pem", ca() / "ZZ_PACS.key");
  CHECK_THAT(mismatch.message(), Catch::Contains("does not belong"));
  // An unsigned report.
  CHECK_THAT(VerifyReportSignature(path("m.dcm"), ca() / "ca.pem").status().message(), Catch::Contains("not signed"));
}

TEST_CASE_METHOD(ReportFixture, "an encrypted key signs only with its passphrase", "[report]") {
  IssueRequest r{CertKind::kRadiologist, "zhao.min", kOrg, {}, {}, 30, 0};
  REQUIRE(IssueCertificate(ca(), r, "correct horse").ok());
  REQUIRE(WriteReport(Request(), path("p.dcm")).ok());
  CHECK_FALSE(
      SignReportFile(path("p.dcm"), path("p1.dcm"), ca() / "zhao.min.pem", ca() / "zhao.min.key", "wrong").ok());
  CHECK_FALSE(SignReportFile(path("p.dcm"), path("p1.dcm"), ca() / "zhao.min.pem", ca() / "zhao.min.key").ok());
  REQUIRE(SignReportFile(path("p.dcm"), path("p2.dcm"), ca() / "zhao.min.pem", ca() / "zhao.min.key", "correct horse")
              .ok());
  CHECK(VerifyReportSignature(path("p2.dcm"), ca() / "ca.pem").ok());
}

TEST_CASE_METHOD(ReportFixture, "a report signed with a revoked certificate fails verification against the CRL",
                 "[report]") {
  fs::path sr = Signed("r", ca(), "wang.li");
  REQUIRE(WriteRevocationList(ca(), "").ok());  // a list that names no one yet
  const fs::path crl = ca() / "crl.pem";
  CHECK(VerifyReportSignature(sr, ca() / "ca.pem", crl).ok());
  Result<int> listed = WriteRevocationList(ca(), "wang.li");
  REQUIRE(listed.ok());
  CHECK(listed.value() == 1);
  Result<VerifiedSigner> revoked = VerifyReportSignature(sr, ca() / "ca.pem", crl);
  REQUIRE_FALSE(revoked.ok());
  CHECK(revoked.status().code() == Status::Code::kCorruption);
  CHECK_THAT(revoked.status().message(), Catch::Contains("revoked"));
  CHECK(VerifyReportSignature(sr, ca() / "ca.pem").ok());  // without the list, nothing is known
  CHECK(WriteRevocationList(ca(), "wang.li").status().code() == Status::Code::kInvalidArgument);
}
