// The `teleread` workstation CLI end to end against the real server over mutual TLS.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <thread>

#include "common/signing.h"
#include "server/pki/pki.h"
#include "tests/support/server_fixture.h"

using namespace teleread::test;
using json = nlohmann::json;

namespace {

class CliFixture {
 public:
  CliFixture() : server_(dir_.path() / "server") {
    server_.Start();
    PushSampleConsortium(server_, dir_.path() / "samples", 2);
    for (const std::string who : {"wang.li", "zhao.min", "ops"})
      WriteProfile(server_, who, dir_.path() / (who + ".toml"));
    WaitForWorklist(server_, 6, "zhao.min");
  }

  CommandResult Cli(const std::string& who, std::vector<std::string> args) {
    args.insert(args.begin(), {TELEREAD_CLI_BIN, "--profile", (dir_.path() / (who + ".toml")).string()});
    return RunCommand(args);
  }

 protected:
  ScratchDir dir_;
  TestServer server_;
};

}  // namespace

TEST_CASE_METHOD(CliFixture, "the CLI reads the worklist and claims over mutual TLS", "[cli]") {
  CommandResult who = Cli("wang.li", {"whoami"});
  CHECK(who.exit_code == 0);
  CHECK_THAT(who.output, Catch::StartsWith("wang.li (radiologist) at Lixian Regional Imaging Reading Centre"));

  CommandResult table = Cli("zhao.min", {"worklist"});  // reads every modality
  CHECK(table.exit_code == 0);
  CHECK_THAT(table.output, Catch::StartsWith("PRIORITY") && Catch::Contains("胸部CT平扫"));
  // Identity in every row, names in their own script whatever the file's character set
  // (GB18030, Latin-1, UTF-8 here).
  CHECK_THAT(table.output, Catch::Contains("PATIENT") && Catch::Contains("张^三") && Catch::Contains("ZZ100234") &&
                               Catch::Contains("Müller^Anna") && Catch::Contains("陈^静"));
  // Global flags after the subcommand, a modality in lower case.
  json items = json::parse(Cli("wang.li", {"worklist", "--modality", "ct", "--json"}).output)["items"];
  REQUIRE(items.size() == 1);
  CHECK(items[0]["patient_name"] == "张^三");
  CHECK(items[0]["patient_id"] == "ZZ100234");
  CHECK(items[0]["patient_sex"] != nullptr);
  CHECK(items[0]["patient_age"] != nullptr);
  const std::string uid = items[0]["study_instance_uid"];

  CommandResult claim = Cli("wang.li", {"claim", uid});
  CHECK(claim.exit_code == 0);
  CHECK_THAT(claim.output, Catch::StartsWith("claimed: held by wang.li"));
  CommandResult taken = Cli("zhao.min", {"claim", uid});
  CHECK(taken.exit_code == 1);
  CHECK_THAT(taken.output, Catch::Contains("claimed by wang.li") && Catch::Contains("HTTP 409"));
  CHECK(json::parse(Cli("wang.li", {"--json", "worklist", "--mine"}).output)["items"].size() == 1);

  CommandResult show = Cli("wang.li", {"show", uid});
  CHECK(show.exit_code == 0);
  CHECK_THAT(show.output,
             Catch::Contains("series 1  CT  2 instances") && Catch::Contains("prior") && Catch::Contains("yixian"));
  // The banner: name, ID, birth date, then the study; instances by position; priors by UID.
  CHECK_THAT(show.output, Catch::StartsWith("张^三   ID ZZ100234   born ") && Catch::Contains("accession ") &&
                              Catch::Contains("referring ") && Catch::Contains("    1: #1  CT") &&
                              Catch::Contains("    2: #2  CT") && Catch::Contains("open a prior with"));
  json shown = json::parse(Cli("wang.li", {"--json", "show", uid}).output);
  REQUIRE(shown["priors"].size() >= 1);
  const std::string prior = shown["priors"][0]["study_instance_uid"];
  CHECK_THAT(show.output, Catch::Contains(prior));
  CHECK(Cli("wang.li", {"show", prior}).exit_code == 0);  // a prior opens like any study
  CHECK(shown["patient_name"] == "张^三");
  // Paging and an empty page; unknown member and malformed UIDs are named.
  CHECK(json::parse(Cli("wang.li", {"--json", "worklist", "--limit", "1", "--offset", "1"}).output)["items"].size() ==
        1);
  CHECK_THAT(Cli("wang.li", {"worklist", "--offset", "500"}).output, Catch::Contains("no more studies past 500"));
  CHECK_THAT(Cli("wang.li", {"worklist", "--modality", "XA"}).output,
             Catch::Contains("the worklist is empty for modality XA"));
  CommandResult member = Cli("wang.li", {"worklist", "--member", "NOPE"});
  CHECK(member.exit_code == 1);
  CHECK_THAT(member.output, Catch::Contains("no member hospital 'NOPE'; members: "));
  CommandResult bad = Cli("wang.li", {"show", "1.2.abc"});
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.output, Catch::Contains("'1.2.abc' is not a Study Instance UID"));
  CHECK_THAT(Cli("wang.li", {"claim", "x"}).output, Catch::Contains("is not a Study Instance UID"));
  CommandResult reports = Cli("wang.li", {"reports", "--study", "1.2.abc"});
  CHECK(reports.exit_code == 1);
  CHECK_THAT(reports.output, Catch::Contains("'1.2.abc' is not a Study Instance UID"));
  CHECK(Cli("wang.li", {"release", uid}).exit_code == 0);
  CHECK(Cli("zhao.min", {"claim", uid}).exit_code == 0);
}

