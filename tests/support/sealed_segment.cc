#include "tests/support/sealed_segment.h"

#include <catch2/catch.hpp>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcmetinf.h"

#include "server/store/object_store.h"
#include "server/store/segment_trailer.h"
#include "tests/support/process.h"

namespace teleread::test {

std::string AsReceived(const std::filesystem::path& file, const std::string& source_ae, const char* request_class,
                       const std::filesystem::path& scratch) {
  DcmFileFormat ff;
  REQUIRE(ff.loadFile(file.c_str()).good());
  ff.getMetaInfo()->putAndInsertString(DCM_SourceApplicationEntityTitle, source_ae.c_str());
  ff.getMetaInfo()->putAndInsertString(DCM_MediaStorageSOPClassUID, request_class);
  // Its group length as the receiver computes it (written as it stands: the meta is not updated).
  REQUIRE(ff.getMetaInfo()
              ->computeGroupLengthAndPadding(EGL_withGL, EPD_noChange, META_HEADER_DEFAULT_TRANSFERSYNTAX,
                                             EET_UndefinedLength)
              .good());
  REQUIRE(ff.saveFile(scratch.c_str(), EXS_Unknown, EET_ExplicitLength, EGL_recalcGL, EPD_noChange, 0, 0,
                      EWM_dontUpdateMeta)
              .good());
  return ReadFile(scratch);
}

std::vector<std::string> WriteSealedSegment(const std::filesystem::path& segments_dir, const std::string& name,
                                            const std::vector<std::string>& objects, const std::string& key) {
  std::string segment;
  std::vector<std::string> paths;
  for (const std::string& object : objects) {
    const uint64_t offset = segment.size();
    ObjectHasher hash;
    hash.Update(object.data(), object.size());
    segment += object;
    segment.resize(SegmentSlotEnd(offset, object.size(), SegmentPool::kAlign) - kSegmentTrailerBytes, '\0');
    segment += EncodeSegmentTrailer({offset, object.size(), hash.Digest()}, key);
    paths.push_back(ObjectStore::InSegmentPathFor(name, offset, object.size()));
  }
  WriteFile(segments_dir / name, segment);
  return paths;
}

}  // namespace teleread::test
