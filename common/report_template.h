#pragma once
// Report templates: one TOML file per template under the centre's templates directory
// (config/templates/), each for some modalities and body parts, with default text for the
// sections (findings, impression, recommendation) and optional pick-lists shown to the writer.
// `report new` starts from the best match for the study; a plain "default" template always
// exists.
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace teleread {

struct ReportTemplate {
  std::string name;  // the file name without .toml
  std::string title;
  std::vector<std::string> modalities;  // empty: any
  std::vector<std::string> body_parts;  // empty: any (DICOM Body Part Examined, e.g. CHEST)
  std::string findings, impression, recommendation;
  std::vector<std::pair<std::string, std::vector<std::string>>> picklists;  // label -> choices
};

// Throws ConfigError naming the file, line and key; unknown keys are errors.
ReportTemplate ParseReportTemplate(std::string_view toml_text, const std::string& source, const std::string& name);
// Every *.toml under `dir`, by name, plus the built-in plain "default" unless one is given. A
// missing directory gives only the default.
std::vector<ReportTemplate> LoadReportTemplates(const std::filesystem::path& dir);
// `name` when given (nullptr when there is none by that name); else the most specific template
// for the study: modality and body part, then modality only, then "default".
const ReportTemplate* ChooseTemplate(const std::vector<ReportTemplate>& templates,
                                     const std::vector<std::string>& study_modalities, const std::string& body_part,
                                     const std::string& name = "");

}  // namespace teleread
