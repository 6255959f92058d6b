#pragma once
// Segment files as the receiver leaves them (server/store/segment_trailer.h), made by hand: for
// tests of start-up recovery and of what it may redo.
#include <filesystem>
#include <string>
#include <vector>

namespace teleread::test {

// `file` as the receiver would have written it: its meta header naming `source_ae` and the
// C-STORE request's `request_class`.
std::string AsReceived(const std::filesystem::path& file, const std::string& source_ae, const char* request_class,
                       const std::filesystem::path& scratch);

// Writes `objects` one after another into `segments_dir`/`name`, each slot ending with its trailer
// sealed under `key`; returns each object's index path ("segments/<name>@<offset>+<length>").
std::vector<std::string> WriteSealedSegment(const std::filesystem::path& segments_dir, const std::string& name,
                                            const std::vector<std::string>& objects, const std::string& key);

}  // namespace teleread::test
