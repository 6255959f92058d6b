#include "common/config.h"

#include <arpa/inet.h>

#include <toml++/toml.h>
#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

namespace teleread {
namespace {

// Walks one TOML table, remembering the dotted path for error messages, and rejects
// keys it was not asked for so that a typo in the config is an error, not a silent default.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string path, const std::string& source)
      : table_(table), path_(std::move(path)), source_(source) {}

  [[noreturn]] void Fail(const toml::node* node, const std::string& key, const std::string& msg) const {
    std::ostringstream out;
    out << source_;
    const toml::source_region& where = node ? node->source() : table_.source();
    if (where.begin.line > 0) out << ":" << where.begin.line;
    out << ": " << Qualified(key) << ": " << msg;
    throw ConfigError(out.str());
  }

  std::string Qualified(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  const toml::node* Get(const std::string& key) {
    seen_.insert(key);
    return table_.get(key);
  }

  std::string String(const std::string& key, std::optional<std::string> fallback = std::nullopt) {
    const toml::node* node = Get(key);
    if (!node) return Required(key, std::move(fallback));
    auto value = node->value<std::string>();
    if (!node->is_string() || !value) Fail(node, key, "expected a string");
    return *value;
  }

  int64_t Integer(const std::string& key, int64_t min, int64_t max, std::optional<int64_t> fallback) {
    const toml::node* node = Get(key);
    if (!node) {
      if (!fallback) Fail(nullptr, key, "is required");
      return *fallback;
    }
    if (!node->is_integer()) Fail(node, key, "expected an integer");
    int64_t v = *node->value<int64_t>();
    if (v < min || v > max) {
      Fail(node, key,
           "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " + std::to_string(v));
    }
    return v;
  }

  std::vector<std::string> StringArray(const std::string& key, bool required) {
    std::vector<std::string> out;
    const toml::node* node = Get(key);
    if (!node) {
      if (required) Fail(nullptr, key, "is required");
      return out;
    }
    const toml::array* arr = node->as_array();
    if (!arr) Fail(node, key, "expected an array of strings");
    for (const toml::node& item : *arr) {
      auto value = item.value<std::string>();
      if (!item.is_string() || !value) Fail(&item, key, "expected an array of strings");
      out.push_back(*value);
    }
    if (required && out.empty()) Fail(node, key, "must not be empty");
    return out;
  }

  const toml::table* OptionalTable(const std::string& key) {
    const toml::node* node = Get(key);
    if (!node) return nullptr;
    if (!node->is_table()) Fail(node, key, "expected a table");
    return node->as_table();
  }

  const toml::array* OptionalTableArray(const std::string& key) {
    const toml::node* node = Get(key);
    if (!node) return nullptr;
    const toml::array* arr = node->as_array();
    if (!arr || !arr->is_array_of_tables()) Fail(node, key, "expected [[" + Qualified(key) + "]] tables");
    return arr;
  }

  void RejectUnknownKeys() const {
    for (const auto& [key, node] : table_) {
      if (!seen_.count(std::string(key.str()))) Fail(&node, std::string(key.str()), "unknown key");
    }
  }

  const toml::table& table() const { return table_; }
  const std::string& path() const { return path_; }
  const std::string& source() const { return source_; }

 private:
  std::string Required(const std::string& key, std::optional<std::string> fallback) const {
    if (!fallback) Fail(nullptr, key, "is required");
    return *fallback;
  }

  const toml::table& table_;
  std::string path_;
  const std::string& source_;
  std::set<std::string> seen_;
};

void CheckAeTitle(TableReader& r, const std::string& key, const std::string& ae) {
  if (auto problem = AeTitleProblem(ae)) r.Fail(r.Get(key), key, *problem);
}

bool IsIpAddress(const std::string& text) {
  unsigned char buf[16];
  return inet_pton(AF_INET, text.c_str(), buf) == 1 || inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

bool Boolean(TableReader& r, const std::string& key, bool fallback) {
  const toml::node* node = r.Get(key);
  if (!node) return fallback;
  if (!node->is_boolean()) r.Fail(node, key, "expected true or false");
  return *node->value<bool>();
}

CentreConfig ReadCentre(TableReader& r, const std::filesystem::path& base_dir) {
  CentreConfig c;
  c.ae_title = r.String("ae_title");
  CheckAeTitle(r, "ae_title", c.ae_title);
  c.name = r.String("name", c.ae_title);
  c.bind_address = r.String("bind_address", c.bind_address);
  if (!IsIpAddress(c.bind_address)) r.Fail(r.Get("bind_address"), "bind_address", "not an IP address");
  c.dicom_port = static_cast<uint16_t>(r.Integer("dicom_port", 1, 65535, c.dicom_port));
  std::filesystem::path storage = r.String("storage");
  if (storage.empty()) r.Fail(r.Get("storage"), "storage", "must not be empty");
  c.storage = storage.is_absolute() ? storage : (base_dir / storage).lexically_normal();
  c.quiet_period_seconds = static_cast<int>(r.Integer("quiet_period_seconds", 1, 86400, c.quiet_period_seconds));
  c.max_associations = static_cast<int>(r.Integer("max_associations", 1, 1024, c.max_associations));
  c.acse_timeout_seconds = static_cast<int>(r.Integer("acse_timeout_seconds", 1, 600, c.acse_timeout_seconds));
  c.dimse_timeout_seconds = static_cast<int>(r.Integer("dimse_timeout_seconds", 1, 3600, c.dimse_timeout_seconds));
  c.max_pdu_bytes = static_cast<uint32_t>(r.Integer("max_pdu_bytes", kMinPduBytes, kMaxPduBytes, c.max_pdu_bytes));
  c.min_free_disk_mb = static_cast<uint64_t>(r.Integer("min_free_disk_mb", 0, int64_t{1} << 40, 512));
  // Capped: an association holds up to twice this in memory while storing (docs: operator guide).
  c.small_object_bytes = static_cast<uint64_t>(
      r.Integer("small_object_bytes", 0, int64_t{1} << 20, static_cast<int64_t>(c.small_object_bytes)));
  c.direct_io = Boolean(r, "direct_io", c.direct_io);
  c.segment_mb = static_cast<uint64_t>(r.Integer("segment_mb", 0, 65536, static_cast<int64_t>(c.segment_mb)));
  c.segment_prewrite = Boolean(r, "segment_prewrite", c.segment_prewrite);
  c.centre_ae_titles = r.StringArray("centre_ae_titles", false);
  for (const auto& ae : c.centre_ae_titles) CheckAeTitle(r, "centre_ae_titles", ae);
  c.centre_max_associations =
      static_cast<int>(r.Integer("centre_max_associations", 1, 1024, c.centre_max_associations));
  c.max_connections_per_address =
      static_cast<int>(r.Integer("max_connections_per_address", 1, 100000, c.max_connections_per_address));
  if (const toml::array* plain = r.OptionalTableArray("plain_callers")) {
    for (size_t i = 0; i < plain->size(); ++i) {
      TableReader pr(*plain->get(i)->as_table(), r.Qualified("plain_callers[" + std::to_string(i) + "]"), r.source());
      PlainCentreCaller p;
      p.ae_title = pr.String("ae_title");
      if (std::find(c.centre_ae_titles.begin(), c.centre_ae_titles.end(), p.ae_title) == c.centre_ae_titles.end()) {
        pr.Fail(pr.Get("ae_title"), "ae_title", "'" + p.ae_title + "' is not one of centre_ae_titles");
      }
      // Required and non-empty: a plain caller from any address is what this table exists to prevent.
      p.addresses = pr.StringArray("addresses", true);
      for (const auto& a : p.addresses) {
        if (!IsIpAddress(a)) pr.Fail(pr.Get("addresses"), "addresses", "'" + a + "' is not an IP address");
      }
      pr.RejectUnknownKeys();
      c.plain_callers.push_back(std::move(p));
    }
  }
  r.RejectUnknownKeys();
  return c;
}

std::filesystem::path ResolvePath(TableReader& r, const std::string& key, const std::filesystem::path& base_dir) {
  std::filesystem::path p = r.String(key);
  if (p.empty()) r.Fail(r.Get(key), key, "must not be empty");
  return p.is_absolute() ? p : (base_dir / p).lexically_normal();
}

DeliveryTarget ReadTarget(TableReader& r, const std::filesystem::path& base_dir) {
  DeliveryTarget t;
  t.ae_title = r.String("ae_title");
  CheckAeTitle(r, "ae_title", t.ae_title);
  t.host = r.String("host");
  if (t.host.empty()) r.Fail(r.Get("host"), "host", "must not be empty");
  t.port = static_cast<uint16_t>(r.Integer("port", 1, 65535, std::nullopt));
  t.tls = Boolean(r, "tls", false);
  if (r.table().contains("tls_ca")) {
    if (!t.tls) r.Fail(r.Get("tls_ca"), "tls_ca", "needs tls = true");
    t.tls_ca = ResolvePath(r, "tls_ca", base_dir);
  }
  r.RejectUnknownKeys();
  return t;
}

DicomTlsConfig ReadDicomTls(TableReader& r, const std::filesystem::path& base_dir) {
  DicomTlsConfig t;
  t.enabled = true;
  t.same_port = Boolean(r, "same_port", t.same_port);
  if (t.same_port && r.table().contains("port")) r.Fail(r.Get("port"), "port", "not with same_port = true");
  t.port = static_cast<uint16_t>(r.Integer("port", 0, 65535, t.port));
  t.allow_plain = Boolean(r, "allow_plain", t.allow_plain);
  if (!t.allow_plain && !t.same_port) {
    r.Fail(r.Get("allow_plain"), "allow_plain", "false needs same_port = true (one port, TLS only)");
  }
  t.certificate = ResolvePath(r, "certificate", base_dir);
  t.key = ResolvePath(r, "key", base_dir);
  t.ca = ResolvePath(r, "ca", base_dir);
  if (r.Get("crl")) t.crl = ResolvePath(r, "crl", base_dir);
  if (r.Get("legacy_certificate")) t.legacy_certificate = ResolvePath(r, "legacy_certificate", base_dir);
  if (r.Get("legacy_key")) t.legacy_key = ResolvePath(r, "legacy_key", base_dir);
  if (t.legacy_certificate.empty() != t.legacy_key.empty()) {
    r.Fail(r.Get("legacy_key"), "legacy_key", "legacy_certificate and legacy_key go together");
  }
  t.profile = r.String("profile", t.profile);
  if (t.profile != "bcp195-nd" && t.profile != "bcp195" && t.profile != "bcp195-ex") {
    r.Fail(r.Get("profile"), "profile", "must be bcp195-nd, bcp195 or bcp195-ex");
  }
  t.expiry_warning_days = static_cast<int>(r.Integer("expiry_warning_days", 1, 365, t.expiry_warning_days));
  r.RejectUnknownKeys();
  return t;
}

void CheckPriority(TableReader& r, const std::string& key, const std::string& value) {
  if (value != "STAT" && value != "HIGH" && value != "ROUTINE")
    r.Fail(r.Get(key), key, "must be STAT, HIGH or ROUTINE");
}

HttpsConfig ReadHttps(TableReader& r, const std::filesystem::path& base_dir) {
  HttpsConfig h;
  h.enabled = true;
  h.bind_address = r.String("bind_address", h.bind_address);
  if (!IsIpAddress(h.bind_address)) r.Fail(r.Get("bind_address"), "bind_address", "not an IP address");
  h.port = static_cast<uint16_t>(r.Integer("port", 1, 65535, h.port));
  h.certificate = ResolvePath(r, "certificate", base_dir);
  h.key = ResolvePath(r, "key", base_dir);
  h.ca = ResolvePath(r, "ca", base_dir);
  if (r.Get("crl")) h.crl = ResolvePath(r, "crl", base_dir);
  h.admins = r.StringArray("admins", false);
  h.threads = static_cast<int>(r.Integer("threads", 1, 64, h.threads));
  h.max_body_bytes = static_cast<uint64_t>(r.Integer("max_body_mb", 1, 4096, 64)) << 20;
  h.max_connections = static_cast<int>(r.Integer("max_connections", 1, 100000, h.max_connections));
  h.max_connections_per_address =
      static_cast<int>(r.Integer("max_connections_per_address", 1, 100000, h.max_connections_per_address));
  r.RejectUnknownKeys();
  return h;
}

ReadingConfig ReadReading(TableReader& r, const std::filesystem::path& base_dir) {
  ReadingConfig c;
  c.templates = r.Get("templates") ? ResolvePath(r, "templates", base_dir) : base_dir / "templates";
  c.lease_minutes = static_cast<int>(r.Integer("lease_minutes", 1, 24 * 60, c.lease_minutes));
  c.sla_minutes_stat = static_cast<int>(r.Integer("sla_minutes_stat", 1, 100000, c.sla_minutes_stat));
  c.sla_minutes_high = static_cast<int>(r.Integer("sla_minutes_high", 1, 100000, c.sla_minutes_high));
  c.sla_minutes_routine = static_cast<int>(r.Integer("sla_minutes_routine", 1, 100000, c.sla_minutes_routine));
  c.delivery_max_attempts = static_cast<int>(r.Integer("delivery_max_attempts", 1, 1000, c.delivery_max_attempts));
  c.delivery_retry_seconds = static_cast<int>(r.Integer("delivery_retry_seconds", 1, 3600, c.delivery_retry_seconds));
  c.delivery_retry_max_seconds =
      static_cast<int>(r.Integer("delivery_retry_max_seconds", 1, 86400, c.delivery_retry_max_seconds));
  c.delivery_timeout_seconds =
      static_cast<int>(r.Integer("delivery_timeout_seconds", 1, 600, c.delivery_timeout_seconds));
  c.critical_ack_minutes = static_cast<int>(r.Integer("critical_ack_minutes", 0, 24 * 60, c.critical_ack_minutes));
  r.RejectUnknownKeys();
  return c;
}

Member ReadMember(TableReader& r, const std::filesystem::path& base_dir) {
  Member m;
  m.id = r.String("id");
  if (m.id.empty()) r.Fail(r.Get("id"), "id", "must not be empty");
  m.name = r.String("name", m.id);
  m.ae_titles = r.StringArray("ae_titles", true);
  for (const auto& ae : m.ae_titles) CheckAeTitle(r, "ae_titles", ae);
  m.allowed_addresses = r.StringArray("allowed_addresses", false);
  for (const auto& a : m.allowed_addresses) {
    if (!IsIpAddress(a)) r.Fail(r.Get("allowed_addresses"), "allowed_addresses", "'" + a + "' is not an IP address");
  }
  if (const toml::table* d = r.OptionalTable("delivery")) {
    TableReader dr(*d, r.Qualified("delivery"), r.source());
    m.delivery = ReadTarget(dr, base_dir);
  }
  m.default_priority = r.String("default_priority", "ROUTINE");
  CheckPriority(r, "default_priority", m.default_priority);
  m.require_tls = Boolean(r, "require_tls", false);
  m.max_associations = static_cast<int>(r.Integer("max_associations", 1, 1024, m.max_associations));
  m.legacy_tls = Boolean(r, "legacy_tls", false);
  m.critical_webhook = r.String("critical_webhook", "");
  if (!m.critical_webhook.empty() && m.critical_webhook.rfind("https://", 0) != 0) {
    r.Fail(r.Get("critical_webhook"), "critical_webhook", "must be an https:// URL");
  }
  r.RejectUnknownKeys();
  return m;
}

Radiologist ReadRadiologist(TableReader& r) {
  Radiologist d;
  d.id = r.String("id");
  if (d.id.empty()) r.Fail(r.Get("id"), "id", "must not be empty");
  d.name = r.String("name");
  d.certificate_subject = r.String("certificate_subject", "");
  d.modalities = r.StringArray("modalities", false);
  d.members = r.StringArray("members", false);
  r.RejectUnknownKeys();
  return d;
}

}  // namespace

std::optional<std::string> AeTitleProblem(std::string_view ae) {
  if (ae.empty()) return "AE title must not be empty";
  if (ae.size() > 16) return "AE title '" + std::string(ae) + "' is longer than 16 characters";
  if (ae.find_first_not_of(' ') == std::string_view::npos) return "AE title must not be only spaces";
  for (char ch : ae) {
    if (ch == '\\' || static_cast<unsigned char>(ch) < 0x20 || static_cast<unsigned char>(ch) > 0x7e) {
      return "AE title '" + std::string(ae) + "' contains a backslash or a non-printable character";
    }
  }
  return std::nullopt;
}

const Member* Config::FindMemberByAeTitle(std::string_view ae) const {
  for (const Member& m : members) {
    for (const std::string& own : m.ae_titles) {
      if (own == ae) return &m;
    }
  }
  return nullptr;
}

std::optional<DeliveryTarget> Config::MoveDestination(std::string_view member_id, std::string_view ae) const {
  for (const Member& m : members) {
    if (m.delivery && m.delivery->ae_title == ae && (member_id.empty() || member_id == m.id)) return m.delivery;
  }
  if (member_id.empty()) {
    for (const DeliveryTarget& w : workstations) {
      if (w.ae_title == ae) return w;
    }
  }
  return std::nullopt;
}

const PlainCentreCaller* Config::FindPlainCentreCaller(std::string_view ae) const {
  for (const PlainCentreCaller& p : centre.plain_callers) {
    if (p.ae_title == ae) return &p;
  }
  return nullptr;
}

std::vector<std::string> ConfigWarnings(const Config& config) {
  std::vector<std::string> out;
  for (const Member& m : config.members) {
    if (!m.require_tls && m.allowed_addresses.empty()) {
      out.push_back("anyone who reaches the DICOM port can call as member " + m.id +
                    ": it has neither require_tls nor allowed_addresses");
    }
  }
  for (const std::string& ae : config.centre.centre_ae_titles) {
    if (!config.dicom_tls.enabled && !config.FindPlainCentreCaller(ae)) {
      out.push_back("centre AE title " + ae +
                    " cannot associate: no [dicom_tls] for its certificate and no plain_callers entry");
    }
  }
  return out;
}

bool Config::IsCentreAeTitle(std::string_view ae) const {
  for (const std::string& own : centre.centre_ae_titles) {
    if (own == ae) return true;
  }
  return false;
}

Config ParseConfig(std::string_view text, const std::string& source, const std::filesystem::path& base_dir) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream out;
    out << source << ":" << e.source().begin.line << ": " << e.description();
    throw ConfigError(out.str());
  }
  TableReader top(root, "", source);
  Config config;
  const toml::table* centre = top.OptionalTable("centre");
  if (!centre) top.Fail(nullptr, "centre", "the [centre] table is required");
  TableReader cr(*centre, "centre", source);
  config.centre = ReadCentre(cr, base_dir);
  if (const toml::table* tls = top.OptionalTable("dicom_tls")) {
    TableReader tr(*tls, "dicom_tls", source);
    config.dicom_tls = ReadDicomTls(tr, base_dir);
  }
  if (const toml::table* https = top.OptionalTable("https")) {
    TableReader hr(*https, "https", source);
    config.https = ReadHttps(hr, base_dir);
  }
  if (const toml::table* reading = top.OptionalTable("reading")) {
    TableReader rr(*reading, "reading", source);
    config.reading = ReadReading(rr, base_dir);
  } else {
    config.reading.templates = base_dir / "templates";
  }

