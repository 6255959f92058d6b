#pragma once
// DIMSE status codes (PS3.7 C, PS3.4 B.2.3 and C.4) and the one place where the workflow's
// outcomes become them.
#include <cstdint>
#include <string>

#include "server/reading/ingest.h"

class DcmDataset;

namespace teleread::dimse {

inline constexpr uint16_t kSuccess = 0x0000;
inline constexpr uint16_t kWarning = 0x0001;
inline constexpr uint16_t kPending = 0xFF00;
inline constexpr uint16_t kCancel = 0xFE00;
// C-STORE
inline constexpr uint16_t kDuplicateSopInstance = 0x0111;  // same UID stored with other content
inline constexpr uint16_t kNotAuthorized = 0x0124;         // study belongs to another member
inline constexpr uint16_t kOutOfResources = 0xA700;
inline constexpr uint16_t kDataSetDoesNotMatchSopClass = 0xA900;
inline constexpr uint16_t kCannotUnderstand = 0xC000;
// C-FIND, C-MOVE, C-GET
inline constexpr uint16_t kIdentifierDoesNotMatch = 0xA900;
inline constexpr uint16_t kUnableToProcess = 0xC000;
inline constexpr uint16_t kDestinationUnknown = 0xA801;
inline constexpr uint16_t kSubOperationsRefused = 0xA702;
inline constexpr uint16_t kSomeSubOperationsFailed = 0xB000;

// The C-STORE status for an ingest outcome.
uint16_t ForIngest(IngestCode code);

// Whether a peer's C-STORE status means it stored the object: success and the warnings
// (0x0001, 0xBxxx).
inline bool CountsAsStored(uint16_t status) {
  return status == kSuccess || status == kWarning || (status & 0xF000) == 0xB000;
}

// "A700"
std::string Hex(uint16_t status);

// An Error Comment's value: `comment` cut to the 64 characters of LO.
std::string ErrorCommentValue(const std::string& comment);
// A status detail data set with ErrorCommentValue(comment) as its Error Comment.
void SetErrorComment(DcmDataset& detail, const std::string& comment);

}  // namespace teleread::dimse
