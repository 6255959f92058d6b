#pragma once
// The centre's configuration: one TOML file, validated as a whole at start-up.
// LoadConfig throws ConfigError whose message names the file, the line and the key.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace teleread {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct DeliveryTarget {
  std::string ae_title;
  std::string host;
  uint16_t port = 0;
  bool tls = false;              // DICOM TLS; the peer's certificate must name `host`
  std::filesystem::path tls_ca;  // CA for the peer's certificate; empty: [dicom_tls] ca
};

struct Member {
  std::string id;
  std::string name;
  std::vector<std::string> ae_titles;          // calling AE titles this member's PACS uses
  std::vector<std::string> allowed_addresses;  // empty: any source address
  std::optional<DeliveryTarget> delivery;      // where signed reports go
  std::string default_priority;                // STAT, HIGH or ROUTINE when a study names none
  // Only TLS associations with a client certificate of this member (OU=member, CN = the member
  // id or one of its AE titles) are accepted from this member's AE titles.
  bool require_tls = false;
  int max_associations = 8;  // concurrent associations from this member (at most the centre's)
  // Also accept PS3.15's retired AES profile (TLS_RSA_WITH_AES_128_CBC_SHA, TLS 1.2, RSA key
  // transport: no forward secrecy) from this member, for equipment that offers nothing else.
  bool legacy_tls = false;
  // Critical results are also POSTed here as JSON (https:// only, the centre's client
  // certificate); empty: the report delivery is the only channel.
  std::string critical_webhook;
};

struct Radiologist {
  std::string id;
  std::string name;  // DICOM person name, e.g. "Wang^Li"
  std::string certificate_subject;
  std::vector<std::string> modalities;  // empty: all
  std::vector<std::string> members;     // member ids whose studies they read; empty: all
};

// The PDU sizes DCMTK 3.6.7 can receive (ASC_MINIMUMPDUSIZE..ASC_MAXIMUMPDUSIZE); above the
// maximum its upper layer refuses every association. The listener checks these against DCMTK.
constexpr uint32_t kMinPduBytes = 4096;
constexpr uint32_t kMaxPduBytes = 131072;

// A centre AE title allowed to associate without a certificate, from these addresses only.
struct PlainCentreCaller {
  std::string ae_title;
  std::vector<std::string> addresses;  // never empty
};

struct CentreConfig {
  std::string ae_title;
  std::string name;
  std::string bind_address = "127.0.0.1";
  uint16_t dicom_port = 11112;
  std::filesystem::path storage;  // objects and the SQLite index
  int quiet_period_seconds = 30;  // no new instance for this long: study complete
  int max_associations = 32;      // concurrent DICOM associations
  int acse_timeout_seconds = 10;
  int dimse_timeout_seconds = 60;
  uint32_t max_pdu_bytes = kMaxPduBytes;  // kMinPduBytes..kMaxPduBytes
  uint64_t min_free_disk_mb = 512;        // refuse C-STORE (0xA700) below this much free space
  // Objects up to this size (bytes, as stored) are kept inside the index, committed with their
  // row; larger ones are files under objects/. 0: every object is a file. At most 16 MiB.
  uint64_t small_object_bytes = 128 * 1024;
  // Larger objects of a native transfer syntax are received with O_DIRECT past their head
  // (server/store/direct_file.h); false: through the page cache, as before.
  bool direct_io = true;
  // Larger objects are appended to segment files of this many MiB under segments/
  // (server/store/segments.h); 0: one file per object under objects/.
  uint64_t segment_mb = 256;
  // Segments are written with zeros before use, so that storing an object syncs no metadata
  // (twice the disk writes); false: they grow as objects are appended.
  bool segment_prewrite = false;
  std::vector<std::string> centre_ae_titles;  // centre workstations: see every member's studies
  // Centre AE titles otherwise present a workstation certificate over DICOM TLS (OU=workstation,
  // CN = the AE title); these may call plain, from the named addresses only. (default: none)
  std::vector<PlainCentreCaller> plain_callers;
  int centre_max_associations = 4;       // concurrent associations from centre AE titles together
  int max_connections_per_address = 64;  // DICOM connections from one address, pending or served
};

