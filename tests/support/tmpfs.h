#pragma once
// Real small volumes for full-disk tests: a tmpfs, or an ext4 image on a loop device (O_DIRECT
// works there, as on a server's disk), mounted on a test's directory (root only; where it cannot
// be mounted the test skips, tests/support/skip.h).
#include <filesystem>
#include <string>

namespace teleread::test {

// Whether a tmpfs can be mounted here; asked before anything is started.
bool CanMountTmpfs();

// Mounts a tmpfs of `size` (mount's size= option, e.g. "8m") on `dir`, created if absent;
// unmounts it (lazily: a server may still hold files) when destroyed. mounted() says whether
// the mount succeeded.
class MountedTmpfs {
 public:
  MountedTmpfs(std::filesystem::path dir, const std::string& size);
  ~MountedTmpfs();
  MountedTmpfs(const MountedTmpfs&) = delete;
  MountedTmpfs& operator=(const MountedTmpfs&) = delete;
  bool mounted() const { return mounted_; }
  const std::filesystem::path& path() const { return dir_; }

 private:
  std::filesystem::path dir_;
  bool mounted_ = false;
};

// An ext4 file system without a journal (as this project's benchmark disk) of `megabytes`, made in
// the image file `image` and loop-mounted on `dir`; unmounted lazily when destroyed.
class MountedExt4 {
 public:
  MountedExt4(std::filesystem::path image, std::filesystem::path dir, int megabytes);
  ~MountedExt4();
  MountedExt4(const MountedExt4&) = delete;
  MountedExt4& operator=(const MountedExt4&) = delete;
  bool mounted() const { return mounted_; }
  const std::filesystem::path& path() const { return dir_; }

 private:
  std::filesystem::path image_, dir_;
  bool mounted_ = false;
};

}  // namespace teleread::test
