#include "tests/fuzz/targets.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/oflog/oflog.h"

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <iterator>
#include <stdexcept>

#include "common/config.h"
#include "common/dicom.h"
#include "common/log.h"
#include "common/text.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "server/dicom/qr_scp.h"
#include "server/dicom/report_sender.h"
#include "server/http/reading_api.h"
#include "server/reading/ingest.h"
#include "server/reading/outbox.h"
#include "server/reading/report_desk.h"
#include "server/reading/worklist.h"
#include "server/store/index.h"
#include "server/store/object_store.h"
#include "server/store/query.h"
#include "server/store/stores.h"
#include "tests/support/process.h"

namespace teleread::fuzz {
namespace {

namespace fs = std::filesystem;
namespace http = boost::beast::http;

// One file per process, rewritten for every input: the entry points under test take paths.
fs::path InputFile(const char* name) {
  static test::ScratchDir dir("teleread-fuzz");
  return dir.path() / name;
}

fs::path WriteInput(const char* name, std::string_view bytes) {
  fs::path file = InputFile(name);
  test::WriteFile(file, std::string(bytes));
  return file;
}

void InitializeOnce() {
  static const bool done = (InitializeDicom(), InitializeSigning(), true);
  (void)done;
}

// Well-formed UTF-8 (RFC 3629): shortest form, no surrogates, nothing above U+10FFFF.
bool IsValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    char32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (size_t k = 1; k < len; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = cp << 6 | (d & 0x3F);
    }
    static constexpr char32_t kShortest[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kShortest[len] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return false;
    i += len;
  }
  return true;
}

// The text.h functions the index and the listings run on names and descriptions.
std::string CheckText(std::string_view s, int width) {
  (void)DisplayWidth(s);
  (void)PersonNameKeys(s);
  (void)SplitNonEmpty(s, '\\');
  if (FoldCase(s).size() != s.size()) return "FoldCase changed the length";
  const std::string padded = PadToWidth(s, width);
  if (IsValidUtf8(s) && DisplayWidth(padded) != width) {
    return "PadToWidth(" + std::to_string(width) + ") is " + std::to_string(DisplayWidth(padded)) + " columns wide";
  }
  return "";
}

const PeerCertificate kCallers[] = {
    {"CN=wang.li,OU=radiologist,O=Lixian Regional Imaging Reading Centre", "wang.li", "radiologist"},
    {"CN=ops,OU=admin,O=Lixian Regional Imaging Reading Centre", "ops", "admin"},
    {"CN=ZZ_PACS,OU=member,O=Lixian Regional Imaging Reading Centre", "ZZ_PACS", "member"},
    {"", "", ""},
};
constexpr size_t kMaxPipelined = 16;
constexpr int64_t kNowMs = 1'800'000'000'000;

}  // namespace

void QuietLogging() {
  InitializeOnce();  // it sets DCMTK's levels, which would undo ours
  spdlog::set_level(spdlog::level::off);
  for (const char* logger : {"dcmtk", "dcmtk.dcmdata", "dcmtk.dcmnet", "dcmtk.dcmsr", "dcmtk.dcmsign"}) {
    OFLog::getLogger(logger).setLogLevel(OFLogger::OFF_LOG_LEVEL);
  }
}

fs::path FuzzDir() { return fs::path(TELEREAD_SOURCE_DIR) / "tests" / "fuzz"; }

Result<InstanceSummary> DatasetSummary(std::string_view bytes) {
  InitializeOnce();
  const fs::path file = WriteInput("object.dcm", bytes);
  Result<InstanceSummary> summary = ReadInstanceSummary(file);
  // The in-place parse (C-STORE, identifiers) must agree with the file parse: where the file is
  // read, memory gives the same summary; what memory accepts, the file accepts (a deflated object
  // is left to the file path).
  Result<InstanceSummary> in_place = ReadInstanceSummaryFromMemory(bytes);
  if (in_place.ok()) {
    if (!summary.ok()) __builtin_trap();
    if (in_place->sop_instance_uid != summary->sop_instance_uid || in_place->patient_name != summary->patient_name ||
        in_place->transfer_syntax_uid != summary->transfer_syntax_uid ||
        in_place->study_instance_uid != summary->study_instance_uid) {
      __builtin_trap();
    }
  }
  if (!summary.ok()) return summary;
  (void)PersonNameKeys(summary->patient_name);
  (void)IsStorageSopClass(summary->sop_class_uid);
  (void)SameDataSet(file, FuzzDir() / "data" / "study.dcm");
  return summary;
}