TEST_CASE_METHOD(CliFixture, "the CLI fails clearly on usage and connection errors", "[cli]") {
  CHECK(RunCommand({TELEREAD_CLI_BIN, "worklist", "--priority", "URGENT"}).exit_code == 2);
  CHECK(RunCommand({TELEREAD_CLI_BIN}).exit_code == 2);
  CommandResult missing = RunCommand({TELEREAD_CLI_BIN, "--profile", (dir_.path() / "none.toml").string(), "whoami"});
  CHECK(missing.exit_code == 1);
  CHECK_THAT(missing.output, Catch::Contains("--profile"));
  server_.Stop();
  CommandResult down = Cli("wang.li", {"whoami"});
  CHECK(down.exit_code == 1);
  CHECK_THAT(down.output, Catch::Contains("cannot reach 127.0.0.1") && Catch::Contains("check the server address"));
}

TEST_CASE_METHOD(CliFixture, "report new --submit without a live claim writes nothing", "[cli]") {
  const std::string uid =
      json::parse(Cli("wang.li", {"--json", "worklist", "--modality", "CT"}).output)["items"][0]["study_instance_uid"];
  const std::filesystem::path out = dir_.path() / "orphan.dcm";
  auto submit = [&] {
    return Cli("wang.li", {"report", "new", uid, "--findings", "右肺上叶见一磨玻璃结节。", "--impression", "结节。",
                           "--submit", "--out", out.string()});
  };
  CommandResult unclaimed = submit();
  CHECK(unclaimed.exit_code == 1);
  CHECK_THAT(unclaimed.output, Catch::Contains("no live claim of yours on this study") && Catch::Contains("HTTP 409"));
  CHECK_FALSE(std::filesystem::exists(out));  // nothing written, nothing signed
  REQUIRE(Cli("zhao.min", {"claim", uid}).exit_code == 0);
  CHECK(submit().exit_code == 1);
  CHECK_FALSE(std::filesystem::exists(out));
  REQUIRE(Cli("zhao.min", {"release", uid}).exit_code == 0);
  REQUIRE(Cli("wang.li", {"claim", uid}).exit_code == 0);
  CommandResult done = submit();
  INFO(done.output);
  CHECK(done.exit_code == 0);
  CHECK(std::filesystem::exists(out));
}