// DICOM TLS (PS3.15 BCP 195 profiles, DCMTK dcmtls) on the listener and for deliveries.
struct DicomTlsConfig {
  bool enabled = false;  // true when the [dicom_tls] table is present
  uint16_t port = 2762;  // the TLS port (0: any free port, for tests)
  // TLS on centre.dicom_port instead, beside plain TCP: a connection's first byte tells a TLS
  // handshake from an A-ASSOCIATE-RQ.
  bool same_port = false;
  bool allow_plain = true;  // false (needs same_port): plain associations are refused
  std::filesystem::path certificate, key,
      ca;                     // the centre's DICOM certificate and key; the CA of members' certificates
  std::filesystem::path crl;  // the CA's revocation list (PEM); empty: none checked
  // An RSA certificate and key (pki issue --kind server --rsa) for members with legacy_tls: the
  // retired AES profile needs RSA key transport. Required when a member has legacy_tls.
  std::filesystem::path legacy_certificate, legacy_key;
  std::string profile = "bcp195-nd";  // bcp195-nd, bcp195 or bcp195-ex
  int expiry_warning_days = 30;       // warn about certificates expiring sooner than this
};

// The radiologists' HTTPS API (mutual TLS) and the reading rules behind it.
struct HttpsConfig {
  bool enabled = false;  // true when the [https] table is present
  std::string bind_address = "127.0.0.1";
  uint16_t port = 8443;
  std::filesystem::path certificate, key, ca;  // server certificate and key; the centre CA
  std::filesystem::path crl;                   // the centre CA's revocation list (PEM); empty: none checked
  std::vector<std::string> admins;             // certificate common names with the admin role
  int threads = 2;
  uint64_t max_body_bytes = 64ull << 20;  // a signed report is far smaller
  // Open connections at most, in all and from one address; both also stay below half of the
  // process's file descriptor limit, so that the index and the DICOM side always have some.
  int max_connections = 256;
  int max_connections_per_address = 64;
};

struct ReadingConfig {
  int lease_minutes = 30;  // a claim not renewed for this long returns the study to the worklist
  int sla_minutes_stat = 60;
  int sla_minutes_high = 240;
  int sla_minutes_routine = 1440;
  // Signed reports go back to the member's delivery AE; failures retry with exponential backoff
  // (base doubling up to max, with jitter) and after max_attempts wait in a dead-letter state.
  int delivery_max_attempts = 10;
  int delivery_retry_seconds = 5;
  int delivery_retry_max_seconds = 600;
  int delivery_timeout_seconds = 30;
  // A critical result not acknowledged by the member within this long escalates (0: at once, for drills).
  int critical_ack_minutes = 30;
  std::filesystem::path templates;  // report templates (*.toml); default: templates/ beside the config
};

struct Config {
  CentreConfig centre;
  DicomTlsConfig dicom_tls;
  HttpsConfig https;
  ReadingConfig reading;
  std::vector<Member> members;
  std::vector<Radiologist> radiologists;
  std::vector<DeliveryTarget> workstations;  // centre workstations that take C-MOVE

  // The member whose calling AE titles include `ae_title`, or nullptr.
  const Member* FindMemberByAeTitle(std::string_view ae_title) const;
  bool IsCentreAeTitle(std::string_view ae_title) const;
  // Where a C-MOVE to `destination_ae` goes, for a caller from member `member_id` (empty: a centre
  // AE title). A member may only move to its own delivery AE, so that a study never leaves for
  // another hospital; the centre may move to any member's delivery AE or a workstation.
  std::optional<DeliveryTarget> MoveDestination(std::string_view member_id, std::string_view destination_ae) const;
  // The plain allowance for centre AE title `ae_title`, or nullptr.
  const PlainCentreCaller* FindPlainCentreCaller(std::string_view ae_title) const;
};

// What a valid config still leaves open, one line each: members callable without TLS from any
// address, centre AE titles that can call neither way. For --check-config and start-up.
std::vector<std::string> ConfigWarnings(const Config& config);

// Parses and validates; relative paths are resolved against `base_dir`.
Config ParseConfig(std::string_view toml_text, const std::string& source_name, const std::filesystem::path& base_dir);
Config LoadConfig(const std::filesystem::path& path);

// DICOM AE title rules (PS3.5 AE VR): 1-16 characters, no backslash or control characters,
// not only spaces. Returns an explanation when invalid.
std::optional<std::string> AeTitleProblem(std::string_view ae_title);

}  // namespace teleread