CharsetOutcome Charset(std::string_view bytes) {
  InitializeOnce();
  const size_t nl = bytes.find('\n');
  const std::string_view charset = bytes.substr(0, nl);
  const std::string_view text = nl == std::string_view::npos ? std::string_view() : bytes.substr(nl + 1);
  const int width = text.empty() ? 0 : static_cast<unsigned char>(text[0]) % 64;
  CharsetOutcome out{DecodeToUtf8(charset, text), EncodeFromUtf8(charset, text), CheckText(text, width)};
  (void)DecodeToUtf8(charset, text, "\\^=");
  if (out.broken.empty() && out.decoded.ok()) out.broken = CheckText(out.decoded.value(), width);
  if (out.broken.empty() && out.encoded.ok() && IsValidUtf8(text)) {
    Result<std::string> back = DecodeToUtf8(charset, out.encoded.value());
    if (!back.ok()) {
      out.broken = "EncodeFromUtf8's output does not decode: " + back.status().message();
    } else if (back.value() != text) {
      out.broken = "EncodeFromUtf8's output decodes to other text";
    }
  }
  return out;
}

ReportOutcome Report(std::string_view bytes) {
  InitializeOnce();
  const fs::path file = WriteInput("report.dcm", bytes);
  return ReportOutcome{ReadReport(file), VerifyReportSignature(file, FuzzDir() / "data" / "ca.pem")};
}

struct HttpTarget::Parts {
  test::ScratchDir dir{"teleread-fuzz-http"};
  Config config;
  std::unique_ptr<ObjectStore> store;
  std::unique_ptr<Index> index;
  std::unique_ptr<Stores> stores;
  std::unique_ptr<DicomReportSender> sender;
  std::unique_ptr<Ingest> ingest;
  std::unique_ptr<Worklist> worklist;
  std::unique_ptr<DeliveryOutbox> outbox;
  std::unique_ptr<ReportDesk> desk;
  std::unique_ptr<ReadingApi> api;
  std::string study_uid;
};

HttpTarget::HttpTarget() : parts_(std::make_unique<Parts>()) {
  InitializeOnce();
  Parts& p = *parts_;
  auto check = [](const Status& s, const std::string& what) {
    if (!s.ok()) throw std::runtime_error("fuzz set-up: " + what + ": " + s.ToString());
  };
  auto clock = [] { return kNowMs; };
  p.config = LoadConfig(fs::path(TELEREAD_SOURCE_DIR) / "config" / "teleread.toml");
  p.config.centre.storage = p.dir.path() / "storage";
  p.config.https.ca = FuzzDir() / "data" / "ca.pem";
  p.store = std::make_unique<ObjectStore>(p.config.centre.storage);
  check(p.store->Prepare(), "storage");
  Result<std::unique_ptr<Index>> index = Index::Open(p.config.centre.storage / "index.sqlite");
  check(index.status(), "index");
  p.index = std::move(index.value());
  p.store->UseIndex(p.index.get());  // a replayed report submission reads the copy stored in the index
  p.ingest = std::make_unique<Ingest>(*p.store, *p.index, clock);
  p.stores = std::make_unique<Stores>(*p.index, clock);
  p.worklist = std::make_unique<Worklist>(p.stores->tasks, p.stores->audit,
                                          int64_t{p.config.reading.lease_minutes} * 60'000, clock);
  // Never started: the outbox only lists and retries rows here.
  p.sender = std::make_unique<DicomReportSender>(p.config.centre.ae_title, 1, nullptr);
  p.outbox = std::make_unique<DeliveryOutbox>(p.config, p.stores->deliveries, *p.store, *p.sender, clock);
  p.desk = std::make_unique<ReportDesk>(p.config, p.stores->reports, *p.store, *p.ingest, clock, nullptr);
  p.api = std::make_unique<ReadingApi>(p.config, *p.worklist, p.stores->reads, *p.store, std::vector<MetricsSource>{},
                                       p.desk.get(), p.outbox.get());

  // The study arrives from zhuozhou as the listener would hand it over, becomes a task and is claimed.
  const fs::path study = FuzzDir() / "data" / "study.dcm";
  Result<InstanceSummary> summary = ReadInstanceSummary(study);
  check(summary.status(), "read " + study.string());
  const fs::path temp = p.store->NewTempPath();
  fs::copy_file(study, temp);
  StoreOutcome stored =
      p.ingest->Store({temp, "ZZ_PACS", "zhuozhou", summary->sop_class_uid, summary->sop_instance_uid, {}, {}});
  if (stored.code != IngestCode::kStored) throw std::runtime_error("fuzz set-up: store: " + stored.error_comment);
  Result<int> promoted = p.index->PromoteQuietStudies(kNowMs, 0);
  check(promoted.status(), "promote");
  p.study_uid = summary->study_instance_uid;
  check(p.worklist->Claim(p.study_uid, "wang.li").status(), "claim");
}

HttpTarget::~HttpTarget() = default;

const std::string& HttpTarget::study_uid() const { return parts_->study_uid; }

std::vector<HttpResponse> HttpTarget::Exchange(std::string_view bytes) {
  std::vector<HttpResponse> answers;
  if (bytes.empty()) return answers;
  const PeerCertificate& peer = kCallers[static_cast<unsigned char>(bytes[0]) % std::size(kCallers)];
  bytes.remove_prefix(1);
  while (!bytes.empty() && answers.size() < kMaxPipelined) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kMaxHttpHeaderBytes);
    parser.body_limit(parts_->config.https.max_body_bytes);
    parser.eager(true);
    boost::beast::error_code ec;
    while (!parser.is_done() && !bytes.empty()) {
      const size_t used = parser.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
      bytes.remove_prefix(used);
      if (ec == http::error::need_more && used > 0) ec = {};
      if (ec || used == 0) break;
    }
    if (ec == http::error::body_limit || ec == http::error::header_limit) {
      answers.push_back(HttpResponse{413, "application/json", R"({"error":"request too large"})", {}, {}});
      break;
    }
    if (!parser.is_done()) break;  // a bad request ends the connection; an incomplete one waits
    http::request<http::string_body> req = parser.release();
    const HttpRequest request{std::string(req.method_string()), std::string(req.target()), std::move(req.body()),
                              std::string(req[http::field::content_type])};
    answers.push_back(parts_->api->Handle(request, peer));
    if (!req.keep_alive()) break;
  }
  return answers;
}