TEST_CASE_METHOD(CliFixture, "the CLI writes signs and submits a report and the hospital verifies it offline",
                 "[cli]") {
  const std::string uid =
      json::parse(Cli("wang.li", {"--json", "worklist", "--modality", "CT"}).output)["items"][0]["study_instance_uid"];
  REQUIRE(Cli("wang.li", {"claim", uid}).exit_code == 0);

  // $EDITOR fills in the template, as a radiologist would.
  const std::filesystem::path editor = dir_.path() / "editor.sh";
  WriteFile(editor,
            "#!/bin/sh\ncat > \"$1\" <<'EOF'\n# edited\nFindings:\n右肺上叶见一直径约8mm磨玻璃结节，边界清。\n\n"
            "Impression:\n右肺上叶磨玻璃结节。\n\nRecommendation:\nCT in 3 months.\n\nCritical finding: yes\nEOF\n");
  std::filesystem::permissions(editor, std::filesystem::perms::owner_all);
  CommandResult made = RunCommand({"/usr/bin/env", "EDITOR=" + editor.string(),
                                   "XDG_CACHE_HOME=" + dir_.path().string(), TELEREAD_CLI_BIN, "--profile",
                                   (dir_.path() / "wang.li.toml").string(), "report", "new", uid, "--submit"});
  INFO(made.output);
  REQUIRE(made.exit_code == 0);
  // The confirmation names the patient before anything else.
  CHECK_THAT(made.output, Catch::StartsWith("report for 张^三 (ID ZZ100234") && Catch::Contains("\nsubmitted "));

  json listed = json::parse(Cli("wang.li", {"--json", "reports", "--study", uid}).output)["items"];
  REQUIRE(listed.size() == 1);
  CHECK(listed[0]["signer"] == "wang.li");
  CHECK(listed[0]["critical"] == true);
  const std::string sop = listed[0]["sop_instance_uid"];
  CHECK_THAT(Cli("wang.li", {"reports", "--accession", listed[0]["accession_number"]}).output, Catch::Contains(sop));

  const std::string got = (dir_.path() / "got.dcm").string();
  REQUIRE(Cli("wang.li", {"report", "get", sop, "--out", got}).exit_code == 0);
  const std::string ca = (server_.pki() / "ca.pem").string();
  CommandResult ok = RunCommand({TELEREAD_CLI_BIN, "report", "verify", got, "--ca", ca});
  INFO(ok.output);
  CHECK(ok.exit_code == 0);
  CHECK_THAT(ok.output, Catch::StartsWith("signature valid") && Catch::Contains("CN=wang.li,OU=radiologist") &&
                            Catch::Contains("COMPLETE, VERIFIED by Wang^Li") && Catch::Contains("张^三") &&
                            Catch::Contains("右肺上叶见一直径约8mm磨玻璃结节，边界清。") &&
                            Catch::Contains("CRITICAL FINDING") && Catch::Contains("CT in 3 months."));
  json verified = json::parse(RunCommand({TELEREAD_CLI_BIN, "--json", "report", "verify", got, "--ca", ca}).output);
  CHECK(verified["valid"] == true);
  CHECK(verified["report"]["impression"] == "右肺上叶磨玻璃结节。");

  // One flipped byte: refused offline, non-zero exit.
  std::string bytes = ReadFile(got);
  bytes[bytes.size() / 2] ^= 0x01;
  WriteFile(dir_.path() / "tampered.dcm", bytes);
  CommandResult bad =
      RunCommand({TELEREAD_CLI_BIN, "report", "verify", (dir_.path() / "tampered.dcm").string(), "--ca", ca});
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.output, Catch::Contains("NOT VALID"));

  // Someone else cannot report it; the author amends it in one step.
  CommandResult other = Cli("zhao.min", {"report", "new", uid, "--findings", "x", "--impression", "y", "--submit"});
  CHECK(other.exit_code == 1);
  CHECK_THAT(other.output, Catch::Contains("already reported"));
  CommandResult amended =
      Cli("wang.li", {"report", "amend", sop, "--impression", "右肺上叶磨玻璃结节，考虑炎性。", "--submit"});
  INFO(amended.output);
  CHECK(amended.exit_code == 0);
  CHECK_THAT(amended.output, Catch::Contains("(amendment)"));
  json both = json::parse(Cli("wang.li", {"--json", "reports", "--study", uid}).output)["items"];
  REQUIRE(both.size() == 2);
  CHECK(both[1]["amends"] == sop);
  CHECK(json::parse(Cli("wang.li", {"--json", "worklist", "--state", "reported"}).output)["items"][0]["state"] ==
        "amended");

  // The admin sees the outbox (nothing delivers here: no member PACS runs in this test).
  json outbox = json::parse(Cli("ops", {"--json", "outbox"}).output)["items"];
  CHECK(outbox.size() == 4);  // two reports, each its SR and its PDF copy
  CHECK(Cli("wang.li", {"outbox"}).exit_code == 1);
}

