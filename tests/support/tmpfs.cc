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

MountedExt4::MountedExt4(std::filesystem::path image, std::filesystem::path dir, int megabytes)
    : image_(std::move(image)), dir_(std::move(dir)) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  const std::string size = std::to_string(megabytes) + "M";
  mounted_ = RunCommand({"/usr/bin/truncate", "-s", size, image_.string()}).exit_code == 0 &&
             RunCommand({"/sbin/mkfs.ext4", "-q", "-F", "-O", "^has_journal", image_.string()}).exit_code == 0 &&
             RunCommand({"/bin/mount", "-o", "loop", image_.string(), dir_.string()}).exit_code == 0;
}

MountedExt4::~MountedExt4() {
  if (mounted_) RunCommand({"/bin/umount", "-l", dir_.string()});  // lazily: the loop device goes with it
}

}  // namespace teleread::test