  std::set<std::string> ids;
  std::set<std::string> aes(config.centre.centre_ae_titles.begin(), config.centre.centre_ae_titles.end());
  aes.insert(config.centre.ae_title);
  if (const toml::array* members = top.OptionalTableArray("members")) {
    for (size_t i = 0; i < members->size(); ++i) {
      const toml::table& t = *members->get(i)->as_table();
      TableReader mr(t, "members[" + std::to_string(i) + "]", source);
      Member m = ReadMember(mr, base_dir);
      if (!config.dicom_tls.enabled && (m.require_tls || (m.delivery && m.delivery->tls))) {
        mr.Fail(mr.Get(m.require_tls ? "require_tls" : "delivery"), m.require_tls ? "require_tls" : "delivery",
                "DICOM TLS needs the [dicom_tls] table");
      }
      if (m.legacy_tls && config.dicom_tls.legacy_certificate.empty()) {
        mr.Fail(mr.Get("legacy_tls"), "legacy_tls",
                "needs [dicom_tls] legacy_certificate and legacy_key (an RSA certificate)");
      }
      m.max_associations = std::min(m.max_associations, config.centre.max_associations);
      if (!ids.insert(m.id).second) mr.Fail(mr.Get("id"), "id", "duplicate member id '" + m.id + "'");
      for (const auto& ae : m.ae_titles) {
        if (!aes.insert(ae).second) {
          mr.Fail(mr.Get("ae_titles"), "ae_titles", "AE title '" + ae + "' is already used elsewhere in the config");
        }
      }
      config.members.push_back(std::move(m));
    }
  }
  std::set<std::string> rad_ids;
  if (const toml::array* rads = top.OptionalTableArray("radiologists")) {
    for (size_t i = 0; i < rads->size(); ++i) {
      TableReader rr(*rads->get(i)->as_table(), "radiologists[" + std::to_string(i) + "]", source);
      Radiologist d = ReadRadiologist(rr);
      if (!rad_ids.insert(d.id).second) rr.Fail(rr.Get("id"), "id", "duplicate radiologist id '" + d.id + "'");
      for (const std::string& m : d.members) {
        if (!ids.count(m)) rr.Fail(rr.Get("members"), "members", "'" + m + "' is no configured member id");
      }
      config.radiologists.push_back(std::move(d));
    }
  }
  if (const toml::array* stations = top.OptionalTableArray("workstations")) {
    for (size_t i = 0; i < stations->size(); ++i) {
      TableReader wr(*stations->get(i)->as_table(), "workstations[" + std::to_string(i) + "]", source);
      config.workstations.push_back(ReadTarget(wr, base_dir));
      if (config.workstations.back().tls && !config.dicom_tls.enabled) {
        wr.Fail(wr.Get("tls"), "tls", "DICOM TLS needs the [dicom_tls] table");
      }
    }
  }
  top.RejectUnknownKeys();
  return config;
}

Config LoadConfig(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path.string() + ": cannot open the config file");
  std::ostringstream text;
  text << in.rdbuf();
  std::filesystem::path base = std::filesystem::absolute(path).parent_path();
  return ParseConfig(text.str(), path.string(), base);
}

}  // namespace teleread
