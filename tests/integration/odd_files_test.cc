// Odd files: a corpus of malformed and unusual objects, built here with DCMTK and raw byte
// edits, sent as data set bytes exactly as written (a raw C-STORE SCU that does not parse or
// re-encode them; TestScu sends a DcmDataset, which DCMTK would re-encode) to the real server as
// ZZ_PACS over one association (a new one after an abort). Each one is stored bit for bit or
// refused with a DIMSE failure status, or, for a stream that breaks the protocol itself, the
// association is aborted; and the server lives on untouched.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <sstream>
#include <thread>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcostrmb.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/dcmnet/dul.h"

#include "common/dicom.h"
#include "samples/synthetic.h"
#include "server/store/sqlite.h"
#include "tests/support/dicom_bytes.h"
#include "tests/support/raw_scu.h"
#include "tests/support/server_fixture.h"
#include "tests/support/stored.h"

using namespace teleread;
using namespace teleread::test;
namespace fs = std::filesystem;

namespace {

// The presentation contexts the raw SCU proposes, by index.
enum ContextIndex : size_t { kExplicitLE = 0, kImplicitLE = 1, kExplicitBE = 2 };

// A small but complete CT image.
std::unique_ptr<DcmDataset> BaseDataset(const std::string& study, const std::string& series, const std::string& sop) {
  auto ds = std::make_unique<DcmDataset>();
  ds->putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 192");
  ds->putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
  ds->putAndInsertString(DCM_SOPInstanceUID, sop.c_str());
  ds->putAndInsertString(DCM_StudyDate, "20261120");
  ds->putAndInsertString(DCM_StudyTime, "083000");
  ds->putAndInsertString(DCM_AccessionNumber, "ODD0001");
  ds->putAndInsertString(DCM_Modality, "CT");
  ds->putAndInsertString(DCM_StudyDescription, "Odd files corpus");
  ds->putAndInsertString(DCM_PatientName, "Odd^Files");
  ds->putAndInsertString(DCM_PatientID, "ODD1");
  ds->putAndInsertString(DCM_PatientBirthDate, "19700101");
  ds->putAndInsertString(DCM_PatientSex, "O");
  ds->putAndInsertString(DCM_StudyInstanceUID, study.c_str());
  ds->putAndInsertString(DCM_SeriesInstanceUID, series.c_str());
  ds->putAndInsertString(DCM_StudyID, "1");
  ds->putAndInsertString(DCM_SeriesNumber, "1");
  ds->putAndInsertString(DCM_InstanceNumber, "1");
  ds->putAndInsertString(DCM_ImageComments, "made by odd_files_test");
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
  ds->putAndInsertUint16(DCM_Rows, 32);
  ds->putAndInsertUint16(DCM_Columns, 32);
  ds->putAndInsertUint16(DCM_BitsAllocated, 16);
  ds->putAndInsertUint16(DCM_BitsStored, 12);
  ds->putAndInsertUint16(DCM_HighBit, 11);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
  std::vector<Uint16> pixels(32 * 32);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<Uint16>((i * 37) & 0x0FFF);
  ds->putAndInsertUint16Array(DCM_PixelData, pixels.data(), static_cast<unsigned long>(pixels.size()));
  return ds;
}

// One top-level element of an encoded little endian data set.
struct Element {
  uint16_t group = 0, element = 0;
  size_t offset = 0;        // of its tag
  size_t value_offset = 0;  // of its value
  size_t length_offset = 0;
  uint32_t length = 0;
  bool long_length = false;  // a 4-byte length field
};

// Walks the top level of a defined-length little endian data set.
std::vector<Element> Walk(const std::string& b, bool explicit_vr) {
  static const char* const kLongVrs[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"};
  std::vector<Element> out;
  size_t at = 0;
  while (at + 8 <= b.size()) {
    Element e;
    e.group = U16(b, at);
    e.element = U16(b, at + 2);
    e.offset = at;
    if (explicit_vr) {
      const std::string vr = b.substr(at + 4, 2);
      e.long_length = std::any_of(std::begin(kLongVrs), std::end(kLongVrs), [&](const char* v) { return vr == v; });
    } else {
      e.long_length = true;
    }
    if (explicit_vr && e.long_length) {
      e.length_offset = at + 8;
      e.length = U32(b, at + 8);
      e.value_offset = at + 12;
    } else if (explicit_vr) {
      e.length_offset = at + 6;
      e.length = U16(b, at + 6);
      e.value_offset = at + 8;
    } else {
      e.length_offset = at + 4;
      e.length = U32(b, at + 4);
      e.value_offset = at + 8;
    }
    out.push_back(e);
    at = e.value_offset + e.length;
  }
  REQUIRE(at == b.size());
  return out;
}

Element Find(const std::string& b, bool explicit_vr, const DcmTagKey& tag) {
  for (const Element& e : Walk(b, explicit_vr)) {
    if (e.group == tag.getGroup() && e.element == tag.getElement()) return e;
  }
  FAIL("no element " << tag.toString().c_str());
  return {};
}

// Inserts `bytes` before the first top-level element whose tag is not less than `before`.
std::string InsertBefore(const std::string& b, const DcmTagKey& before, const std::string& bytes) {
  for (const Element& e : Walk(b, true)) {
    if (DcmTagKey(e.group, e.element) >= before) return b.substr(0, e.offset) + bytes + b.substr(e.offset);
  }
  return b + bytes;
}

// Replaces a short-form explicit element's value and length with `value` as given (any length).
std::string ReplaceValue(const std::string& b, const DcmTagKey& tag, const std::string& value) {
  Element e = Find(b, true, tag);
  std::string out = b.substr(0, e.value_offset) + value + b.substr(e.value_offset + e.length);
  PutU16(out, e.length_offset, static_cast<uint16_t>(value.size()));
  return out;
}

// The data set bytes of a stored object: after the server's file meta header.
std::optional<std::string> DataSetOf(const std::string& file) {
  if (file.size() < 144 || file.compare(128, 4, "DICM") != 0) return std::nullopt;
  const uint64_t offset = 144 + uint64_t{U32(file, 140)};
  if (offset > file.size()) return std::nullopt;
  return file.substr(static_cast<size_t>(offset));
}

struct OddCase {
  std::string name;
  size_t context;
  std::string dataset;
  std::string sop_instance_uid;  // in the C-STORE command, and in the data set when it has one
  // What the server must do: 0 means stored bit for bit; anything else is the refusal status.
  int expected;
};

std::string StatusText(int s) {
  if (s == kAborted) return "association aborted";
  char text[16];
  std::snprintf(text, sizeof text, "0x%04X", static_cast<unsigned>(s));
  return text;
}

}  // namespace

TEST_CASE("odd files are stored bit for bit or refused with a failure status and the server lives on",
          "[odd-files][listener]") {
  InitializeDicom();
  ScratchDir dir;
  TestServer server(dir.path() / "server");
  server.Start();

  const std::string study = samples::NewUid(), series = samples::NewUid();
  std::vector<OddCase> cases;
  // Each case gets its own SOP Instance UID, so that no two can collide in the store.
  auto base = [&](const std::string& sop, E_TransferSyntax xfer = EXS_LittleEndianExplicit) {
    return EncodeDataSet(*BaseDataset(study, series, sop), xfer);
  };
  auto add = [&](const std::string& name, size_t context, int expected,
                 const std::function<std::string(const std::string& sop)>& make) {
    const std::string sop = samples::NewUid();
    cases.push_back({name, context, make(sop), sop, expected});
  };

  add("control: a well-formed object", kExplicitLE, 0x0000, [&](const std::string& sop) { return base(sop); });

  // Truncated objects: the last PDV ends the data set early. The cuts keep the length even
  // (an odd one is a protocol error of its own, below).
  add("truncated in the middle of an element value", kExplicitLE, 0xC000, [&](const std::string& sop) {
    std::string b = base(sop);
    Element e = Find(b, true, DCM_PatientName);
    return b.substr(0, e.value_offset + (e.length / 2 & ~1u));
  });
  add("truncated in the middle of a tag", kExplicitLE, 0xC000, [&](const std::string& sop) {
    std::string b = base(sop);
    return b.substr(0, Find(b, true, DCM_PatientID).offset + 2);
  });
  add("truncated in the middle of a 4-byte length field", kExplicitLE, 0xC000, [&](const std::string& sop) {
    std::string b = base(sop);
    return b.substr(0, Find(b, true, DCM_PixelData).length_offset + 2);
  });
  add("truncated in the pixel data", kExplicitLE, 0xC000, [&](const std::string& sop) {
    std::string b = base(sop);
    Element e = Find(b, true, DCM_PixelData);
    return b.substr(0, e.value_offset + e.length / 2);
  });
  // PS3.8 Annex E: every PDV is of even length. DCMTK's DIMSE layer refuses an odd fragment
  // ("Odd Fragment Length") and the association is aborted, as with any DCMTK-based SCP.
  add("odd total length: truncated in a 2-byte length field", kExplicitLE, kAborted, [&](const std::string& sop) {
    std::string b = base(sop);
    return b.substr(0, Find(b, true, DCM_StudyInstanceUID).offset + 7);
  });
  add("odd total length: one unpadded odd-length value", kExplicitLE, kAborted,
      [&](const std::string& sop) { return ReplaceValue(base(sop), DCM_PatientName, "Odd^Nam"); });

  // Wrong element lengths.
  add("element length longer than the file (short form)", kExplicitLE, 0xC000, [&](const std::string& sop) {
    std::string b = base(sop);
    PutU16(b, Find(b, true, DCM_StudyDescription).length_offset, 0xFFFE);
    return b;
  });
  add("pixel data length longer than the file", kExplicitLE, 0xC000, [&](const std::string& sop) {
    std::string b = base(sop);
    Element e = Find(b, true, DCM_PixelData);
    PutU32(b, e.length_offset, e.length + 1000);
    return b;
  });
  add("odd value lengths consistently encoded (two of them: the total stays even)", kExplicitLE, 0x0000,
      [&](const std::string& sop) {
        return ReplaceValue(ReplaceValue(base(sop), DCM_PatientName, "Odd^Nam"), DCM_StudyDescription, "Odd");
      });
  add("element length one too long (the parse slips by a byte)", kExplicitLE, 0xC000, [&](const std::string& sop) {
    std::string b = base(sop);
    Element e = Find(b, true, DCM_StudyDescription);
    PutU16(b, e.length_offset, static_cast<uint16_t>(e.length + 1));
    return b;
  });

  // Bad VRs in explicit VR.
  add("unknown VR 'ZZ' in explicit VR", kExplicitLE, 0xC000, [&](const std::string& sop) {
    std::string b = base(sop);
    b.replace(Find(b, true, DCM_StudyDescription).offset + 4, 2, "ZZ");
    return b;
  });
  // DCMTK reads an unknown VR of two zero bytes as a 2-byte length field, so the data set parses.
  add("VR of two zero bytes in explicit VR", kExplicitLE, 0x0000, [&](const std::string& sop) {
    std::string b = base(sop);
    b.replace(Find(b, true, DCM_StudyDescription).offset + 4, 2, std::string(2, '\0'));
    return b;
  });

  // Huge declared lengths on elements that are no sequences.
  add("pixel data declared 0xFFFFFFF0 bytes long", kExplicitLE, 0xC000, [&](const std::string& sop) {
    std::string b = base(sop);
    PutU32(b, Find(b, true, DCM_PixelData).length_offset, 0xFFFFFFF0u);
    return b;
  });
  add("a private OB element declared 0xFFFFFFF0 bytes long mid data set", kExplicitLE, 0xC000,
      [&](const std::string& sop) {
        return InsertBefore(base(sop), DcmTagKey(0x0009, 0x0010),
                            ExplicitElement(0x0009, 0x0010, "LO", "TELEREAD ODD") +
                                ExplicitElement(0x0009, 0x1002, "OB", std::string(16, '\x5A'), 0xFFFFFFF0u));
      });
  add("implicit VR Patient Name declared 0xFFFFFFF0 bytes long", kImplicitLE, 0xC000, [&](const std::string& sop) {
    std::string b = base(sop, EXS_LittleEndianImplicit);
    PutU32(b, Find(b, false, DCM_PatientName).length_offset, 0xFFFFFFF0u);
    return b;
  });

  add("sequences nested 1000 deep", kExplicitLE, 0xC000,
      [&](const std::string& sop) { return InsertBefore(base(sop), DCM_PixelData, NestedSequences(1000)); });
  add("sequences nested 100 deep", kExplicitLE, 0x0000,
      [&](const std::string& sop) { return InsertBefore(base(sop), DCM_PixelData, NestedSequences(100)); });

  // A transfer syntax that lies: the bytes are in another encoding than the one negotiated
  // (the server writes the negotiated one into the meta header).
  add("implicit VR data on an explicit VR context", kExplicitLE, 0xC000,
      [&](const std::string& sop) { return base(sop, EXS_LittleEndianImplicit); });
  add("explicit VR data on an implicit VR context", kImplicitLE, 0xC000,
      [&](const std::string& sop) { return base(sop); });
  add("little endian data on a big endian context", kExplicitBE, 0xC000,
      [&](const std::string& sop) { return base(sop); });

  add("private creator and private elements", kExplicitLE, 0x0000, [&](const std::string& sop) {
    std::string binary;
    for (int i = 0; i < 256; ++i) binary.push_back(static_cast<char>(i));
    std::string b = InsertBefore(base(sop), DcmTagKey(0x0009, 0x0010),
                                 ExplicitElement(0x0009, 0x0010, "LO", "TELEREAD ODD") +
                                     ExplicitElement(0x0009, 0x0011, "LO", "ANOTHER CREATOR ") +
                                     ExplicitElement(0x0009, 0x1001, "LO", "private text") +
                                     ExplicitElement(0x0009, 0x1002, "OB", binary) +
                                     ExplicitElement(0x0009, 0x1003, "UN", std::string("\x01\x02\x03\x04", 4)) +
                                     ExplicitElement(0x0009, 0x1104, "DS", "3.14159 "));
    // And a private element whose creator is missing.
    return InsertBefore(b, DcmTagKey(0x0011, 0x0000), ExplicitElement(0x0011, 0x1001, "LO", "no creator"));
  });

  // DCMTK reads the preamble as sixteen empty (0000,0000) elements, "DICM" as a tag and the
  // meta elements as data set elements, then finds the UIDs: stored as received.
  add("a whole Part 10 file (preamble and meta header) sent as the data set", kExplicitLE, 0x0000,
      [&](const std::string& sop) {
        std::unique_ptr<DcmDataset> ds = BaseDataset(study, series, sop);
        DcmFileFormat ff(ds.get());  // copies the data set
        const fs::path f = dir.path() / "part10.dcm";
        REQUIRE(ff.saveFile(f.c_str(), EXS_LittleEndianExplicit).good());
        return ReadFile(f);
      });
  // Both parse (as nothing, or as empty (0000,0000) elements): no SOP Instance UID.
  add("an empty data set", kExplicitLE, 0xA900, [](const std::string&) { return std::string(); });
  add("only the preamble (128 zero bytes)", kExplicitLE, 0xA900,
      [](const std::string&) { return std::string(128, '\0'); });
  add("only the preamble and DICM", kExplicitLE, 0xC000,
      [](const std::string&) { return std::string(128, '\0') + "DICM"; });

  RawStoreScu scu(server.port(), "ZZ_PACS",
                  {{UID_CTImageStorage, UID_LittleEndianExplicitTransferSyntax},
                   {UID_CTImageStorage, UID_LittleEndianImplicitTransferSyntax},
                   {UID_CTImageStorage, UID_BigEndianExplicitTransferSyntax}});
  REQUIRE(Echo(server, "ZZ_PACS").exit_code == 0);
  const fs::path proc = "/proc/" + std::to_string(server.pid());
  const size_t fds_before = CountEntries(proc / "fd"), threads_before = CountEntries(proc / "task");
  REQUIRE(scu.Connect() == "");
  int associations = 1;
  std::ostringstream table;
  for (const OddCase& c : cases) {
    if (!scu.connected()) {
      REQUIRE(scu.Connect() == "");
      ++associations;
    }
    std::string comment;
    const int status = scu.Store(c.context, UID_CTImageStorage, c.sop_instance_uid, c.dataset, &comment);
    const fs::path fetched = dir.path() / "fetched.dcm";
    fs::remove(fetched);
    CommandResult get = server.Curl("wang.li", "GET", "/api/v1/studies/" + study + "/instances/" + c.sop_instance_uid,
                                    {"-o", fetched.string()});
    const std::string http = get.output.substr(get.output.rfind('\n') + 1);
    std::optional<std::string> stored = http == "200" ? DataSetOf(ReadFile(fetched)) : std::nullopt;
    const bool bit_for_bit = stored && *stored == c.dataset;
    table << "  " << c.name << ": " << StatusText(status) << (comment.empty() ? "" : " \"" + comment + "\"")
          << (http == "200" ? bit_for_bit ? ", stored bit for bit" : ", STORED ALTERED" : ", not stored") << "\n";

    INFO("case: " << c.name << "\n  status " << StatusText(status) << " (" << comment << "), GET " << http);
    if (c.expected == 0x0000) {
      CHECK(status == 0x0000);
      CHECK(http == "200");
      CHECK(bit_for_bit);
    } else {
      CHECK(status == c.expected);
      CHECK(http == "404");  // a refused object leaves nothing behind
    }
    if (status == kAborted) CHECK(StillRunning(server));
  }
  scu.Release();
  // The last association winds down: wait for it (generously) rather than for a fixed time.
  WaitFor([&] { return CountEntries(proc / "fd") <= fds_before + 2 && CountEntries(proc / "task") == threads_before; },
          20);
  const size_t fds_after = CountEntries(proc / "fd"), threads_after = CountEntries(proc / "task");
  WARN("odd files, " << cases.size() << " cases over " << associations << " association(s); server file descriptors "
                     << fds_before << " -> " << fds_after << ", threads " << threads_before << " -> " << threads_after
                     << ":\n"
                     << table.str());
  CHECK(fds_after <= fds_before + 2);  // no descriptor per refused or aborted object
  CHECK(threads_after == threads_before);

  // The server is unharmed: it runs, answers an echo and stores a normal object.
  CHECK(StillRunning(server));
  CHECK(Echo(server, "ZZ_PACS").exit_code == 0);
  samples::SeriesSpec spec;
  spec.patient_id = "ODDAFTER";
  spec.rows = spec.columns = 16;
  auto normal = samples::WriteSeries(spec, dir.path() / "normal");
  REQUIRE(normal.ok());
  CHECK(StoreFiles(server, "ZZ_PACS", {normal->front().string()}).exit_code == 0);
  CHECK(fs::is_empty(server.storage() / "tmp"));

  // A raw data set file without a meta header, as storescu sends it (it re-encodes, so the
  // comparison is against the file's bytes in the same transfer syntax).
  const std::string raw_sop = samples::NewUid();
  const std::string raw_bytes = base(raw_sop);
  WriteFile(dir.path() / "raw-dataset.dcm", raw_bytes);
  CommandResult raw = StoreFiles(server, "ZZ_PACS", {(dir.path() / "raw-dataset.dcm").string()},
                                 {"-xe"});  // propose explicit VR little endian only
  INFO(raw.output);
  CHECK(raw.exit_code == 0);
  const fs::path raw_fetched = dir.path() / "raw-fetched.dcm";
  CommandResult get =
      server.Curl("wang.li", "GET", "/api/v1/studies/" + study + "/instances/" + raw_sop, {"-o", raw_fetched.string()});
  CHECK(get.output.substr(get.output.rfind('\n') + 1) == "200");
  CHECK(DataSetOf(ReadFile(raw_fetched)) == raw_bytes);

  // Nothing half-written, and one stored object (a file, or its bytes in the index) per indexed row.
  CHECK(server.Stop() == 0);
  CHECK(fs::is_empty(server.storage() / "tmp"));
  auto db = Database::Open(server.storage() / "index.sqlite", true);
  REQUIRE(db.ok());
  Statement q(db.value()->handle(), "SELECT COUNT(*) FROM instances");
  REQUIRE(q.Step().value());
  CHECK(static_cast<size_t>(q.Int(0)) == StoredObjectCount(server.storage()));
  CHECK(IndexedPaths(server.storage()) == FilesUnder(server.storage()));
}

// Regression: DCMTK parses sequences recursively, and 7,000 levels (250 kB) overflowed an
// association worker's stack and crashed the server. CheckNestingDepth now refuses more than
// kMaxSequenceDepth levels before DCMTK parses anything.
TEST_CASE("sequences nested 10000 deep are refused without crashing the server", "[odd-files]") {
  InitializeDicom();
  ScratchDir dir;
  TestServer server(dir.path() / "server");
  server.Start();
  const std::string sop = samples::NewUid();
  const std::string dataset =
      InsertBefore(EncodeDataSet(*BaseDataset(samples::NewUid(), samples::NewUid(), sop), EXS_LittleEndianExplicit),
                   DCM_PixelData, NestedSequences(10000));
  RawStoreScu scu(server.port(), "ZZ_PACS", {{UID_CTImageStorage, UID_LittleEndianExplicitTransferSyntax}});
  REQUIRE(scu.Connect() == "");
  std::string comment;
  const int status = scu.Store(kExplicitLE, UID_CTImageStorage, sop, dataset, &comment);
  INFO("status " << StatusText(status) << " (" << comment << ")");
  CHECK(status == 0xC000);
  REQUIRE(StillRunning(server));
  scu.Release();
  CHECK(Echo(server, "ZZ_PACS").exit_code == 0);
  CHECK(fs::is_empty(server.storage() / "tmp"));
}

TEST_CASE("a peer that stalls in the middle of an object is dropped at the DIMSE timeout and the part discarded",
          "[odd-files][stall]") {
  ScratchDir dir;
  ServerOptions options;
  // Long enough that the other hospital's push (below) ends first even on a loaded machine: the
  // order of events, not a measured time, shows that the stall held up nobody else.
  options.dimse_timeout_seconds = 10;
  // Every object a file, so that the stalled half object shows in tmp/ (a small one is held in
  // memory, where the dropped association's half goes with it).
  options.small_object_bytes = 0;
  options.segment_mb = 0;
  TestServer server(dir.path() / "server", options);
  server.Start();
  std::unique_ptr<DcmDataset> ds = BaseDataset("1.2.826.0.1.3680043.10.543.81", "1.2.826.0.1.3680043.10.543.81.1",
                                               "1.2.826.0.1.3680043.10.543.81.1.1");
  const std::string bytes = EncodeDataSet(*ds, EXS_LittleEndianExplicit);
  REQUIRE(bytes.size() > 64);
  RawStoreScu staller(server.port(), "ZZ_PACS", {{UID_CTImageStorage, UID_LittleEndianExplicitTransferSyntax}});
  REQUIRE(staller.Connect() == "");

  std::atomic<bool> stall_done{false};
  int stall_status = 0;
  const auto start = std::chrono::steady_clock::now();
  std::thread stall([&] {
    stall_status = staller.Store(0, UID_CTImageStorage, "1.2.826.0.1.3680043.10.543.81.1.1", bytes, nullptr,
                                 (bytes.size() / 2) & ~size_t{1});  // PDVs must be even
    stall_done = true;
  });
  // Meanwhile, once the server holds the stalled half object, another hospital stores.
  REQUIRE(WaitFor([&] { return CountFiles(server.storage() / "tmp", true) == 1; }, 30));
  const fs::path samples = WriteSampleConsortium(dir.path() / "samples", 1);
  CommandResult other = StoreFiles(server, "LS_PACS", {(samples / "LS_PACS").string()});
  INFO(other.output);
  CHECK(other.exit_code == 0);
  CHECK(StoreResponses(other) == std::vector<std::string>(CountFiles(samples / "LS_PACS", true), "Success"));
  CHECK_FALSE(stall_done);  // done while the stalled association still waited
  stall.join();
  INFO("status "
       << stall_status << " after "
       << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count()
       << " ms; " << server.Log());
  const auto stalled_for = std::chrono::steady_clock::now() - start;
  CHECK(stall_status == kAborted);
  // Not dropped before the timeout (a lower bound only: a loaded machine can only add to it).
  CHECK(stalled_for >= std::chrono::seconds(options.dimse_timeout_seconds));
  // The partial object is gone: no temporary file, no index row, no object file.
  CHECK(WaitFor([&] { return CountFiles(server.storage() / "tmp", true) == 0; }, 20));
  const std::set<std::string> indexed = IndexedPaths(server.storage());
  CHECK(indexed == FilesUnder(server.storage()));
  CHECK(indexed.size() == CountFiles(samples / "LS_PACS", true));  // Laishui's objects only
  CHECK_THAT(server.Log(), Catch::Contains("C-STORE from ZZ_PACS interrupted"));
  CHECK(Echo(server, "ZZ_PACS").exit_code == 0);
}
