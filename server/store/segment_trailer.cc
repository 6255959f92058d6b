#include "server/store/segment_trailer.h"

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

#include "server/store/object_store.h"

namespace teleread {
namespace {

constexpr char kMagic[8] = {'T', 'R', 'S', 'E', 'G', 'O', 'B', '1'};
constexpr size_t kChecked = kSegmentTrailerBytes - 8;  // all but the seal, which ends the trailer
constexpr size_t kKeyBytes = 32;
constexpr size_t kReadChunk = 1 << 20;

void PutU64(char* at, uint64_t v) {
  for (int i = 0; i < 8; ++i) at[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
uint64_t GetU64(const char* at) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(at[i]);
  return v;
}

// Reads [at, at + n) wholly; 0 or the errno (EIO at an early end of file).
int PReadAll(int fd, char* out, size_t n, uint64_t at) {
  for (size_t done = 0; done < n;) {
    const ssize_t r = ::pread(fd, out + done, n - done, static_cast<off_t>(at + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    if (r == 0) return EIO;
    done += static_cast<size_t>(r);
  }
  return 0;
}

int HashRange(int fd, uint64_t offset, uint64_t length, std::string& buffer, uint64_t* hash) {
  ObjectHasher hasher;
  for (uint64_t at = 0; at < length;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buffer.size(), length - at));
    if (int err = PReadAll(fd, buffer.data(), n, offset + at); err != 0) return err;
    hasher.Update(buffer.data(), n);
    at += n;
  }
  *hash = hasher.Digest();
  return 0;
}

// Fetching SHA-256 and HMAC from OpenSSL's provider store, as HMAC() does at every call, cost
// ~4 % of a CT object's CPU in the server: each thread keeps a context, given the key at every
// seal (no fetch then). Not restarted without a key: OpenSSL 3.0.0-3.0.2 reported success and
// kept the finished state (openssl/openssl#17811).
class SealContext {
 public:
  SealContext() = default;
  ~SealContext() {
    EVP_MAC_CTX_free(ctx_);
    EVP_MAC_free(mac_);
  }
  SealContext(const SealContext&) = delete;
  SealContext& operator=(const SealContext&) = delete;

  // The first 8 bytes of HMAC-SHA256(key, the trailer's first kChecked bytes); empty on failure.
  std::string Seal(std::string_view key, const char* bytes) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t n = 0;
    if (!Ready() || EVP_MAC_init(ctx_, reinterpret_cast<const unsigned char*>(key.data()), key.size(), nullptr) != 1 ||
        EVP_MAC_update(ctx_, reinterpret_cast<const unsigned char*>(bytes), kChecked) != 1 ||
        EVP_MAC_final(ctx_, mac, &n, sizeof mac) != 1 || n < 8) {
      ERR_clear_error();  // not left for a TLS call of this thread to misread
      return std::string();
    }
    return std::string(reinterpret_cast<const char*>(mac), 8);
  }

 private:
  // The context with its digest set (a failure is tried again at the next seal).
  bool Ready() {
    if (ctx_ != nullptr) return true;
    if (mac_ == nullptr) mac_ = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (mac_ == nullptr) return false;
    EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac_);
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                                 OSSL_PARAM_construct_end()};
    if (ctx == nullptr || EVP_MAC_CTX_set_params(ctx, params) != 1) {
      EVP_MAC_CTX_free(ctx);
      return false;
    }
    ctx_ = ctx;
    return true;
  }

  EVP_MAC* mac_ = nullptr;
  EVP_MAC_CTX* ctx_ = nullptr;
};

std::string Seal(std::string_view key, const char* bytes) {
  thread_local SealContext context;
  return context.Seal(key, bytes);
}

// A segment open for reading, closed when it goes out of scope; fd < 0 and err on failure.
struct ReadOnlyFile {
  explicit ReadOnlyFile(const std::filesystem::path& path)
      : fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC)), err(fd < 0 ? errno : 0) {}
  ~ReadOnlyFile() {
    if (fd >= 0) ::close(fd);
  }
  ReadOnlyFile(const ReadOnlyFile&) = delete;
  ReadOnlyFile& operator=(const ReadOnlyFile&) = delete;
  const int fd;
  const int err;
};

}  // namespace

