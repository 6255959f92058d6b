#pragma once
// Stored objects as a test sees them, wherever they lie: files under objects/, ranges of segments
// under segments/ and objects kept inside the index (object_data rows), read through a read-only connection to
// index.sqlite.
#include <cstddef>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

namespace teleread::test {

// The bytes of the object recorded at `relative_path` (an instance's path), from either tier;
// empty when it is not there.
std::string StoredBytes(const std::filesystem::path& storage_root, const std::string& relative_path);

// A file holding the stored object of SOP Instance `sop_uid`: its own file, or one written into
// `scratch` with the bytes kept in the index; empty when it is not stored.
std::filesystem::path StoredFileFor(const std::filesystem::path& storage_root, const std::string& sop_uid,
                                    const std::filesystem::path& scratch);

// Loses a stored object behind the server's back (its file, or its bytes in the index); false for
// an object inside a segment.
bool RemoveStoredObject(const std::filesystem::path& storage_root, const std::string& relative_path);

// Files under objects/ plus objects kept in the index plus rows naming a range of a segment.
size_t StoredObjectCount(const std::filesystem::path& storage_root);
// Rows naming a range of a segment.
size_t InSegmentObjectCount(const std::filesystem::path& storage_root);
// The paths of the objects kept in the index whose bytes are there ("index:..." rows with data).
std::set<std::string> InIndexPaths(const std::filesystem::path& storage_root);
// The paths of the objects inside segments whose range lies within their segment file.
std::set<std::string> InSegmentPaths(const std::filesystem::path& storage_root);
// Objects kept in the index only.
size_t InIndexObjectCount(const std::filesystem::path& storage_root);

// The data set's bytes of a Part 10 object: what follows the preamble, "DICM" and the meta header
// (its group length). Fails the test when `part10` is not one.
std::string DataSetBytes(const std::string& part10);
// Regular files under `dir`, recursively (paths, not the storage-relative set FilesUnder gives).
std::vector<std::filesystem::path> ListFiles(const std::filesystem::path& dir);

}  // namespace teleread::test