TEST_CASE_METHOD(CliFixture, "an expired certificate cannot sign and its reports do not verify", "[cli]") {
  REQUIRE(RunCommand({TELEREAD_SERVER_BIN, "pki", "issue", server_.pki().string(), "--kind", "radiologist", "--name",
                      "wang.li.old", "--days", "1"})
              .exit_code == 0);
  const std::string uid =
      json::parse(Cli("wang.li", {"--json", "worklist", "--modality", "CT"}).output)["items"][0]["study_instance_uid"];
  REQUIRE(Cli("wang.li", {"claim", uid}).exit_code == 0);
  const std::string draft = (dir_.path() / "draft.dcm").string();
  REQUIRE(Cli("wang.li", {"report", "new", uid, "--findings", "f", "--impression", "i", "--out", draft}).exit_code ==
          0);
  // A certificate whose validity ended: signing refuses.
  teleread::IssueRequest old{
      teleread::CertKind::kRadiologist, "expired.doc", "Lixian Regional Imaging Reading Centre", {}, {}, 5, -10};
  REQUIRE(teleread::IssueCertificate(server_.pki(), old).ok());
  WriteProfile(server_, "expired.doc", dir_.path() / "expired.toml");
  CommandResult sign = Cli("expired", {"report", "sign", draft});
  CHECK(sign.exit_code == 1);
  CHECK_THAT(sign.output, Catch::Contains("has expired"));
  // Signed anyway (forged past the check), the hospital's verify refuses it.
  REQUIRE(teleread::SignReportFile(draft, draft + ".forged", server_.pki() / "expired.doc.pem",
                                   server_.pki() / "expired.doc.key", "", false)
              .ok());
  CommandResult verify = RunCommand(
      {TELEREAD_CLI_BIN, "report", "verify", draft + ".forged", "--ca", (server_.pki() / "ca.pem").string()});
  CHECK(verify.exit_code == 1);
  CHECK_THAT(verify.output, Catch::Contains("expired"));
  // A valid one signs and the server takes it: judged by what the file and the server then hold,
  // not by exit codes alone.
  const std::string unsigned_bytes = ReadFile(draft);
  CommandResult signed_now = Cli("wang.li", {"report", "sign", draft});
  INFO(signed_now.output);
  CHECK(signed_now.exit_code == 0);
  CHECK(ReadFile(draft) != unsigned_bytes);
  CommandResult verified =
      RunCommand({TELEREAD_CLI_BIN, "report", "verify", draft, "--ca", (server_.pki() / "ca.pem").string()});
  INFO(verified.output);
  CHECK(verified.exit_code == 0);
  CHECK_THAT(verified.output, Catch::StartsWith("signature valid") && Catch::Contains("CN=wang.li,OU=radiologist"));
  CommandResult submitted = Cli("wang.li", {"report", "submit", draft});
  INFO(submitted.output);
  CHECK(submitted.exit_code == 0);
  HttpReply listed = server_.Call("wang.li", "GET", "/api/v1/studies/" + uid + "/reports");
  REQUIRE(listed.status == 200);
  const json items = listed.Json()["items"];
  REQUIRE(items.size() == 1);
  CHECK(items[0]["signer"] == "wang.li");
  const std::filesystem::path stored = dir_.path() / "stored.dcm";
  server_.Curl("wang.li", "GET", "/api/v1/reports/" + items[0]["sop_instance_uid"].get<std::string>(),
               {"-o", stored.string()});
  CHECK(ReadFile(stored) == ReadFile(draft));  // the server holds the signed file byte for byte
}