Result<std::string> SegmentTrailerKey(const std::filesystem::path& dir, bool create) {
  const std::filesystem::path path = dir / "trailer.key";
  std::string key(kKeyBytes, '\0');
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    const int err = PReadAll(fd, key.data(), key.size(), 0);
    struct stat st {};
    const bool sized = ::fstat(fd, &st) == 0 && static_cast<size_t>(st.st_size) == kKeyBytes;
    ::close(fd);
    if (err != 0 || !sized) return Status::Corruption(path.string() + " is not a 32-byte trailer key");
    return key;
  }
  if (errno != ENOENT) return Status::FromErrno(errno, "open " + path.string());
  if (!create) return Status::NotFound("no trailer key " + path.string());
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), static_cast<int>(key.size())) != 1) {
    return Status::IOError("no random bytes for the trailer key");
  }
  const std::filesystem::path temp = dir / "trailer.key.prep";
  ::unlink(temp.c_str());
  fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno(errno, "create " + temp.string());
  ssize_t n;
  do {
    n = ::pwrite(fd, key.data(), key.size(), 0);
  } while (n < 0 && errno == EINTR);
  const bool written = n == static_cast<ssize_t>(key.size()) && ::fsync(fd) == 0;
  const int err = written ? 0 : (errno != 0 ? errno : EIO);
  ::close(fd);
  if (!written) return Status::FromErrno(err, "write " + temp.string());
  // A key another process made meanwhile wins: segments may already be sealed with it.
  if (::link(temp.c_str(), path.c_str()) != 0 && errno != EEXIST)
    return Status::FromErrno(errno, "link " + path.string());
  ::unlink(temp.c_str());
  if (Status s = SyncPath(dir); !s.ok()) return s;
  return SegmentTrailerKey(dir, false);
}

std::string EncodeSegmentTrailer(const SegmentTrailer& trailer, std::string_view key) {
  std::string out(kSegmentTrailerBytes, '\0');
  std::memcpy(out.data(), kMagic, sizeof kMagic);
  PutU64(out.data() + 8, trailer.offset);
  PutU64(out.data() + 16, trailer.length);
  PutU64(out.data() + 24, trailer.hash);
  const std::string seal = Seal(key, out.data());
  if (seal.size() != 8) return std::string();
  std::memcpy(out.data() + kChecked, seal.data(), seal.size());
  return out;
}

std::optional<SegmentTrailer> DecodeSegmentTrailer(std::string_view bytes, std::string_view key) {
  if (bytes.size() != kSegmentTrailerBytes || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    return std::nullopt;
  const std::string seal = Seal(key, bytes.data());
  if (seal.size() != 8 || std::memcmp(bytes.data() + kChecked, seal.data(), 8) != 0) return std::nullopt;
  return SegmentTrailer{GetU64(bytes.data() + 8), GetU64(bytes.data() + 16), GetU64(bytes.data() + 24)};
}

uint64_t SegmentSlotEnd(uint64_t offset, uint64_t length, uint64_t align) {
  return (offset + length + kSegmentTrailerBytes + align - 1) / align * align;
}

ObjectHasher::ObjectHasher() : state_(XXH3_createState()) {
  if (state_ == nullptr) throw std::bad_alloc();
  Reset();
}
ObjectHasher::~ObjectHasher() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }
void ObjectHasher::Reset() { XXH3_64bits_reset(static_cast<XXH3_state_t*>(state_)); }
void ObjectHasher::Update(const void* data, size_t n) {
  XXH3_64bits_update(static_cast<XXH3_state_t*>(state_), data, n);
}
uint64_t ObjectHasher::Digest() const { return XXH3_64bits_digest(static_cast<XXH3_state_t*>(state_)); }

