// The real teleread-server on loopback, driven by DCMTK's echoscu/storescu and a raw C-STORE SCU.
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <regex>
#include <set>
#include <thread>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"

#include "common/dicom.h"
#include "samples/synthetic.h"
#include "server/store/object_store.h"
#include "tests/support/scu.h"
#include "tests/support/server_fixture.h"
#include "tests/support/stored.h"

using namespace teleread;
using namespace teleread::test;

namespace {

size_t CountDicomFiles(const std::filesystem::path& dir) {
  size_t n = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) n += e.path().extension() == ".dcm";
  return n;
}

// "38 instances" from `teleread-server status`.
long StatusNumber(const TestServer& server, const std::string& what) {
  CommandResult r = server.Status();
  REQUIRE(r.exit_code == 0);
  std::smatch m;
  REQUIRE(std::regex_search(r.output, m, std::regex("(\\d+) " + what)));
  return std::stol(m[1]);
}

DcmDataset LoadDataset(const std::filesystem::path& file) {
  DcmFileFormat ff;
  REQUIRE(ff.loadFile(file.c_str()).good());
  ff.loadAllDataIntoMemory();
  return DcmDataset(*ff.getDataset());
}

std::vector<std::filesystem::path> SmallSeries(const std::filesystem::path& dir, int count,
                                               const std::string& modality = "CT") {
  samples::SeriesSpec spec;
  spec.patient_name = "Test^Patient";
  spec.patient_id = "T" + std::to_string(count);
  spec.modality = modality;
  spec.instances = count;
  spec.rows = spec.columns = 64;
  auto files = samples::WriteSeries(spec, dir);
  REQUIRE(files.ok());
  return files.value();
}

}  // namespace

TEST_CASE("C-ECHO works and associations from unknown AE titles are rejected", "[listener]") {
  ScratchDir dir;
  TestServer server(dir.path());
  server.Start();
  CHECK(Echo(server, "ZZ_PACS").exit_code == 0);
  CHECK(Echo(server, "YX_CT01").exit_code == 0);
  CHECK(Echo(server, "LX_WS1").exit_code == 0);  // a centre workstation

  CommandResult unknown = Echo(server, "STRANGER");
  CHECK(unknown.exit_code != 0);
  CHECK_THAT(unknown.output, Catch::Contains("Calling AE Title Not Recognized"));

  CommandResult wrong_called = Echo(server, "ZZ_PACS", "OTHER_NODE");
  CHECK(wrong_called.exit_code != 0);
  CHECK_THAT(wrong_called.output, Catch::Contains("Called AE Title Not Recognized"));

  CHECK_THAT(server.Log(), Catch::Contains("calling AE title 'STRANGER' not recognised"));
  CHECK(server.Stop() == 0);
}

TEST_CASE("a member's AE title from an address it is not allowed to use is rejected", "[listener]") {
  ScratchDir dir;
  ServerOptions options;
  options.edits.push_back({R"(^allowed_addresses = \["127.0.0.1"\]$)", R"(allowed_addresses = ["10.20.30.40"])"});
  TestServer server(dir.path(), options);
  server.Start();
  CommandResult zz = Echo(server, "ZZ_PACS");
  CHECK(zz.exit_code != 0);
  CHECK_THAT(zz.output, Catch::Contains("Calling AE Title Not Recognized"));
  CHECK(Echo(server, "LS_PACS").exit_code == 0);  // no address list: any address
}

