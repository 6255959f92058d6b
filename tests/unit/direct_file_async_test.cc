// DirectFile's asynchronous writes into allocated room (a segment made whole by fallocate): the
// bytes land where the synchronous path puts them, Finish returns only when the disk has them
// all, and what cannot go asynchronously goes the old way.
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "server/store/direct_file.h"
#include "tests/support/direct_probe.h"
#include "tests/support/process.h"
#include "tests/support/skip.h"

using namespace teleread;
using test::Pattern;
using test::TakesDirect;

namespace {

constexpr uint64_t kRoom = 32 * DirectFile::kChunk;

// A file allocated whole, as the segment pool makes them; -1 where fallocate, O_DIRECT or Linux
// AIO is refused (a container's seccomp profile may refuse io_setup).
int AllocatedFile(const std::filesystem::path& path) {
  aio_context_t ctx = 0;
  if (::syscall(SYS_io_setup, 1, &ctx) != 0) return -1;
  ::syscall(SYS_io_destroy, ctx);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd < 0) return -1;
  if (!TakesDirect(path.parent_path()) || ::fallocate(fd, 0, 0, static_cast<off_t>(kRoom)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Writes `bytes` from `offset` in pieces as a receiver does; the file's result.
int WriteObject(DirectFile& file, const std::string& bytes) {
  for (size_t at = 0; at < bytes.size(); at += 70000) {
    if (int err = file.Append(bytes.data() + at, std::min<size_t>(70000, bytes.size() - at)); err != 0) return err;
  }
  return 0;
}

// Stand-ins for io_submit and io_getevents that keep a submitted write and run it (a pwrite from
// its buffer as the buffer is then) only when its completion is reaped, oldest first, one per
// call: a disk that takes as long as it may. A buffer filled again before its write was reaped
// puts the wrong bytes on the disk; a write never reaped puts none.
struct DeferredAio {
  struct Write {
    uint64_t data;
    int fd;
    const char* buffer;
    size_t bytes;
    off_t offset;
  };
  static std::deque<Write>& queue() {
    static std::deque<Write> q;  // the test's thread only
    return q;
  }
  static long Submit(unsigned long, long n, iocb** list) {
    for (long i = 0; i < n; ++i) {
      const iocb& cb = *list[i];
      if (cb.aio_lio_opcode != IOCB_CMD_PWRITE) return i;
      queue().push_back({cb.aio_data, static_cast<int>(cb.aio_fildes), reinterpret_cast<const char*>(cb.aio_buf),
                         static_cast<size_t>(cb.aio_nbytes), static_cast<off_t>(cb.aio_offset)});
    }
    return n;
  }
  static bool& reaped_nothing() {  // asked for a completion with nothing out
    static bool flag = false;
    return flag;
  }
  static size_t& cached_while_reaping() {  // buffers back in the thread's cache while writes were out
    static size_t most = 0;
    return most;
  }
  static long GetEvents(unsigned long, long min_nr, long, io_event* events) {
    if (queue().empty()) reaped_nothing() = true;
    // A live file holds both its buffers: one in the cache now was given back before its write was done.
    cached_while_reaping() = std::max(cached_while_reaping(), DirectFile::CachedBytes());
    long done = 0;
    for (; done < min_nr && !queue().empty(); ++done) {
      const Write w = queue().front();
      queue().pop_front();
      const ssize_t res = ::pwrite(w.fd, w.buffer, w.bytes, w.offset);
      events[done] = io_event{w.data, 0, res < 0 ? -errno : res, 0};
    }
    return done;
  }
};
constexpr AioCalls kDeferredAio{&DeferredAio::Submit, &DeferredAio::GetEvents};

}  // namespace

TEST_CASE("a buffer is filled again only once its write is reaped, and every write is reaped before its buffer goes",
          "[store][direct][segment]") {
  test::ScratchDir dir;
  const std::filesystem::path path = dir.path() / "segment";
  const int fd = AllocatedFile(path);
  if (fd < 0) TELEREAD_SKIP("no O_DIRECT or fallocate in the scratch directory's file system, or no Linux AIO");
  DeferredAio::queue().clear();
  DirectFile::ReleaseCachedBuffer();
  const std::string bytes = Pattern(7 * DirectFile::kChunk + 5000, 11);
  {
    DirectFile file;
    file.set_aio_for_test(&kDeferredAio);
    REQUIRE(file.Begin(fd, 0, kRoom, true, 0, true) == 0);
    REQUIRE(WriteObject(file, bytes) == 0);
    // The last chunk's write is still out while the other buffer takes the tail: two buffers, so
    // the one before it was reaped when its buffer was wanted again.
    CHECK(DeferredAio::queue().size() == 1);
    REQUIRE(file.Finish() == 0);
    CHECK(DeferredAio::queue().empty());
    CHECK(file.async_writes() == 7);
    CHECK(file.direct_bytes() == (bytes.size() + 4095) / 4096 * 4096);
  }
  const uint64_t second_at = 8 * DirectFile::kChunk;
  {
    // Given up without Finish (a failed association): the destructor reaps before the buffers go.
    DirectFile file;
    file.set_aio_for_test(&kDeferredAio);
    REQUIRE(file.Begin(fd, second_at, kRoom - second_at, true, 0, true) == 0);
    REQUIRE(WriteObject(file, bytes) == 0);
    CHECK_FALSE(DeferredAio::queue().empty());
  }
  CHECK(DeferredAio::queue().empty());
  CHECK(DeferredAio::cached_while_reaping() == 0);
  CHECK_FALSE(DeferredAio::reaped_nothing());
  ::close(fd);
  const std::string got = test::ReadFile(path);
  CHECK(got.substr(0, bytes.size()) == bytes);
  // What the abandoned file submitted, its whole chunks, landed as sent.
  CHECK(got.substr(second_at, 7 * DirectFile::kChunk) == bytes.substr(0, 7 * DirectFile::kChunk));
}

TEST_CASE("a failed io_getevents fails its file and gives the thread's AIO context up for good",
          "[store][direct][segment]") {
  test::ScratchDir dir;
  const int fd = AllocatedFile(dir.path() / "segment");
  if (fd < 0) TELEREAD_SKIP("no O_DIRECT or fallocate in the scratch directory's file system, or no Linux AIO");
  // Submits to the kernel; reaping fails as if the kernel had lost the context.
  static const AioCalls kLostContext{nullptr, [](unsigned long, long, long, io_event*) -> long {
                                       errno = EINVAL;
                                       return -1;
                                     }};
  const std::string bytes = Pattern(3 * DirectFile::kChunk, 5);
  // On a thread of its own, whose context alone is given up (the test's thread keeps its own
  // for the tests after this one); checked here once it has ended.
  int appended = 0, finished = 0, later = -1;
  uint64_t failed_async = 0, later_async = 1;
  std::thread([&] {
    {
      DirectFile file;
      file.set_aio_for_test(&kLostContext);
      if (file.Begin(fd, 0, kRoom, true, 0, true) != 0) return;
      appended = WriteObject(file, bytes);
      finished = file.Finish();
      failed_async = file.async_writes();
    }
    // Its writes may still be running in the kernel: the context is never reaped or used again.
    for (int i = 0; i < 2; ++i) {
      DirectFile file;
      if (file.Begin(fd, 8 * DirectFile::kChunk, 8 * DirectFile::kChunk, true, 0, true) != 0) return;
      later = WriteObject(file, bytes);
      if (later == 0) later = file.Finish();
      later_async = file.async_writes();
      if (later != 0 || later_async != 0) return;
    }
  }).join();
  CHECK(appended == EINVAL);
  CHECK(finished == EINVAL);
  CHECK(failed_async >= 1);
  CHECK(later == 0);
  CHECK(later_async == 0);
  ::close(fd);
  CHECK(test::ReadFile(dir.path() / "segment").substr(8 * DirectFile::kChunk, bytes.size()) == bytes);
}

namespace {

// io_setup as the system answers it (an errno to refuse with, else the kernel's), counted, on a
// clock the test moves: one test's thread at a time.
struct RefusedSetup {
  static int& refuse() {
    static int err = 0;
    return err;
  }
  static int& calls() {
    static int n = 0;
    return n;
  }
  static std::chrono::steady_clock::time_point& clock() {
    static std::chrono::steady_clock::time_point t{};
    return t;
  }
  static long Setup(unsigned nr, unsigned long* ctx) {
    ++calls();
    if (refuse() != 0) {
      errno = refuse();
      return -1;
    }
    const long r = ::syscall(SYS_io_setup, nr, ctx);
    if (r != 0) kernel_refused() = errno;
    return r;
  }
  static int& kernel_refused() {  // the kernel's own refusal (aio-max-nr taken by others meanwhile)
    static int err = 0;
    return err;
  }
  static std::chrono::steady_clock::time_point Now() { return clock(); }
};
constexpr AioCalls kRefusedSetup{nullptr, nullptr, &RefusedSetup::Setup, &RefusedSetup::Now};  // the kernel's writes

}  // namespace

TEST_CASE("io_setup refused with EAGAIN is asked again 10 s later, and refused otherwise never again",
          "[store][direct][segment]") {
  test::ScratchDir dir;
  const int fd = AllocatedFile(dir.path() / "segment");
  if (fd < 0) TELEREAD_SKIP("no O_DIRECT or fallocate in the scratch directory's file system, or no Linux AIO");
  const std::string bytes = Pattern(3 * DirectFile::kChunk, 9);
  struct Step {
    int refuse;   // io_setup's answer from now on: an errno, or 0 for the kernel's
    int seconds;  // the clock since the thread's first file
    int result = -1, setups = -1;
    uint64_t async = 99;
  };
  // Each thread's own context: the first file of a new thread asks io_setup.
  auto run = [&](std::vector<Step>& steps) {
    RefusedSetup::calls() = 0;
    RefusedSetup::kernel_refused() = 0;
    const auto start = std::chrono::steady_clock::now();
    std::thread([&] {
      for (Step& step : steps) {
        RefusedSetup::refuse() = step.refuse;
        RefusedSetup::clock() = start + std::chrono::seconds(step.seconds);
        DirectFile file;
        file.set_aio_for_test(&kRefusedSetup);
        if (file.Begin(fd, 0, kRoom, true, 0, true) != 0) return;
        step.result = WriteObject(file, bytes);
        if (step.result == 0) step.result = file.Finish();
        step.async = file.async_writes();
        step.setups = RefusedSetup::calls();
      }
    }).join();
  };

  SECTION("EAGAIN (aio-max-nr reached): synchronous writes until the thread asks again 10 s later") {
    std::vector<Step> steps{{EAGAIN, 0}, {0, 9}, {0, 10}, {0, 11}};
    run(steps);
    if (RefusedSetup::kernel_refused() != 0) TELEREAD_SKIP("the kernel refused io_setup itself: no Linux AIO left");
    for (const Step& step : steps) CHECK(step.result == 0);
    CHECK(steps[0].async == 0);
    CHECK(steps[0].setups == 1);
    CHECK(steps[1].async == 0);  // 9 s: not asked yet, though io_setup would now succeed
    CHECK(steps[1].setups == 1);
    CHECK(steps[2].async >= 1);  // 10 s: asked again, and the writes are asynchronous
    CHECK(steps[2].setups == 2);
    CHECK(steps[3].async >= 1);  // the context is kept: not asked a third time
    CHECK(steps[3].setups == 2);
  }
  SECTION("ENOSYS (no AIO in the kernel): never asked again") {
    std::vector<Step> steps{{ENOSYS, 0}, {0, 3600}};
    run(steps);
    for (const Step& step : steps) CHECK(step.result == 0);
    CHECK(steps[0].async == 0);
    CHECK(steps[1].async == 0);
    CHECK(steps[1].setups == 1);
  }
  ::close(fd);
  CHECK(test::ReadFile(dir.path() / "segment").substr(0, bytes.size()) == bytes);
}

TEST_CASE("in allocated room whole chunks are written asynchronously, and Finish returns with every byte in place",
          "[store][direct][segment]") {
  test::ScratchDir dir;
  const std::filesystem::path path = dir.path() / "segment";
  const int fd = AllocatedFile(path);
  if (fd < 0) TELEREAD_SKIP("no O_DIRECT or fallocate in the scratch directory's file system, or no Linux AIO");
  std::string expected;
  uint64_t offset = 0;
  for (size_t size : {3 * DirectFile::kChunk + 5000, size_t{4096}, DirectFile::kChunk, DirectFile::kChunk / 2 + 4096,
                      7 * DirectFile::kChunk + 1}) {
    INFO("object of " << size << " bytes at " << offset);
    const std::string bytes = Pattern(size, static_cast<unsigned>(size));
    DirectFile file;
    REQUIRE(file.Begin(fd, offset, kRoom - offset, true, 0, true) == 0);
    REQUIRE(WriteObject(file, bytes) == 0);
    REQUIRE(file.Finish() == 0);
    CHECK(file.async_writes() == size / DirectFile::kChunk);  // every whole chunk; the rest synchronously
    CHECK(file.direct_bytes() == (size + 4095) / 4096 * 4096);
    expected.resize(offset, '\0');
    expected += bytes;
    offset = (offset + size + 4095) / 4096 * 4096;
  }
  expected.resize(offset, '\0');
  ::close(fd);
  const std::string got = test::ReadFile(path);
  CHECK(got.size() == kRoom);  // allocated whole; the pool cuts what is unused
  CHECK(got.substr(0, offset) == expected);
  CHECK(got.find_first_not_of('\0', offset) == std::string::npos);
}

TEST_CASE(
    "an asynchronous write's failure fails its file, and a second file on the thread or growing room writes "
    "synchronously",
    "[store][direct][segment]") {
  test::ScratchDir dir;
  const int fd = AllocatedFile(dir.path() / "segment");
  if (fd < 0) TELEREAD_SKIP("no O_DIRECT or fallocate in the scratch directory's file system, or no Linux AIO");
  const std::string bytes = Pattern(4 * DirectFile::kChunk + 100, 7);
  {
    DirectFile file;
    REQUIRE(file.Begin(fd, 0, kRoom, true, 0, true) == 0);
    file.fail_next_async_write_for_test(EIO);
    const int appended = WriteObject(file, bytes);
    CHECK((appended == 0 || appended == EIO));  // seen when its buffer is wanted again, or at Finish
    CHECK(file.Finish() == EIO);
    CHECK(file.Append("x", 1) == EIO);  // final
    CHECK(file.direct_bytes() < bytes.size());
  }
  {
    // The kernel refuses the submission itself (a file not open for writing): the file goes the
    // synchronous way, whose write fails the same.
    const int read_only = ::open((dir.path() / "segment").c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(read_only >= 0);
    DirectFile file;
    REQUIRE(file.Begin(read_only, 0, kRoom, true, 0, true) == 0);
    CHECK(WriteObject(file, bytes) == EBADF);
    CHECK(file.Finish() == EBADF);
    CHECK(file.async_writes() == 0);
    ::close(read_only);
  }
  {
    DirectFile first, second;
    REQUIRE(first.Begin(fd, 0, 8 * DirectFile::kChunk, true, 0, true) == 0);
    REQUIRE(second.Begin(fd, 8 * DirectFile::kChunk, 8 * DirectFile::kChunk, true, 0, true) == 0);
    REQUIRE(WriteObject(first, bytes) == 0);
    REQUIRE(WriteObject(second, bytes) == 0);
    REQUIRE(first.Finish() == 0);
    REQUIRE(second.Finish() == 0);
    CHECK(first.async_writes() == bytes.size() / DirectFile::kChunk);
    CHECK(second.async_writes() == 0);  // the thread's AIO context serves one file at a time
    CHECK(second.direct_bytes() == first.direct_bytes());
  }
  {
    DirectFile growing, after;
    REQUIRE(growing.Begin(fd, 16 * DirectFile::kChunk, 8 * DirectFile::kChunk, true, 0, false) == 0);
    REQUIRE(WriteObject(growing, bytes) == 0);
    REQUIRE(growing.Finish() == 0);
    CHECK(growing.async_writes() == 0);  // an extending write would block in io_submit anyway
    REQUIRE(after.Begin(fd, 24 * DirectFile::kChunk, 8 * DirectFile::kChunk, true, 0, true) == 0);
    REQUIRE(WriteObject(after, bytes) == 0);
    REQUIRE(after.Finish() == 0);
    CHECK(after.async_writes() == bytes.size() / DirectFile::kChunk);  // the context is free again once a file finishes
  }
  ::close(fd);
  const std::string got = test::ReadFile(dir.path() / "segment");
  CHECK(got.substr(0, bytes.size()) == bytes);
  CHECK(got.substr(8 * DirectFile::kChunk, bytes.size()) == bytes);
  CHECK(got.substr(16 * DirectFile::kChunk, bytes.size()) == bytes);
  CHECK(got.substr(24 * DirectFile::kChunk, bytes.size()) == bytes);
}

TEST_CASE("a pending sync runs beside its caller and holds the thread's AIO context until waited for",
          "[store][direct][segment]") {
  test::ScratchDir dir;
  const int fd = AllocatedFile(dir.path() / "segment");
  if (fd < 0) TELEREAD_SKIP("no O_DIRECT or fallocate in the scratch directory's file system, or no Linux AIO");
  const std::string bytes = Pattern(2 * DirectFile::kChunk, 9);
  {
    PendingSync sync(fd);
    CHECK(sync.started_async());
    CHECK(sync.pending());
    PendingSync second(fd);  // the context is taken: this one ran at once
    CHECK_FALSE(second.started_async());
    CHECK(second.Wait() == 0);
    DirectFile meanwhile;  // nor may a file's writes share the context with the sync
    REQUIRE(meanwhile.Begin(fd, 0, 8 * DirectFile::kChunk, true, 0, true) == 0);
    REQUIRE(WriteObject(meanwhile, bytes) == 0);
    REQUIRE(meanwhile.Finish() == 0);
    CHECK(meanwhile.async_writes() == 0);
    CHECK(sync.Wait() == 0);
    CHECK_FALSE(sync.pending());
    CHECK(sync.Wait() == 0);  // the same result again
  }
  DirectFile after;
  REQUIRE(after.Begin(fd, 8 * DirectFile::kChunk, 8 * DirectFile::kChunk, true, 0, true) == 0);
  REQUIRE(WriteObject(after, bytes) == 0);
  REQUIRE(after.Finish() == 0);
  CHECK(after.async_writes() == bytes.size() / DirectFile::kChunk);
  {
    PendingSync dropped(fd);  // destroyed unwaited: it waits itself, and frees the context
    CHECK(dropped.pending());
  }
  PendingSync again(fd);
  CHECK(again.started_async());
  ::close(fd);
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  PendingSync on_pipe(pipe_fds[0]);  // nothing to sync there: refused, as fdatasync refuses it
  CHECK(on_pipe.Wait() == EINVAL);
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}
