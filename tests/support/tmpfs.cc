#include "tests/support/tmpfs.h"

#include "tests/support/process.h"

namespace teleread::test {

bool CanMountTmpfs() {
  ScratchDir probe("teleread-mount-probe");
  MountedTmpfs volume(probe.path(), "1m");
  return volume.mounted();
}

MountedTmpfs::MountedTmpfs(std::filesystem::path dir, const std::string& size) : dir_(std::move(dir)) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  mounted_ = RunCommand({"/bin/mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", dir_.string()}).exit_code == 0;
}

MountedTmpfs::~MountedTmpfs() {
  if (mounted_) RunCommand({"/bin/umount", "-l", dir_.string()});
}

}  // namespace teleread::test