Status VoidSegmentTrailer(const std::filesystem::path& segment, uint64_t offset, uint64_t length, uint64_t align) {
  const int fd = ::open(segment.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open " + segment.string());
  static const char kZeros[kSegmentTrailerBytes] = {};
  const uint64_t at = SegmentSlotEnd(offset, length, align) - kSegmentTrailerBytes;
  ssize_t n;
  do {
    n = ::pwrite(fd, kZeros, sizeof kZeros, static_cast<off_t>(at));
  } while (n < 0 && errno == EINTR);
  int err = n < 0 ? errno : n == static_cast<ssize_t>(sizeof kZeros) ? 0 : EIO;
  if (err == 0 && ::fdatasync(fd) != 0) err = errno;
  ::close(fd);
  return err == 0 ? Status::Ok() : Status::FromErrno(err, "void a trailer in " + segment.string());
}

Result<TrailerCheck> CheckSegmentObject(const std::filesystem::path& segment, uint64_t offset, uint64_t length,
                                        uint64_t align, std::string_view key) {
  ReadOnlyFile file(segment);
  if (file.fd < 0) return Status::FromErrno(file.err, "open " + segment.string());
  const int fd = file.fd;
  std::string trailer(kSegmentTrailerBytes, '\0');
  if (PReadAll(fd, trailer.data(), trailer.size(), SegmentSlotEnd(offset, length, align) - trailer.size()) != 0) {
    return TrailerCheck::kNoTrailer;  // the segment ends before where the trailer would be
  }
  std::optional<SegmentTrailer> t = DecodeSegmentTrailer(trailer, key);
  if (!t || t->offset != offset || t->length != length) return TrailerCheck::kNoTrailer;
  std::string buffer(kReadChunk, '\0');
  uint64_t hash = 0;
  if (HashRange(fd, offset, length, buffer, &hash) != 0 || hash != t->hash) return TrailerCheck::kDamaged;
  return TrailerCheck::kWhole;
}

Result<SegmentScan> FindSegmentObjects(const std::filesystem::path& segment, uint64_t from, uint64_t align,
                                       std::string_view key) {
  if (align < kSegmentTrailerBytes || from % align != 0) return Status::InvalidArgument("bad segment scan alignment");
  ReadOnlyFile file(segment);
  if (file.fd < 0) return Status::FromErrno(file.err, "open " + segment.string());
  const int fd = file.fd;
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Status::FromErrno(errno, "stat " + segment.string());
  const uint64_t end = static_cast<uint64_t>(st.st_size) / align * align;
  SegmentScan found;
  std::string chunk(std::max<size_t>(kReadChunk / align * align, align), '\0');
  std::string scratch(kReadChunk, '\0');
  uint64_t next_object = from;  // where the next object may begin
  uint64_t data_end = from;     // the end of the last block that is not all zeros
  for (uint64_t at = from; at < end;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), end - at));
    if (int err = PReadAll(fd, chunk.data(), n, at); err != 0) {
      return Status::FromErrno(err, "read " + segment.string());
    }
    for (size_t block_end = align; block_end <= n; block_end += align) {
      const uint64_t slot_end = at + block_end;
      const char* block = chunk.data() + block_end - align;
      if (block[0] != 0 || std::memcmp(block, block + 1, align - 1) != 0) data_end = slot_end;
      std::optional<SegmentTrailer> t = DecodeSegmentTrailer(
          std::string_view(chunk.data() + block_end - kSegmentTrailerBytes, kSegmentTrailerBytes), key);
      if (!t || t->offset >= slot_end || t->offset % align != 0 || t->length > slot_end - t->offset ||
          SegmentSlotEnd(t->offset, t->length, align) != slot_end) {
        continue;
      }
      if (t->offset < next_object) {
        // The last named object's trailer, past the block its bytes end in: its slot ends here.
        if (slot_end > next_object && t->offset < from) next_object = slot_end;
        continue;
      }
      uint64_t hash = 0;
      // Torn by a power cut before its sync (never acknowledged), damaged, or unreadable.
      if (HashRange(fd, t->offset, t->length, scratch, &hash) != 0 || hash != t->hash) {
        ++found.damaged;
        continue;
      }
      found.objects.push_back(*t);
      next_object = slot_end;
    }
    at += n;
  }
  // Best effort: a tail left in place is only read again at the next start. Bytes past the last
  // object that are not zeros (one cut short by the crash, a refused one) stay: nothing names
  // them, but cutting at a block boundary keeps every scan's alignment.
  const uint64_t keep = std::max(next_object, data_end);
  if (end == static_cast<uint64_t>(st.st_size) && keep < end) {
    (void)::truncate(segment.c_str(), static_cast<off_t>(keep));
  }
  return found;
}

}  // namespace teleread
