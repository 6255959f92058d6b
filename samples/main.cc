// teleread-samples: writes the sample consortium's studies, or a benchmark corpus.
#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>

#include "common/dicom.h"
#include "samples/commit_scu.h"
#include "samples/synthetic.h"

using namespace teleread;

int main(int argc, char** argv) {
  CLI::App app{"Writes synthetic DICOM studies for TeleRead's demo, tests and benchmarks"};
  app.require_subcommand(1);
  std::string out;
  int ct_slices = 20;
  CLI::App* consortium = app.add_subcommand("consortium", "The sample consortium's studies, under OUT/<AE title>/");
  consortium->add_option("out", out, "Output directory")->required();
  consortium->add_option("--ct-slices", ct_slices, "Slices in the sample CT")->check(CLI::Range(1, 2000));

  CLI::App* corpus = app.add_subcommand("corpus", "N instances of one kind in one study, for benchmarks");
  std::string kind = "ct";
  int count = 100;
  corpus->add_option("out", out, "Output directory")->required();
  corpus->add_option("--kind", kind, "ct (512x512, ~0.5 MB), small (64x64, ~10 kB) or large (one ~1 GB image)")
      ->check(CLI::IsMember({"ct", "small", "large"}));
  corpus->add_option("--count", count, "Number of instances")->check(CLI::Range(1, 1000000));
  int studies = 1;
  corpus->add_option("--studies", studies, "Spread the instances over this many studies (one patient each)")
      ->check(CLI::Range(1, 1000000));
  CLI::App* commit = app.add_subcommand("commit", "As a member PACS: request storage commitment of every file in DIR");
  samples::CommitPeer peer;
  commit->add_option("dir", out, "Directory of the sent files")->required()->check(CLI::ExistingDirectory);
  commit->add_option("--port", peer.port, "The centre's DICOM (or DICOM TLS) port")->required();
  commit->add_option("--aet", peer.calling_ae, "Calling AE title (the member's)")->required();
  commit->add_option("--aec", peer.called_ae, "The centre's AE title");
  commit->add_option("--tls-key", peer.tls_key, "DICOM TLS: the member's key");
  commit->add_option("--tls-certificate", peer.tls_certificate, "DICOM TLS: the member's certificate");
  commit->add_option("--tls-ca", peer.tls_ca, "DICOM TLS: the centre CA");
  CLI11_PARSE(app, argc, argv);
  if (*commit) {
    InitializeDicom();
    const auto instances = samples::InstancesUnder(out);
    const auto start = std::chrono::steady_clock::now();
    samples::CommitReply r = samples::RequestCommitment(peer, instances, samples::NewTransactionUid(), true);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    if (!r.error.empty()) {
      std::cerr << "teleread-samples: storage commitment failed: " << r.error << "\n";
      return 1;
    }
    std::cout << "storage commitment " << r.transaction_uid << ": " << r.committed.size() << " of " << instances.size()
              << " instances committed, " << r.failed.size() << " failed; report received " << ms.count()
              << " ms after the request\n";
    return r.failed.empty() && r.action_status == 0 ? 0 : 1;
  }

  Result<std::vector<std::filesystem::path>> files = Status::InvalidArgument("no subcommand");
  if (*consortium) {
    files = samples::WriteConsortium(out, ct_slices);
  } else {
    samples::SeriesSpec spec;
    spec.patient_name = "Bench^Mark";
    spec.patient_id = "BENCH-" + kind;
    spec.study_description = "Benchmark " + kind;
    if (kind == "small") spec.rows = spec.columns = 64;
    if (kind == "large") spec.rows = spec.columns = 23170;  // 2 bytes a pixel: 1.07 GB
    std::vector<std::filesystem::path> all;
    files = all;
    for (int i = 0; i < studies; ++i) {
      spec.instances = count / studies + (i < count % studies ? 1 : 0);
      if (studies > 1) {
        spec.patient_id = "BENCH-" + kind + "-" + std::to_string(i);
        spec.accession_number = "B" + std::to_string(i);
      }
      Result<std::vector<std::filesystem::path>> part = samples::WriteSeries(
          spec, studies > 1 ? std::filesystem::path(out) / std::to_string(i) : std::filesystem::path(out));
      if (!part.ok()) {
        files = part.status();
        break;
      }
      all.insert(all.end(), part->begin(), part->end());
      files = all;
    }
  }
  if (!files.ok()) {
    std::cerr << "teleread-samples: " << files.status().ToString() << "\n";
    return 1;
  }
  std::cout << "wrote " << files->size() << " files under " << out << "\n";
  return 0;
}