TEST_CASE_METHOD(CliFixture, "report new starts from the study's template and an amendment keeps what is not changed",
                 "[cli][templates]") {
  const std::string uid =
      json::parse(Cli("wang.li", {"--json", "worklist", "--modality", "CT"}).output)["items"][0]["study_instance_uid"];
  HttpReply chosen = server_.Call("wang.li", "GET", "/api/v1/studies/" + uid + "/template");
  REQUIRE(chosen.status == 200);
  CHECK(chosen.Json()["name"] == "ct-chest");  // CT, Body Part Examined CHEST
  CHECK(server_.Call("wang.li", "GET", "/api/v1/studies/" + uid + "/template?name=ecg").Json()["name"] == "ecg");
  CHECK(server_.Call("wang.li", "GET", "/api/v1/studies/" + uid + "/template?name=nope").status == 404);
  REQUIRE(Cli("wang.li", {"claim", uid}).exit_code == 0);

  // The editor opens on the template's text and pick-lists.
  const std::filesystem::path seen = dir_.path() / "seen.txt", editor = dir_.path() / "keep.sh";
  WriteFile(editor, "#!/bin/sh\ncp \"$1\" '" + seen.string() + "'\n");
  std::filesystem::permissions(editor, std::filesystem::perms::owner_all);
  const std::filesystem::path first = dir_.path() / "first.dcm";
  CommandResult made =
      RunCommand({"/usr/bin/env", "EDITOR=" + editor.string(), "XDG_CACHE_HOME=" + dir_.path().string(),
                  TELEREAD_CLI_BIN, "--profile", (dir_.path() / "wang.li.toml").string(), "report", "new", uid,
                  "--recommendation", "3个月后复查。", "--submit", "--out", first.string()});
  INFO(made.output);
  REQUIRE(made.exit_code == 0);
  CHECK_THAT(ReadFile(seen), Catch::Contains("# Template: ct-chest") &&
                                 Catch::Contains("# 结节 nodule: [磨玻璃结节] [实性结节]") &&
                                 Catch::Contains("肺野：双肺纹理清晰") && Catch::Contains("3个月后复查。"));
  const json report = json::parse(Cli("wang.li", {"--json", "report", "verify", first.string()}).output)["report"];
  CHECK_THAT(report["findings"].get<std::string>(), Catch::StartsWith("肺野：双肺纹理清晰"));
  CHECK(report["impression"] == "胸部CT平扫未见明显异常。");

  const std::filesystem::path second = dir_.path() / "second.dcm";
  CommandResult amended = Cli("wang.li", {"report", "amend", report["sop_instance_uid"], "--findings",
                                          "右肺上叶见一直径约8mm磨玻璃结节。", "--submit", "--out", second.string()});
  INFO(amended.output);
  REQUIRE(amended.exit_code == 0);
  CHECK_THAT(amended.output, Catch::Contains("kept from the amended report: impression recommendation"));
  const json revised = json::parse(Cli("wang.li", {"--json", "report", "verify", second.string()}).output)["report"];
  CHECK(revised["findings"] == "右肺上叶见一直径约8mm磨玻璃结节。");
  CHECK(revised["impression"] == "胸部CT平扫未见明显异常。");
  CHECK(revised["recommendation"] == "3个月后复查。");
}
