#pragma once
// Objects without images, shown for what they are: SR documents (incoming and our own reports)
// as indented text with their content tree, Encapsulated PDF (and CDA, STL...) saved as the
// document it carries, anything else named by its SOP class.
//
// Threads: any; the functions work on their arguments only.
#include <filesystem>
#include <string>

#include "common/status.h"

namespace teleread::viewer {

enum class ObjectKind { kImage, kWaveform, kStructuredReport, kEncapsulatedDocument, kOther };

// What a SOP class holds, from its UID (and, for waveforms, DCMTK's list of waveform classes).
ObjectKind KindOfSopClass(const std::string& sop_class_uid);
// The SOP class's name ("Basic Text SR Storage"), or the UID itself when DCMTK does not know it.
std::string SopClassName(const std::string& sop_class_uid);

// The SR document as UTF-8 text: header (patient, completion and verification, observer)
// then the content tree, one item per line indented by depth ("CONTAINER: ...", "TEXT: ...").
// InvalidArgument when the file is no SR document.
Result<std::string> StructuredReportText(const std::filesystem::path& file);

// Writes the encapsulated document to `out_dir`/<stem>.<pdf|xml|stl|bin> and returns that path.
// InvalidArgument when the object holds none.
Result<std::filesystem::path> SaveEncapsulatedDocument(const std::filesystem::path& file,
                                                       const std::filesystem::path& out_dir);

}  // namespace teleread::viewer
