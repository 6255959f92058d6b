// The one mapping between workflow outcomes and DIMSE statuses, and which answers of a member's
// PACS count as stored (a delivery with a warning is delivered, not retried).
#include <catch2/catch.hpp>

#include "server/dicom/dimse_status.h"

using namespace teleread;

TEST_CASE("ingest outcomes map to the C-STORE statuses of the conformance statement", "[dimse]") {
  CHECK(dimse::ForIngest(IngestCode::kStored) == 0x0000);
  CHECK(dimse::ForIngest(IngestCode::kDifferentContent) == 0x0111);
  CHECK(dimse::ForIngest(IngestCode::kNotAuthorized) == 0x0124);
  CHECK(dimse::ForIngest(IngestCode::kNoStorage) == 0xA700);
  CHECK(dimse::ForIngest(IngestCode::kDoesNotMatch) == 0xA900);
  CHECK(dimse::ForIngest(IngestCode::kUnreadable) == 0xC000);
}

TEST_CASE("a member's success and warning statuses count as delivered, failures do not", "[dimse][outbox]") {
  for (uint16_t stored : {0x0000, 0x0001, 0xB000, 0xB006, 0xB007}) {
    INFO(dimse::Hex(stored));
    CHECK(dimse::CountsAsStored(stored));
  }
  for (uint16_t refused : {0xA700, 0xA900, 0xC000, 0x0111, 0x0124, 0xFFFF}) {
    INFO(dimse::Hex(refused));
    CHECK_FALSE(dimse::CountsAsStored(refused));
  }
  CHECK(dimse::Hex(0xA700) == "A700");
}
