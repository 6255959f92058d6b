// report new|sign|submit|amend|get|verify, reports, outbox.
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common/dicom.h"
#include "common/report.h"
#include "common/signing.h"
#include "viewer/cli.h"
#include "viewer/fetch.h"

namespace teleread::viewer {
namespace {

namespace fs = std::filesystem;

struct ReportOptions {
  std::string study, file, out, findings, impression, recommendation, text_file, passphrase_file, ca, crl, sop;
  std::string accession, patient, state, template_name;
  bool critical = false, sign = false, submit = false, no_edit = false, pdf = false;
  int64_t id = 0;
};

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool WriteBytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  return static_cast<bool>(out.flush());
}

fs::path WorkDir() {
  fs::path dir = DefaultCacheDir() / "reports";
  std::error_code ec;
  fs::create_directories(dir, ec);
  return dir;
}

// Sections of the editor template, each introduced by "<Name>:" at the start of a line.
std::string Template(const json& study, const ReportContent& c, const std::string& hints) {
  std::ostringstream t;
  // Identity first, so the radiologist sees whose study this report is about before writing it.
  t << "# TeleRead report for " << study.value("patient_name", "") << "  ID " << study.value("patient_id", "")
    << "  born " << study.value("patient_birth_date", "") << "  " << study.value("patient_sex", "") << " "
    << study.value("patient_age", "") << "\n"
    << "# study " << study.value("study_instance_uid", "") << "  accession " << study.value("accession_number", "")
    << "\n"
    << "# " << study.value("description", "") << "  " << study.value("modalities", "") << "  "
    << study.value("study_date", "") << "  from " << study.value("member", "") << "  referring "
    << study.value("referring_physician", "") << "\n"
    << "# Lines starting with # are ignored. An empty Findings or Impression cancels the report.\n"
    << hints << "Findings:\n"
    << c.findings << "\n\nImpression:\n"
    << c.impression << "\n\nRecommendation:\n"
    << c.recommendation << "\n\nCritical finding: " << (c.critical ? "yes" : "no") << "\n";
  return t.str();
}

void ParseTemplate(const std::string& text, ReportContent& c) {
  std::istringstream in(text);
  std::string line, section;
  std::map<std::string, std::string> parts;
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] == '#') continue;
    if (line.rfind("Critical finding:", 0) == 0) {
      std::string v = line.substr(17);
      for (char& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      c.critical = v.find("yes") != std::string::npos || v.find("true") != std::string::npos;
      section.clear();
      continue;
    }
    bool header = false;
    for (const char* name : {"Findings:", "Impression:", "Recommendation:"}) {
      if (line.rfind(name, 0) == 0) {
        section = name;
        header = true;
        std::string rest = line.substr(std::string(name).size());
        if (rest.find_first_not_of(' ') != std::string::npos)
          parts[section] += rest.substr(rest.find_first_not_of(' '));
      }
    }
    if (header || section.empty()) continue;
    if (!parts[section].empty()) parts[section] += "\n";
    parts[section] += line;
  }
  auto trim = [](std::string s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    size_t b = s.find_first_not_of(" \n\t");
    return b == std::string::npos ? std::string() : s.substr(b);
  };
  c.findings = trim(parts["Findings:"]);
  c.impression = trim(parts["Impression:"]);
  c.recommendation = trim(parts["Recommendation:"]);
}

// Opens $EDITOR (then $VISUAL, then vi) on the template; false when the editor failed.
bool Edit(const json& study, ReportContent& c, const std::string& hints) {
  const fs::path draft = WorkDir() / (study.value("study_instance_uid", "report") + ".txt");
  if (!WriteBytes(draft, Template(study, c, hints))) return false;
  const char* editor = std::getenv("EDITOR");
  if (!editor || !*editor) editor = std::getenv("VISUAL");
  const std::string command = std::string(editor && *editor ? editor : "vi") + " '" + draft.string() + "'";
  if (std::system(command.c_str()) != 0) return false;
  ParseTemplate(ReadText(draft), c);
  return true;
}