TEST_CASE("three member hospitals push at once and everything is indexed and queued for reading", "[listener]") {
  ScratchDir dir;
  std::filesystem::path samples = WriteSampleConsortium(dir.path() / "samples", 8);
  TestServer server(dir.path() / "server");
  server.Start();

  std::vector<std::string> members = {"ZZ_PACS", "LS_PACS", "YX_PACS"};
  std::vector<CommandResult> results(members.size());
  std::vector<std::thread> pushers;
  for (size_t i = 0; i < members.size(); ++i) {
    pushers.emplace_back([&, i] { results[i] = StoreFiles(server, members[i], {(samples / members[i]).string()}); });
  }
  for (std::thread& t : pushers) t.join();
  for (size_t i = 0; i < members.size(); ++i) {
    INFO(members[i] << ": " << results[i].output);
    CHECK(results[i].exit_code == 0);
  }
  const long sent = static_cast<long>(CountDicomFiles(samples));
  CHECK(StatusNumber(server, "instances") == sent);
  CHECK(StatusNumber(server, "studies") == 6);

  // Quiet period 1 s: every study becomes a waiting reading task shortly after.
  CHECK(WaitFor([&] { return StatusNumber(server, "reading tasks") == 6; }, 15));
  CommandResult status = server.Status();
  CHECK_THAT(status.output, Catch::Contains("zhuozhou") && Catch::Contains("STAT") && Catch::Contains("胸部CT平扫"));
  // Patient names stay out of the info-level log.
  CHECK_THAT(server.Log(), !Catch::Contains("张") && !Catch::Contains("Müller"));

  SECTION("a member cannot add objects to another member's study") {
    CommandResult cross = StoreFiles(server, "YX_PACS", {(samples / "ZZ_PACS").string()});
    INFO(cross.output);
    CHECK(cross.exit_code != 0);
    // Each object refused with 0x0124 (Not Authorized), none stored.
    const std::vector<std::string> responses = StoreResponses(cross);
    CHECK_FALSE(responses.empty());
    for (const std::string& r : responses) CHECK_THAT(r, Catch::Contains("0x124") || Catch::Contains("Not Authorized"));
    CHECK(StatusNumber(server, "instances") == sent);
    CHECK_THAT(server.Log(), Catch::Contains("refused with 0x0124"));
  }
  SECTION("re-sending a whole study changes nothing") {
    CommandResult again = StoreFiles(server, "LS_PACS", {(samples / "LS_PACS").string()});
    INFO(again.output);
    CHECK(again.exit_code == 0);
    // Identical re-sends are answered Success (storescu exits 0 on refused C-STOREs too).
    CHECK(StoreResponses(again) == std::vector<std::string>(CountDicomFiles(samples / "LS_PACS"), "Success"));
    CHECK(StatusNumber(server, "instances") == sent);
    CHECK(StatusNumber(server, "reading tasks") == 6);
  }
  SECTION("a restart keeps every object and creates no second task") {
    CHECK(server.Stop() == 0);
    server.Start();
    // A new study after the restart: once it is a task, the promoter has run over the old ones too.
    const auto marker = SmallSeries(dir.path() / "after-restart", 1);
    REQUIRE(StoreResponses(StoreFiles(server, "LS_PACS", {marker.front().string()})) ==
            std::vector<std::string>{"Success"});
    REQUIRE(WaitFor([&] { return StatusNumber(server, "reading tasks") >= 7; }, 60));
    CHECK(StatusNumber(server, "instances") == sent + 1);
    CHECK(StatusNumber(server, "reading tasks") == 7);
  }
}

TEST_CASE("objects that do not match their negotiation are refused over the wire", "[listener]") {
  ScratchDir dir;
  TestServer server(dir.path() / "server");
  server.Start();
  auto ct = SmallSeries(dir.path() / "ct", 2);
  auto mr = SmallSeries(dir.path() / "mr", 1, "MR");

  TestScu scu(server.port(), "ZZ_PACS", {UID_CTImageStorage, UID_MRImageStorage});
  REQUIRE(scu.Connect() == "");
  std::string comment;
  DcmDataset mr_ds = LoadDataset(mr[0]);
  CHECK(scu.Store(mr_ds, UID_CTImageStorage, UID_CTImageStorage, "", &comment) == 0xA900);
  CHECK_THAT(comment, Catch::Contains("SOP Class"));

  DcmDataset ct_ds = LoadDataset(ct[0]);
  CHECK(scu.Store(ct_ds, UID_CTImageStorage, "", "1.2.826.0.1.3680043.2.1.99") == 0xA900);

  DcmDataset no_study = LoadDataset(ct[1]);
  delete no_study.remove(DCM_StudyInstanceUID);
  CHECK(scu.Store(no_study, UID_CTImageStorage, "", "", &comment) == 0xA900);
  CHECK_THAT(comment, Catch::Contains("Study Instance UID"));

  // The association survives refusals: a good object still goes in.
  CHECK(scu.Store(ct_ds, UID_CTImageStorage) == 0x0000);
  scu.Release();
  CHECK(StatusNumber(server, "instances") == 1);

  SECTION("centre workstations cannot send studies for reading") {
    TestScu centre(server.port(), "LX_WS1", {UID_CTImageStorage});
    REQUIRE(centre.Connect() == "");
    DcmDataset other = LoadDataset(ct[1]);
    CHECK(centre.Store(other, UID_CTImageStorage) == 0x0124);
    centre.Release();
    CHECK(StatusNumber(server, "instances") == 1);
  }
  SECTION("an association offering no storage or verification class is rejected") {
    TestScu find_only(server.port(), "ZZ_PACS", {UID_FINDModalityWorklistInformationModel});
    CHECK_FALSE(find_only.Connect().empty());
  }
}

