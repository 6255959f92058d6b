#pragma once
// Who may open an association: member hospitals by calling AE title (and source address when
// configured), and the centre's own AE titles. Plain logic over the config.
#include <optional>
#include <string>

#include "common/config.h"

namespace teleread {

struct Caller {
  std::string ae_title;
  std::string member_id;  // empty for a centre AE title
  bool is_centre = false;
};

class CallerPolicy {
 public:
  explicit CallerPolicy(const Config& config) : config_(config) {}
  // nullopt: reject the association (calling AE title not recognised).
  std::optional<Caller> Identify(const std::string& calling_ae, const std::string& peer_ip) const;
  bool AcceptsCalledAeTitle(const std::string& called_ae) const { return called_ae == config_.centre.ae_title; }

 private:
  const Config& config_;
};

}  // namespace teleread
