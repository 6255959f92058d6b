#include "common/report_template.h"

#include <toml++/toml.h>
#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "common/config.h"

namespace teleread {
namespace {

[[noreturn]] void Fail(const std::string& source, const toml::node* node, const std::string& key,
                       const std::string& message) {
  std::ostringstream out;
  out << source;
  if (node && node->source().begin.line > 0) out << ":" << node->source().begin.line;
  out << ": " << key << ": " << message;
  throw ConfigError(out.str());
}

std::vector<std::string> Strings(const std::string& source, const toml::node* node, const std::string& key) {
  std::vector<std::string> out;
  if (!node) return out;
  const toml::array* a = node->as_array();
  if (!a) Fail(source, node, key, "expected an array of strings");
  for (const toml::node& v : *a) {
    if (!v.is_string()) Fail(source, &v, key, "expected an array of strings");
    out.push_back(*v.value<std::string>());
  }
  return out;
}

std::string Text(const std::string& source, const toml::node* node, const std::string& key) {
  if (!node) return "";
  if (!node->is_string()) Fail(source, node, key, "expected a string");
  std::string s = *node->value<std::string>();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

ReportTemplate ParseReportTemplate(std::string_view text, const std::string& source, const std::string& name) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream out;
    out << source << ":" << e.source().begin.line << ": " << e.description();
    throw ConfigError(out.str());
  }
  static const std::set<std::string> kKeys = {"title",      "modalities",     "body_parts", "findings",
                                              "impression", "recommendation", "picklists"};
  for (const auto& [key, node] : root) {
    if (!kKeys.count(std::string(key.str()))) Fail(source, &node, std::string(key.str()), "unknown key");
  }
  ReportTemplate t;
  t.name = name;
  t.title = root.get("title") ? Text(source, root.get("title"), "title") : name;
  t.modalities = Strings(source, root.get("modalities"), "modalities");
  t.body_parts = Strings(source, root.get("body_parts"), "body_parts");
  t.findings = Text(source, root.get("findings"), "findings");
  t.impression = Text(source, root.get("impression"), "impression");
  t.recommendation = Text(source, root.get("recommendation"), "recommendation");
  if (const toml::node* p = root.get("picklists")) {
    const toml::table* lists = p->as_table();
    if (!lists) Fail(source, p, "picklists", "expected a table of arrays");
    for (const auto& [label, choices] : *lists) {
      t.picklists.emplace_back(std::string(label.str()),
                               Strings(source, &choices, "picklists." + std::string(label.str())));
    }
  }
  return t;
}

std::vector<ReportTemplate> LoadReportTemplates(const std::filesystem::path& dir) {
  std::vector<ReportTemplate> out;
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) {
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      if (e.path().extension() == ".toml") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      std::ostringstream text;
      text << in.rdbuf();
      out.push_back(ParseReportTemplate(text.str(), f.string(), f.stem().string()));
    }
  }
  if (std::none_of(out.begin(), out.end(), [](const ReportTemplate& t) { return t.name == "default"; })) {
    ReportTemplate plain;
    plain.name = "default";
    plain.title = "Plain report";
    out.push_back(plain);
  }
  return out;
}

const ReportTemplate* ChooseTemplate(const std::vector<ReportTemplate>& templates,
                                     const std::vector<std::string>& modalities, const std::string& body_part,
                                     const std::string& name) {
  auto has = [](const std::vector<std::string>& list, const std::string& v) {
    return std::find(list.begin(), list.end(), v) != list.end();
  };
  if (!name.empty()) {
    for (const ReportTemplate& t : templates) {
      if (t.name == name) return &t;
    }
    return nullptr;
  }
  const ReportTemplate* best = nullptr;
  int best_score = -1;
  for (const ReportTemplate& t : templates) {
    bool modality = t.modalities.empty();
    for (const std::string& m : modalities) modality |= has(t.modalities, m);
    const bool part = t.body_parts.empty() || has(t.body_parts, body_part);
    if (!modality || !part) continue;
    const int score = (t.modalities.empty() ? 0 : 2) + (t.body_parts.empty() ? 0 : 1);
    if (score > best_score || (score == best_score && t.name == "default")) {
      best = &t;
      best_score = score;
    }
  }
  return best;
}

}  // namespace teleread