TEST_CASE("a full storage volume answers 0xA700 and stores nothing", "[listener][disk]") {
  ScratchDir dir;
  ServerOptions options;
  options.min_free_disk_mb = 1ull << 40;  // more than any disk has free
  TestServer server(dir.path() / "server", options);
  server.Start();
  auto ct = SmallSeries(dir.path() / "ct", 3);
  TestScu scu(server.port(), "ZZ_PACS", {UID_CTImageStorage});
  REQUIRE(scu.Connect() == "");
  std::string comment;
  for (const auto& f : ct) {
    DcmDataset ds = LoadDataset(f);
    CHECK(scu.Store(ds, UID_CTImageStorage, "", "", &comment) == 0xA700);
  }
  CHECK_THAT(comment, Catch::Contains("full"));
  scu.Release();
  CHECK(StatusNumber(server, "instances") == 0);
  CHECK(std::filesystem::is_empty(server.storage() / "tmp"));
  CHECK(StoredObjectCount(server.storage()) == 0);
}

TEST_CASE("at least 16 associations run at once and beyond the limit they are refused without leaks",
          "[listener][concurrency]") {
  ScratchDir dir;
  ServerOptions options;
  options.max_associations = 20;
  options.edits = {{"^max_associations = 8$", "max_associations = 20"},  // zhuozhou's
                   {"^id = \"laishui\"$", "id = \"laishui\"\nmax_associations = 20"}};
  TestServer server(dir.path() / "server", options);
  server.Start();
  auto ct = SmallSeries(dir.path() / "ct", 20);

  std::vector<std::unique_ptr<TestScu>> open;
  for (int i = 0; i < 20; ++i) {
    open.push_back(std::make_unique<TestScu>(server.port(), i % 2 ? "ZZ_PACS" : "LS_PACS",
                                             std::vector<std::string>{UID_CTImageStorage}));
    INFO("association " << i);
    REQUIRE(open.back()->Connect() == "");
  }
  // All 20 are held open; the 21st finds no worker.
  CommandResult refused = Echo(server, "ZZ_PACS");
  CHECK(refused.exit_code != 0);
  CHECK_THAT(refused.output, Catch::Contains("Local Limit Exceeded"));

  // Each open association stores, all at once (one series: only one member may own it).
  std::vector<std::thread> senders;
  std::atomic<int> ok{0};
  for (int i = 0; i < 20; ++i) {
    senders.emplace_back([&, i] {
      if (i % 2 == 0) return;
      DcmDataset ds = LoadDataset(ct[i]);
      ok += open[i]->Store(ds, UID_CTImageStorage) == 0;
    });
  }
  for (std::thread& t : senders) t.join();
  CHECK(ok == 10);
  for (auto& scu : open) scu->Release();
  open.clear();

  CHECK(WaitFor([&] { return Echo(server, "ZZ_PACS").exit_code == 0; }, 5));
  // Warm now (index files open, every worker used once): nothing may grow from here on.
  const size_t threads_before = ThreadCount(server.pid());
  const std::multiset<std::string> fds_before = OpenFiles(server.pid());
  for (int wave = 0; wave < 2; ++wave) {
    std::vector<std::unique_ptr<TestScu>> again;
    for (int i = 0; i < 20; ++i) {
      // A worker may still be closing its previous association: retry briefly.
      bool connected = false;
      for (int attempt = 0; attempt < 20 && !connected; ++attempt) {
        again.push_back(
            std::make_unique<TestScu>(server.port(), "ZZ_PACS", std::vector<std::string>{UID_CTImageStorage}));
        connected = again.back()->Connect().empty();
        if (!connected) {
          again.pop_back();
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }
      REQUIRE(connected);
    }
    for (auto& scu : again) scu->Release();
  }
  for (int i = 0; i < 100; ++i) REQUIRE(Echo(server, i % 2 ? "ZZ_PACS" : "LS_PACS").exit_code == 0);
  CHECK(ThreadCount(server.pid()) == threads_before);
  // The pooled index readers are opened as concurrency first needs them and kept up to their
  // bounds (32 and 8 idle): a reader more than before is not a leak, anything else is.
  const auto without_index = [](std::multiset<std::string> fds) {
    size_t index_files = 0;
    for (auto it = fds.begin(); it != fds.end();) {
      if (it->find("/storage/index.sqlite") == std::string::npos) {
        ++it;
        continue;
      }
      ++index_files;
      it = fds.erase(it);
    }
    return std::make_pair(fds, index_files);
  };
  CHECK(WaitFor(
      [&] { return without_index(OpenFiles(server.pid())).first.size() == without_index(fds_before).first.size(); },
      5));
  const auto [others, index_files] = without_index(OpenFiles(server.pid()));
  CHECK(others == without_index(fds_before).first);
  CHECK(index_files <= 2 * (2 + 32 + 8) + 1);  // writer, reader and both pools: database and WAL each, one shm
  CHECK(StatusNumber(server, "instances") == 10);
}

TEST_CASE("one member cannot take more than its own share of the associations", "[listener][concurrency]") {
  ScratchDir dir;
  ServerOptions options;
  options.edits = {{"^max_associations = 8$", "max_associations = 2"}};  // zhuozhou's
  TestServer server(dir.path() / "server", options);
  server.Start();
  std::vector<std::unique_ptr<TestScu>> open;
  for (int i = 0; i < 2; ++i) {
    open.push_back(std::make_unique<TestScu>(server.port(), "ZZ_PACS", std::vector<std::string>{UID_CTImageStorage}));
    REQUIRE(open.back()->Connect() == "");
  }
  // Zhuozhou's third is refused as transient; the other hospitals are not affected.
  CommandResult third = Echo(server, "ZZ_PACS");
  CHECK(third.exit_code != 0);
  CHECK_THAT(third.output, Catch::Contains("Local Limit Exceeded"));
  CHECK(Echo(server, "LS_PACS").exit_code == 0);
  CHECK(Echo(server, "YX_PACS").exit_code == 0);
  CHECK_THAT(server.Log(), Catch::Contains("member zhuozhou has its 2 associations open"));
  // A slot is free again as soon as one of them is released.
  open.back()->Release();
  open.pop_back();
  CHECK(WaitFor([&] { return Echo(server, "ZZ_PACS").exit_code == 0; }, 5));
}

TEST_CASE("a silent connection does not delay the busy rejection of other associations", "[listener][concurrency]") {
  ScratchDir dir;
  ServerOptions options;
  options.max_associations = 1;
  TestServer server(dir.path(), options);
  server.Start();
  TestScu held(server.port(), "ZZ_PACS", {UID_CTImageStorage});
  REQUIRE(held.Connect() == "");  // the only worker is taken

  // A TCP client that never sends its A-ASSOCIATE-RQ.
  const int silent = ConnectTcp(server.port());

  // The echo comes after the silent connection in the accept queue, yet is refused first: the
  // order of the two refusals in the log, not a measured time, shows it did not wait behind it.
  CommandResult refused = Echo(server, "ZZ_PACS");
  CHECK(refused.exit_code != 0);
  CHECK_THAT(refused.output, Catch::Contains("Local Limit Exceeded"));
  REQUIRE(WaitFor([&] { return server.Log().find("(no request received") != std::string::npos; }, 30));
  const std::string log = server.Log();
  const size_t echo_refused = log.find("association refused: all 1 workers busy\n");
  INFO(log);
  REQUIRE(echo_refused != std::string::npos);
  CHECK(echo_refused < log.find("(no request received"));

  // The silent connection is closed in the end, without an answer.
  pollfd p{silent, POLLIN, 0};
  CHECK(::poll(&p, 1, 5000) == 1);
  char byte = 0;
  CHECK(::recv(silent, &byte, 1, 0) == 0);
  ::close(silent);
  held.Release();
  CHECK(WaitFor([&] { return Echo(server, "ZZ_PACS").exit_code == 0; }, 5));
}

TEST_CASE("a peer that does not speak DICOM is logged as a warning and its socket closed", "[listener]") {
  ScratchDir dir;
  TestServer server(dir.path());
  server.Start();
  REQUIRE(Echo(server, "ZZ_PACS").exit_code == 0);  // warm: every file the server keeps is open
  const std::multiset<std::string> fds_before = OpenFiles(server.pid());
  for (int i = 0; i < 5; ++i) {
    const int fd = ConnectTcp(server.port());
    // The start of a TLS ClientHello, as from a peer configured for DICOM TLS.
    const unsigned char hello[] = {0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00};
    REQUIRE(::send(fd, hello, sizeof hello, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof hello));
    pollfd p{fd, POLLIN, 0};
    CHECK(::poll(&p, 1, 5000) == 1);  // answered or closed, not left hanging
    char buf[64];
    while (::recv(fd, buf, sizeof buf, 0) > 0) {
    }
    ::close(fd);
  }
  const std::string log = server.Log();
  CHECK(std::regex_search(log, std::regex(R"(warning \[\d+\] receiving association from 127\.0\.0\.1 failed: )")));
  CHECK(WaitFor([&] { return OpenFiles(server.pid()) == fds_before; }, 5));
  CHECK(Echo(server, "ZZ_PACS").exit_code == 0);
}

TEST_CASE("every offered transfer syntax is accepted and the object is stored as it was sent", "[listener][ts]") {
  InitializeDicom();
  ScratchDir dir;
  TestServer server(dir.path() / "server");
  server.Start();
  auto base = SmallSeries(dir.path() / "base", 10);
  struct Case {
    std::string tool, option, ts;
  };
  const std::vector<Case> cases = {
      {"dcmconv", "+te", UID_LittleEndianExplicitTransferSyntax},
      {"dcmconv", "+ti", UID_LittleEndianImplicitTransferSyntax},
      {"dcmconv", "+tb", UID_BigEndianExplicitTransferSyntax},
      {"dcmconv", "+td", UID_DeflatedExplicitVRLittleEndianTransferSyntax},
      {"dcmcjpeg", "+e1", UID_JPEGProcess14SV1TransferSyntax},
      {"dcmcjpeg", "+el", UID_JPEGProcess14TransferSyntax},
      {"dcmcjpeg", "+ee", UID_JPEGProcess2_4TransferSyntax},
      {"dcmcjpls", "+el", UID_JPEGLSLosslessTransferSyntax},
      {"dcmcrle", "", UID_RLELosslessTransferSyntax},
  };
  auto index_path = [&](const std::string& sop_uid) {
    return StoredFileFor(server.storage(), sop_uid, dir.path() / "stored");
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    INFO(c.tool << " " << c.option << " -> " << c.ts);
    std::filesystem::path file = dir.path() / ("ts" + std::to_string(i) + ".dcm");
    std::vector<std::string> argv = {"/usr/bin/" + c.tool};
    if (!c.option.empty()) argv.push_back(c.option);
    argv.push_back(base[i].string());
    argv.push_back(file.string());
    CommandResult conv = RunCommand(argv);
    REQUIRE(conv.exit_code == 0);
    auto summary = ReadInstanceSummary(file);
    REQUIRE(summary.ok());
    REQUIRE(summary->transfer_syntax_uid == c.ts);
    // Proposed alone, the file's own transfer syntax must be accepted, and the data set sent as it is.
    TestScu scu(server.port(), "ZZ_PACS", {UID_CTImageStorage}, {c.ts});
    REQUIRE(scu.Connect() == "");
    REQUIRE(scu.AcceptedTransferSyntax(UID_CTImageStorage) == c.ts);
    DcmDataset ds = LoadDataset(file);
    REQUIRE(scu.Store(ds, UID_CTImageStorage) == 0);
    scu.Release();
    std::filesystem::path stored = index_path(summary->sop_instance_uid);
    REQUIRE(std::filesystem::exists(stored));
    auto stored_summary = ReadInstanceSummary(stored);
    REQUIRE(stored_summary.ok());
    CHECK(stored_summary->transfer_syntax_uid == c.ts);
    CHECK(stored_summary->source_ae_title == "ZZ_PACS");
    auto same = SameDataSet(file, stored);
    REQUIRE(same.ok());
    CHECK(same.value());
  }
  CHECK(StatusNumber(server, "instances") == static_cast<long>(cases.size()));

  SECTION("storescu sending a JPEG lossless file as it is") {
    std::filesystem::path file = dir.path() / "storescu-jpeg.dcm";
    REQUIRE(RunCommand({"/usr/bin/dcmcjpeg", base[9].string(), file.string()}).exit_code == 0);
    CommandResult sent = StoreFiles(server, "ZZ_PACS", {file.string()}, {"-xs"});
    REQUIRE(sent.exit_code == 0);
    auto summary = ReadInstanceSummary(file);
    auto stored = ReadInstanceSummary(index_path(summary->sop_instance_uid));
    REQUIRE(stored.ok());
    CHECK(stored->transfer_syntax_uid == UID_JPEGProcess14SV1TransferSyntax);
  }
  SECTION("JPEG baseline and JPEG 2000 are negotiated when proposed alone") {
    for (const char* ts : {UID_JPEGProcess1TransferSyntax, UID_JPEG2000LosslessOnlyTransferSyntax,
                           UID_JPEG2000TransferSyntax, UID_JPEGLSLossyTransferSyntax}) {
      TestScu scu(server.port(), "ZZ_PACS", {UID_CTImageStorage}, {ts});
      REQUIRE(scu.Connect() == "");
      CHECK(scu.AcceptedTransferSyntax(UID_CTImageStorage) == ts);
      scu.Release();
    }
  }
  SECTION("a native encoding is preferred when the sender offers a choice") {
    TestScu scu(server.port(), "ZZ_PACS", {UID_CTImageStorage},
                {UID_JPEGProcess14SV1TransferSyntax, UID_LittleEndianImplicitTransferSyntax});
    REQUIRE(scu.Connect() == "");
    CHECK(scu.AcceptedTransferSyntax(UID_CTImageStorage) == UID_LittleEndianImplicitTransferSyntax);
  }
}

TEST_CASE("beyond 64 connections waiting for a busy worker the next is closed at once", "[listener][concurrency]") {
  ScratchDir dir;
  ServerOptions options;
  options.max_associations = 1;
  TestServer server(dir.path(), options);
  server.Start();
  TestScu held(server.port(), "ZZ_PACS", {UID_CTImageStorage});
  REQUIRE(held.Connect() == "");  // the only worker is taken
  // Silent connections: each waits (up to 2 s) for a request to reject; the 65th finds no room.
  std::vector<int> silent;
  for (int i = 0; i < 70; ++i) silent.push_back(ConnectTcp(server.port()));
  CHECK(WaitFor([&] { return server.Log().find("all 1 workers busy (too many waiting)") != std::string::npos; }, 30));
  // Every one of them is closed in the end, without an answer.
  for (int fd : silent) {
    pollfd p{fd, POLLIN, 0};
    CHECK(::poll(&p, 1, 30000) == 1);
    char byte = 0;
    CHECK(::recv(fd, &byte, 1, 0) == 0);
    ::close(fd);
  }
  held.Release();
  CHECK(WaitFor([&] { return Echo(server, "ZZ_PACS").exit_code == 0; }, 30));
}