// The key's passphrase: from a file, else asked on the terminal when the key is encrypted.
std::optional<std::string> Passphrase(const Profile& p, const std::string& passphrase_file) {
  if (!passphrase_file.empty()) {
    std::string s = ReadText(passphrase_file);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
  }
  if (ReadText(p.key).find("ENCRYPTED") == std::string::npos) return std::string();
  FILE* tty = std::fopen("/dev/tty", "r+");
  if (!tty) {
    Fail("the key " + p.key.string() + " is encrypted: give --passphrase-file or run on a terminal");
    return std::nullopt;
  }
  std::fprintf(tty, "Passphrase for %s: ", p.key.c_str());
  std::fflush(tty);
  termios old{};
  tcgetattr(fileno(tty), &old);
  termios quiet = old;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
  char buf[512] = {};
  const bool got = std::fgets(buf, sizeof buf, tty) != nullptr;
  tcsetattr(fileno(tty), TCSAFLUSH, &old);
  std::fprintf(tty, "\n");
  std::fclose(tty);
  if (!got) return std::nullopt;
  std::string s(buf);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

int Sign(Session& s, const fs::path& in, const fs::path& out, const std::string& passphrase_file) {
  const Profile* p = s.LoadedProfile();
  if (!p) return 1;
  std::optional<std::string> pass = Passphrase(*p, passphrase_file);
  if (!pass) return 1;
  if (Status st = SignReportFile(in, out, p->certificate, p->key, *pass); !st.ok()) return Fail(st.message());
  return 0;
}

int Submit(Session& s, const fs::path& file) {
  ApiClient* api = s.Api();
  if (!api) return 1;
  Result<ReportInfo> info = ReadReport(file);
  if (!info.ok()) return Fail(info.status().message());
  auto r = CallJson(*api, "POST", "/api/v1/studies/" + info->study_instance_uid + "/reports", ReadText(file),
                    "application/dicom");
  if (!r) return 1;
  if (s.as_json) {
    std::cout << r->dump(2) << "\n";
  } else {
    std::cout << "submitted " << (*r)["sop_instance_uid"].get<std::string>() << " for study "
              << info->study_instance_uid << (r->value("amends", json()).is_null() ? "" : " (amendment)")
              << "; delivery to the member is queued\n";
  }
  return 0;
}

// Builds a report of `study_uid`: patient and study from one of its instances, every image
// instance as evidence. Writes the unsigned SR to `out`.
int Compose(Session& s, const std::string& study_uid, ReportContent content, bool edit,
            const std::optional<InstanceRef>& predecessor, const fs::path& out, const std::string& hints,
            std::string& patient) {
  ApiClient* api = s.Api();
  if (!api) return 1;
  auto who = CallJson(*api, "GET", "/api/v1/whoami");
  if (!who) return 1;
  if ((*who)["role"] != "radiologist")
    return Fail("only a radiologist writes reports; this profile is " + (*who)["role"].get<std::string>());
  auto study = CallJson(*api, "GET", "/api/v1/studies/" + study_uid);
  if (!study) return 1;
  patient = study->value("patient_name", "") + " (ID " + study->value("patient_id", "") + ", " +
            study->value("patient_sex", "") + " " + study->value("patient_age", "") + "), accession " +
            study->value("accession_number", "") + ", " + study->value("study_date", "");
  if (edit && !Edit(*study, content, hints)) return Fail("the editor failed; nothing was written");
  if (content.findings.empty() || content.impression.empty()) {
    return Fail("findings and impression are both required; nothing was written");
  }
  content.radiologist_id = (*who)["id"];
  content.radiologist_name = who->value("name", content.radiologist_id);
  content.organization = (*who)["server"];

  ReportRequest req;
  req.content = content;
  req.predecessor = predecessor;
  std::string first_image;
  for (const json& se : (*study)["series"]) {
    for (const json& in : se["instances"]) {
      const std::string cls = in["sop_class_uid"];
      if (cls == kBasicTextSrClass || cls == kEnhancedSrClass) continue;  // earlier reports are not evidence
      req.evidence.push_back(InstanceRef{se["series_instance_uid"], cls, in["sop_instance_uid"]});
      if (first_image.empty()) first_image = in["sop_instance_uid"];
    }
  }
  if (first_image.empty()) return Fail("study " + study_uid + " has no instances to report on");
  Result<ApiResponse> inst = api->Call("GET", "/api/v1/studies/" + study_uid + "/instances/" + first_image);
  if (!inst.ok() || inst->status != 200) return Fail("cannot download an instance of the study");
  req.study_instance = WorkDir() / (first_image + ".dcm");
  if (!WriteBytes(req.study_instance, inst->body)) return Fail("cannot write " + req.study_instance.string());
  Status st = WriteReport(req, out);
  std::error_code ec;
  fs::remove(req.study_instance, ec);
  if (!st.ok()) return Fail(st.message());
  return 0;
}

// A first report is signed only under the caller's live claim: renewing it checks that before
// anything is written and keeps the lease from running out while the report is written.
int RenewClaim(Session& s, const std::string& study_uid) {
  ApiClient* api = s.Api();
  if (!api) return 1;
  return CallJson(*api, "POST", "/api/v1/studies/" + study_uid + "/renew") ? 0 : 1;
}

// new, or amend when `predecessor` is set: compose, then optionally sign and submit.
int NewReport(Session& s, const ReportOptions& o, const std::string& study_uid,
              const std::optional<InstanceRef>& predecessor, ReportContent content) {
  // A first report starts from the study's template; an amendment from the report it revises,
  // and keeps every section the radiologist does not change.
  std::string hints;
  if (!predecessor && !StartFromTemplate(s, study_uid, o.template_name, content, &hints)) return 1;
  if (predecessor && o.text_file.empty() && !(o.findings.empty() && o.impression.empty())) {
    std::string kept;
    if (o.findings.empty() && !content.findings.empty()) kept += " findings";
    if (o.impression.empty() && !content.impression.empty()) kept += " impression";
    if (o.recommendation.empty() && !content.recommendation.empty()) kept += " recommendation";
    if (!kept.empty()) std::cerr << "teleread: kept from the amended report:" << kept << "\n";
  }
  if (!o.findings.empty()) content.findings = o.findings;
  if (!o.impression.empty()) content.impression = o.impression;
  if (!o.recommendation.empty()) content.recommendation = o.recommendation;
  if (o.critical) content.critical = true;
  bool edit = o.findings.empty() && o.impression.empty() && !o.no_edit;
  if (!o.text_file.empty()) {
    ParseTemplate(ReadText(o.text_file), content);
    edit = false;
  }
  const fs::path out =
      o.out.empty() ? WorkDir() / (study_uid + (predecessor ? ".amendment.dcm" : ".report.dcm")) : fs::path(o.out);
  const bool under_claim = !predecessor && (o.sign || o.submit);
  if (under_claim && RenewClaim(s, study_uid) != 0) return 1;
  std::string patient;
  if (int rc = Compose(s, study_uid, content, edit, predecessor, out, hints, patient); rc != 0) return rc;
  if (under_claim && RenewClaim(s, study_uid) != 0) return 1;
  if (!s.as_json) std::cout << "report for " << patient << "\n";
  if (!o.sign && !o.submit) {
    std::cout << "draft written to " << out.string() << "; sign it with `teleread report sign " << out.string()
              << "`\n";
    return 0;
  }
  if (int rc = Sign(s, out, out, o.passphrase_file); rc != 0) return rc;
  if (!o.submit) {
    std::cout << "signed report written to " << out.string() << "\n";
    return 0;
  }
  return Submit(s, out);
}

int Verify(Session& s, const ReportOptions& o) {
  InitializeDicom();
  InitializeSigning();
  std::string ca = o.ca;
  if (ca.empty()) {
    const Profile* p = s.LoadedProfile();
    if (!p) return Fail("give the CA bundle with --ca");
    ca = p->ca.string();
  }
  Result<VerifiedSigner> signer = VerifyReportSignature(o.file, ca, o.crl);
  Result<ReportInfo> info = ReadReport(o.file);
  if (s.as_json) {
    json j{{"file", o.file}, {"valid", signer.ok() && info.ok()}};
    if (!signer.ok()) j["error"] = signer.status().message();
    if (signer.ok()) {
      j["signer"] =
          json{{"subject", signer->subject}, {"common_name", signer->common_name}, {"signed_at", signer->signed_at}};
    }
    if (info.ok()) {
      j["report"] = json{{"sop_instance_uid", info->sop_instance_uid},
                         {"study_instance_uid", info->study_instance_uid},
                         {"patient_id", info->patient_id},
                         {"patient_name", info->patient_name},
                         {"completion", info->completion_flag},
                         {"verification", info->verification_flag},
                         {"verifying_observer", info->content.radiologist_name},
                         {"findings", info->content.findings},
                         {"impression", info->content.impression},
                         {"recommendation", info->content.recommendation},
                         {"critical", info->content.critical},
                         {"amends", info->predecessor ? json(info->predecessor->sop_instance_uid) : json(nullptr)}};
    } else {
      j["error"] = info.status().message();
    }
    std::cout << j.dump(2) << "\n";
    return signer.ok() && info.ok() ? 0 : 1;
  }
  if (!signer.ok()) return Fail("NOT VALID: " + signer.status().message());
  if (!info.ok()) return Fail("NOT VALID: " + info.status().message());
  const char* ok = Ansi("\033[1;32m");
  std::cout << ok << "signature valid" << (*ok ? Ansi("\033[0m") : "") << "\n"
            << "signer:      " << signer->subject << "\n"
            << "signed at:   " << signer->signed_at << "\n"
            << "status:      " << info->completion_flag << ", " << info->verification_flag << " by "
            << info->content.radiologist_name << " (" << info->content.organization << ")\n"
            << "patient:     " << info->patient_name << " (" << info->patient_id << ")\n"
            << "study:       " << info->study_instance_uid << "\n";
  if (info->predecessor) std::cout << "amends:      " << info->predecessor->sop_instance_uid << "\n";
  if (info->content.critical) std::cout << Ansi("\033[1;31m") << "CRITICAL FINDING" << Ansi("\033[0m") << "\n";
  std::cout << "\nFindings:\n" << info->content.findings << "\n\nImpression:\n" << info->content.impression << "\n";
  if (!info->content.recommendation.empty()) std::cout << "\nRecommendation:\n" << info->content.recommendation << "\n";
  return 0;
}

int ListReports(Session& s, const ReportOptions& o) {
  if (!o.study.empty() && !IsUid(o.study)) {
    return Fail("'" + o.study + "' is not a Study Instance UID (digits and dots, at most 64 characters)");
  }
  ApiClient* api = s.Api();
  if (!api) return 1;
  std::string q;
  if (!o.study.empty()) q = "study=" + o.study;
  if (!o.accession.empty()) q = "accession=" + o.accession;
  if (!o.patient.empty()) q = "patient=" + o.patient;
  if (q.empty()) return Fail("name --study, --accession or --patient");
  auto r = CallJson(*api, "GET", "/api/v1/reports?" + q);
  if (!r) return 1;
  if (s.as_json) {
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  std::printf("%-12s %-10s %-16s %-10s %-9s %-9s %-8s %s\n", "ACCEPTED", "MEMBER", "ACCESSION", "SIGNER", "DELIVERY",
              "PDF COPY", "NOTE", "REPORT");
  for (const json& i : (*r)["items"]) {
    std::string note = i["critical"].get<bool>() ? "critical" : "";
    if (!i["amended_by"].is_null()) note = "revised";
    if (!i["amends"].is_null()) note += note.empty() ? "amends" : ",amends";
    const std::string pdf = i["pdf"].is_null() ? "-" : i["pdf"]["delivery"]["state"].get<std::string>();
    std::printf("%-12s %-10s %-16s %-10s %-9s %-9s %-8s %s\n", ClockText(i["accepted_ms"].get<int64_t>()).c_str(),
                i["member"].get<std::string>().c_str(), i["accession_number"].get<std::string>().c_str(),
                i["signer"].get<std::string>().c_str(), i["delivery"]["state"].get<std::string>().c_str(), pdf.c_str(),
                note.c_str(), i["sop_instance_uid"].get<std::string>().c_str());
  }
  return 0;
}

int GetReport(Session& s, const ReportOptions& o) {
  ApiClient* api = s.Api();
  if (!api) return 1;
  Result<ApiResponse> r = api->Call("GET", "/api/v1/reports/" + o.sop + (o.pdf ? "/pdf" : ""));
  if (!r.ok()) return Fail(r.status().message());
  if (r->status != 200) {
    json body = json::parse(r->body, nullptr, false);
    return Fail((body.is_object() ? body.value("error", r->body) : r->body) + " (HTTP " + std::to_string(r->status) +
                ")");
  }
  const fs::path out = !o.out.empty() ? fs::path(o.out) : fs::path(o.sop + (o.pdf ? ".pdf" : ".dcm"));
  if (!WriteBytes(out, r->body)) return Fail("cannot write " + out.string());
  if (o.pdf) {
    std::cout << "PDF copy written to " << out.string() << " (" << r->body.size()
              << " bytes); the signed SR is the authoritative report: `teleread report get " << o.sop << "`\n";
  } else {
    std::cout << "report written to " << out.string() << "; check it with `teleread report verify " << out.string()
              << " --ca CA.pem`\n";
  }
  return 0;
}

int Outbox(Session& s, const ReportOptions& o, bool retry) {
  ApiClient* api = s.Api();
  if (!api) return 1;
  if (retry) {
    auto r = CallJson(*api, "POST", "/api/v1/deliveries/" + std::to_string(o.id) + "/retry");
    if (!r) return 1;
    std::cout << "delivery " << o.id << " will be tried again now\n";
    return 0;
  }
  auto r = CallJson(*api, "GET", "/api/v1/deliveries" + (o.state.empty() ? "" : "?state=" + o.state));
  if (!r) return 1;
  if (s.as_json) {
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  std::printf("%-6s %-10s %-10s %-8s %s\n", "ID", "MEMBER", "STATE", "ATTEMPTS", "REPORT / LAST ERROR");
  for (const json& d : (*r)["items"]) {
    std::printf("%-6lld %-10s %-10s %-8lld %s%s%s\n", static_cast<long long>(d["id"].get<int64_t>()),
                d["member"].get<std::string>().c_str(), d["state"].get<std::string>().c_str(),
                static_cast<long long>(d["attempts"].get<int64_t>()), d["sop_instance_uid"].get<std::string>().c_str(),
                d["last_error"].get<std::string>().empty() ? "" : "  ", d["last_error"].get<std::string>().c_str());
  }
  return 0;
}

void AddContentOptions(CLI::App* c, ReportOptions& o) {
  c->add_option("--findings", o.findings, "Findings text (else $EDITOR opens a template)");
  c->add_option("--impression", o.impression, "Impression text");
  c->add_option("--recommendation", o.recommendation, "Recommendation text");
  c->add_flag("--critical", o.critical, "A critical finding, communicated at once");
  c->add_option("--file", o.text_file, "Read the sections from a filled-in template")->check(CLI::ExistingFile);
  c->add_option("--out", o.out, "Where to write the report (default: the cache)");
  c->add_flag("--sign", o.sign, "Sign it with your key");
  c->add_flag("--submit", o.submit, "Sign and submit it in one step");
  c->add_flag("--no-edit", o.no_edit, "Take the template's (or amended report's) text as it is, without $EDITOR");
  c->add_option("--passphrase-file", o.passphrase_file, "The key's passphrase (else asked on the terminal)");
}

}  // namespace

void AddReportCommands(CLI::App& app, Session& s) {
  auto o = std::make_shared<ReportOptions>();
  CLI::App* report = app.add_subcommand("report", "Write, sign, submit, amend, fetch and verify reports");
  report->require_subcommand(1);

  CLI::App* create = report->add_subcommand("new", "Write a report of a study you have claimed");
  create->add_option("study", o->study, "Study Instance UID")->required();
  AddContentOptions(create, *o);
  create->add_option("--template", o->template_name,
                     "Start from this template (default: the study's, by modality "
                     "and body part)");
  create->callback([&s, o] {
    InitializeDicom();
    s.exit_code = NewReport(s, *o, o->study, std::nullopt, ReportContent{});
  });

  CLI::App* sign = report->add_subcommand("sign", "Sign a report with the key in your profile");
  sign->add_option("file", o->file, "Report file")->required()->check(CLI::ExistingFile);
  sign->add_option("--out", o->out, "Signed file (default: in place)");
  sign->add_option("--passphrase-file", o->passphrase_file, "The key's passphrase (else asked on the terminal)");
  sign->callback([&s, o] {
    InitializeDicom();
    s.exit_code = Sign(s, o->file, o->out.empty() ? o->file : o->out, o->passphrase_file);
    if (s.exit_code == 0) std::cout << "signed " << (o->out.empty() ? o->file : o->out) << "\n";
  });

  CLI::App* submit = report->add_subcommand("submit", "Submit a signed report");
  submit->add_option("file", o->file, "Signed report file")->required()->check(CLI::ExistingFile);
  submit->callback([&s, o] {
    InitializeDicom();
    s.exit_code = Submit(s, o->file);
  });

  CLI::App* amend = report->add_subcommand("amend", "Revise a signed report with a new signed one that points to it");
  amend->add_option("report", o->sop, "SOP Instance UID of the report to revise")->required();
  AddContentOptions(amend, *o);
  amend->callback([&s, o] {
    InitializeDicom();
    ApiClient* api = s.Api();
    if (!api) {
      s.exit_code = 1;
      return;
    }
    Result<ApiResponse> r = api->Call("GET", "/api/v1/reports/" + o->sop);
    if (!r.ok() || r->status != 200) {
      s.exit_code = Fail("cannot fetch report " + o->sop + (r.ok() ? " (HTTP " + std::to_string(r->status) + ")" : ""));
      return;
    }
    const fs::path old = WorkDir() / (o->sop + ".dcm");
    WriteBytes(old, r->body);
    Result<ReportInfo> info = ReadReport(old);
    if (!info.ok()) {
      s.exit_code = Fail(info.status().message());
      return;
    }
    const InstanceRef predecessor{info->series_instance_uid, info->sop_class_uid, info->sop_instance_uid};
    s.exit_code = NewReport(s, *o, info->study_instance_uid, predecessor, info->content);
  });

  CLI::App* get = report->add_subcommand("get", "Download a report (the signed SR), or its PDF copy");
  get->add_option("report", o->sop, "SOP Instance UID of the report")->required();
  get->add_flag("--pdf", o->pdf,
                "Save the report's PDF copy instead: the PDF document itself (not its DICOM Encapsulated PDF "
                "wrapper), to open in any PDF viewer");
  get->add_option("-o,--out", o->out, "Output file (default: <UID>.dcm, with --pdf <UID>.pdf)");
  get->callback([&s, o] { s.exit_code = GetReport(s, *o); });

  CLI::App* verify = report->add_subcommand("verify", "Check a report's signature and chain offline, and show it");
  verify->add_option("file", o->file, "Report file")->required()->check(CLI::ExistingFile);
  verify->add_option("--ca", o->ca, "The reading centre's CA bundle (default: the profile's)")
      ->check(CLI::ExistingFile);
  verify->add_option("--crl", o->crl, "The centre CA's revocation list: a revoked signer fails")
      ->check(CLI::ExistingFile);
  verify->callback([&s, o] { s.exit_code = Verify(s, *o); });

  CLI::App* reports = app.add_subcommand("reports", "List the reports you may see");
  auto* which = reports->add_option_group("which", "one of");
  which->add_option("--study", o->study, "Study Instance UID");
  which->add_option("--accession", o->accession, "Accession Number");
  which->add_option("--patient", o->patient, "Patient ID");
  which->require_option(1);
  reports->callback([&s, o] { s.exit_code = ListReports(s, *o); });

  CLI::App* outbox = app.add_subcommand("outbox", "Report deliveries to member hospitals (admin)");
  outbox->add_option("--state", o->state, "pending, delivered or dead")
      ->check(CLI::IsMember({"pending", "delivered", "dead"}));
  CLI::App* retry = outbox->add_subcommand("retry", "Try a dead (or pending) delivery again now");
  retry->add_option("id", o->id, "Delivery id (from `teleread outbox`)")->required();
  outbox->callback([&s, o, retry] {
    if (!*retry) s.exit_code = Outbox(s, *o, false);
  });
  retry->callback([&s, o] { s.exit_code = Outbox(s, *o, true); });
}

}  // namespace teleread::viewer