namespace {

// An index with data/study.dcm from zhuozhou, made once per process.
struct QueryIndex {
  test::ScratchDir dir{"teleread-fuzz-qr"};
  std::unique_ptr<ObjectStore> store;
  std::unique_ptr<Index> index;
  std::unique_ptr<QueryEngine> engine;
  QueryIndex() {
    InitializeOnce();
    const fs::path storage = dir.path() / "storage";
    store = std::make_unique<ObjectStore>(storage);
    if (!store->Prepare().ok()) throw std::runtime_error("fuzz set-up: storage");
    Result<std::unique_ptr<Index>> opened = Index::Open(storage / "index.sqlite");
    if (!opened.ok()) throw std::runtime_error("fuzz set-up: index: " + opened.status().ToString());
    index = std::move(opened.value());
    Ingest ingest(*store, *index, [] { return kNowMs; });
    const fs::path study = FuzzDir() / "data" / "study.dcm";
    Result<InstanceSummary> summary = ReadInstanceSummary(study);
    if (!summary.ok()) throw std::runtime_error("fuzz set-up: " + summary.status().ToString());
    const fs::path temp = store->NewTempPath();
    fs::copy_file(study, temp);
    StoreOutcome stored =
        ingest.Store({temp, "ZZ_PACS", "zhuozhou", summary->sop_class_uid, summary->sop_instance_uid, {}, {}});
    if (stored.code != IngestCode::kStored) throw std::runtime_error("fuzz set-up: store: " + stored.error_comment);
    engine = std::make_unique<QueryEngine>(storage / "index.sqlite");
  }
};

}  // namespace

std::string QueryIdentifier(std::string_view bytes) {
  static QueryIndex q;
  if (bytes.empty()) return "";
  static const char* const kModels[] = {
      UID_FINDPatientRootQueryRetrieveInformationModel, UID_FINDStudyRootQueryRetrieveInformationModel,
      UID_MOVEPatientRootQueryRetrieveInformationModel, UID_MOVEStudyRootQueryRetrieveInformationModel,
      UID_GETPatientRootQueryRetrieveInformationModel,  UID_GETStudyRootQueryRetrieveInformationModel};
  static const char* const kScopes[] = {"zhuozhou", "laishui", ""};
  const unsigned char pick = static_cast<unsigned char>(bytes[0]);
  const std::string model = kModels[pick % 6];
  const std::string scope = kScopes[(pick / 6) % 3];
  bytes.remove_prefix(1);
  const fs::path file = WriteInput("identifier.dcm", bytes);
  // The server parses a small identifier from memory (InvalidArgument: deflated, parsed from a
  // file): it must accept and refuse what the file path does.
  Result<std::unique_ptr<DicomFile>> in_memory = DicomFile::Parse(bytes);
  if (in_memory.ok() || in_memory.status().code() != Status::Code::kInvalidArgument) {
    const bool from_file = DicomFile::Open(file, 0, true).ok();
    if (in_memory.ok() && !from_file) return "identifier parsed from memory, refused from a file";
    if (!in_memory.ok() && from_file) return "identifier refused from memory, parsed from a file";
  }
  Result<FindRequest> request = ReadQueryIdentifier(file, model, scope);
  if (!request.ok()) return "";
  if (pick % 6 < 2) {  // C-FIND
    Result<std::unique_ptr<FindCursor>> cursor = q.engine->Find(request.value());
    if (!cursor.ok()) return "";
    FindRow row;
    for (int i = 0; i < 64; ++i) {
      Result<bool> more = cursor.value()->Next(&row);
      if (!more.ok() || !more.value()) break;
      if (scope == "laishui") return "laishui found zhuozhou's study";
    }
    return "";
  }
  Result<std::vector<RetrieveItem>> items = q.engine->Retrieve(request.value());
  if (items.ok() && scope == "laishui" && !items->empty()) return "laishui retrieved zhuozhou's study";
  return "";
}

}  // namespace teleread::fuzz
