#pragma once
// What each fuzz target does with one input. The libFuzzer targets (tests/fuzz/fuzz_*.cc) and the
// unit test that replays the corpora and the saved crashes (tests/unit/fuzz_regressions_test.cc)
// share these, so a crash found by the fuzzer reproduces in the normal and ASan test builds.
// Every entry point runs the server's own code on the bytes and must return, whatever they are.
//
// Thread-safety: none; one input at a time, as libFuzzer runs them.
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/dicom.h"
#include "common/report.h"
#include "common/signing.h"
#include "server/http/https_server.h"

namespace teleread::fuzz {

// Silences spdlog and DCMTK's loggers: a fuzzer's millions of refused inputs would flood stderr
// and slow it down. Call once; it cannot be undone.
void QuietLogging();

// tests/fuzz in the source tree: data/ (the fixture study and CA), corpus/<target>/ and
// regressions/<target>/.
std::filesystem::path FuzzDir();

// The bytes as a received object (Part 10 or a bare data set), through what ingest runs on it:
// ReadInstanceSummary (the element scan first), the patient name's index keys, and, as for a
// re-sent duplicate, SameDataSet against data/study.dcm.
Result<InstanceSummary> DatasetSummary(std::string_view bytes);

struct CharsetOutcome {
  Result<std::string> decoded;  // DecodeToUtf8(value, text)
  Result<std::string> encoded;  // EncodeFromUtf8(value, text)
  std::string broken;           // the first invariant that failed; empty when all held
};

// Up to the first '\n' a Specific Character Set value, the rest text: decoded from it (as a
// plain value and as a person name), encoded to it as if it were UTF-8, and through common/text.h.
// Invariants: what EncodeFromUtf8 produced decodes back to the same UTF-8; PadToWidth of valid
// UTF-8 is exactly as wide as asked.
CharsetOutcome Charset(std::string_view bytes);

struct ReportOutcome {
  Result<ReportInfo> report;
  Result<VerifiedSigner> signer;
};

// The bytes as a submitted report file: ReadReport, and VerifyReportSignature against
// data/ca.pem (the CA that signed the corpus' reports), each whatever the other says.
ReportOutcome Report(std::string_view bytes);

// The reading API behind its transport, without sockets or TLS, set up once in a scratch
// directory: the sample consortium's config with data/ca.pem as the centre CA, an index holding
// data/study.dcm from zhuozhou as a reading task claimed by wang.li, the report desk and the
// outbox (not sending). The clock stands still. State carries over from one input to the next.
class HttpTarget {
 public:
  HttpTarget();  // throws std::runtime_error when the set-up fails
  ~HttpTarget();
  HttpTarget(const HttpTarget&) = delete;
  HttpTarget& operator=(const HttpTarget&) = delete;

  // The first byte picks the caller's certificate: radiologist wang.li, admin ops, member
  // ZZ_PACS, or none. The rest is read as HTTP/1.1 requests on one keep-alive connection, by
  // Boost.Beast's request_parser with the transport's header and body limits; each complete
  // request goes to ReadingApi::Handle. Returns the answers in order; a request over a limit
  // is answered 413 and ends the connection, as the transport does.
  std::vector<HttpResponse> Exchange(std::string_view bytes);

  // The Study Instance UID of data/study.dcm.
  const std::string& study_uid() const;

 private:
  struct Parts;
  std::unique_ptr<Parts> parts_;
};

// The bytes as a C-FIND, C-MOVE or C-GET identifier arriving from the network, through what the
// Q/R services run on it, against an index holding data/study.dcm from zhuozhou (set up once).
// The first byte picks the model (FIND, MOVE or GET; Patient or Study Root) and the caller's
// scope (zhuozhou, laishui or the centre); the rest is written to a file as ReceiveDataSet writes
// an identifier, read by ReadQueryIdentifier, then matched: QueryEngine::Find for C-FIND (up to
// 64 rows), QueryEngine::Retrieve for C-MOVE/C-GET. Invariant: a member's request never returns
// another member's study. Returns what broke it, empty when it held.
std::string QueryIdentifier(std::string_view bytes);

}  // namespace teleread::fuzz
