#pragma once
// The study index: the only code that speaks SQL. Changes are committed in batches, one
// transaction each (group commit), so that many associations share each fsync; reads use separate
// connections and never wait for a commit (WAL).
//
// Who commits: a caller that waits for its write (Write, AddInstance) and has no company (the
// last few batches held one write each, nothing queued behind them) runs its batch itself: a lone
// sender pays no hand-off to another thread. Otherwise, and for writes nobody waits for at once
// (WriteAsync), the writer thread leads the batches. (Callers leading each other's batches under
// load, each waking the next, measured slower at 4 associations than the writer thread.)
//
// Durability: a write is durable when it returns (FULL: the WAL is synced at its COMMIT), except
// one that says its rows can be rebuilt (Durability::kRebuildable: a segment object, whose sealed
// trailer start-up recovery re-indexes from): a batch of only such writes commits without the
// WAL sync (NORMAL). Any later synced commit makes it durable (the WAL is written in order), and
// no unsynced commit stays so for longer than kMaxUnsyncedMs: past that the next batch is
// synced, or with no batch the writer thread syncs the WAL file itself. So what a power cut can
// take from the index is such commits alone, of about the last second.
//
// Thread-safety: every public method may be called from any thread. A WriteFn and the tasks
// listener run on whichever thread leads: the caller's own or another's.
// Lifetime: the destructor may start while Write/AddInstance calls wait for their answers (it
// finishes their writes and returns once they have left); any other call must have returned.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/dicom.h"
#include "server/store/reader_pool.h"
#include "server/store/shown_rows.h"

struct sqlite3;

namespace teleread {

class Database;

struct NewInstance {
  InstanceSummary summary;
  std::string member_id;
  std::string calling_ae_title;
  std::string relative_path;
  uint64_t size_bytes = 0;
  int64_t received_ms = 0;
  // The object itself when it is kept inside the index (relative_path "index:..."), inserted in
  // the same transaction as its row; empty for a file. Must outlive the write.
  std::string_view data = {};
};

struct StoredInstance {
  std::string member_id;
  std::string relative_path;
  std::string study_instance_uid;
  std::string series_instance_uid;
};

struct IndexCounts {
  int64_t patients = 0;
  int64_t studies = 0;
  int64_t series = 0;
  int64_t instances = 0;
  int64_t bytes = 0;
  int64_t tasks_waiting = 0;
  int64_t tasks_total = 0;
  int64_t in_index = 0;     // instances whose bytes the index holds
  int64_t in_segments = 0;  // instances that are ranges of segment files; the rest are files
};

struct StudyOverview {
  std::string member_id;
  std::string study_instance_uid;
  std::string patient_id;
  std::string study_date;
  std::string modalities;
  std::string study_description;
  std::string priority;
  int64_t num_series = 0;
  int64_t num_instances = 0;
  std::string task_state;  // empty: still receiving (quiet period not over)
};

// How a complete study becomes a task: its priority (the sender's, else the member's default)
// and its due time (complete time + the SLA for that priority).
struct TaskPolicy {
  int64_t sla_stat_ms = 3'600'000;
  int64_t sla_high_ms = 4 * 3'600'000;
  int64_t sla_routine_ms = 24 * 3'600'000;
  std::vector<std::pair<std::string, std::string>> member_default_priority;  // member id -> priority
};

class Index {
 public:
  static Result<std::unique_ptr<Index>> Open(const std::filesystem::path& db_path);
  // For reading beside a running server (status, the segment check): NotFound ("no index at
  // PATH") when there is none, and nothing written: no migration (InvalidArgument when the schema
  // is not this TeleRead's) and no statistics, which the server's own readers would not follow.
  static Result<std::unique_ptr<Index>> OpenExisting(const std::filesystem::path& db_path);
  ~Index();  // finishes queued writes, stops the writer, waits for Write callers to leave
  Index(const Index&) = delete;
  Index& operator=(const Index&) = delete;

  using WriteFn = std::function<Status(Database&)>;
  // kRebuildable: what the write records is durable elsewhere already and start-up recovery
  // records it again if the commit is lost (see Durability above). Never for a write whose rows
  // hold anything else (a report, a companion, an object kept in the index).
  enum class Durability { kSynced, kRebuildable };
  // The longest a rebuildable commit stays unsynced: bounds what start-up recovery re-indexes
  // after a power cut.
  static constexpr int64_t kMaxUnsyncedMs = 1000;
  // Tests: another bound (0: every commit synced).
  void set_max_unsynced_ms_for_test(int64_t ms) { max_unsynced_us_.store(ms * 1000, std::memory_order_relaxed); }
  // Times the writer thread synced the WAL file after unsynced commits, no batch having done so.
  uint64_t idle_wal_syncs() const { return idle_wal_syncs_.load(std::memory_order_relaxed); }
  // Moves on with every sync that made commits durable: a commit made before this read is durable
  // once it reads higher.
  uint64_t sync_epoch() const { return sync_epoch_.load(std::memory_order_acquire); }
  // Makes every commit made so far durable (syncs the WAL file if any is not).
  Status SyncNow();

  // Records one stored object; returns once the change is committed and durable (or, with
  // kRebuildable, committed). `also`, when given, runs in the same transaction: both happen or
  // neither does.
  // kPermissionDenied: its study is indexed for another member (checked first, so a foreign
  // member's re-send of a stored object gets this too). kConflict: the SOP Instance UID is
  // indexed already, or its series belongs to another study.
  class Coming;  // below
  // `coming`: the write its receiver announced (ExpectWrite), arrived as this one queues.
  Status AddInstance(const NewInstance& instance, const WriteFn& also = nullptr,
                     Durability durability = Durability::kSynced, Coming* coming = nullptr);
  // Points an indexed instance at another copy of its object (`to_path`, `size_bytes`), if it is
  // still at `from_path`; `also` runs in the same transaction. NotFound when it is not there.
  Status RelocateInstance(const std::string& sop_instance_uid, const std::string& from_path, const std::string& to_path,
                          uint64_t size_bytes, const WriteFn& also = nullptr);
  // Inside a WriteFn (while its batch runs): records one more object in that write's transaction,
  // as AddInstance would (the report desk's PDF copy lands with its SR). Same failures.
  Status AddInstanceInWrite(Database& db, const NewInstance& instance) { return InsertInstance(db, instance); }

  // Turns every study whose last instance arrived at or before `now_ms - quiet_ms` and that
  // has no reading task into a waiting task. Returns how many were created.
  Result<int> PromoteQuietStudies(int64_t now_ms, int64_t quiet_ms, const TaskPolicy& policy = {});

  std::optional<StoredInstance> FindInstance(const std::string& sop_instance_uid);
  bool HasPath(const std::string& relative_path);
  // The path of the row that names the object furthest into `segment` ("segments/<name>"), or ""
  // when no row names one: where the recovery's scan of that segment starts.
  Result<std::string> LastPathInSegment(const std::string& segment);
  // Every instance path that names a range of a segment, in path order.
  Status ForEachSegmentPath(const std::function<void(const std::string&)>& fn);
  // The member that sent the study, if it is known. Asked for every object received into a file
  // or segment: an owner once found is kept (no row of a study is ever removed, nor its owner
  // changed), so that a study's later objects cost no read transaction.
  std::optional<std::string> StudyOwner(const std::string& study_instance_uid);
  Result<IndexCounts> Counts();

  // Calls fn with the bytes of an object kept inside the index (valid during the call only), on
  // a pooled reader. NotFound when no such object is there.
  Status ReadObjectData(const std::string& relative_path, const std::function<Status(std::string_view)>& fn) const;
  // Rows at an "index:" path without their object_data (none should exist: both are written in
  // one transaction); for the recovery's check.
  Result<int64_t> CountInIndexRowsWithoutData() const;

  // Runs `fn` on the writer connection inside the next group commit; returns once durable.
  // For components that own their own tables (worklist, audit, reports). `fn` runs on the thread
  // that leads the batch (this caller's, another caller's or the writer thread) while others wait
  // on it: it must not call Write or AddInstance, nor take a lock that a caller of either may hold.
  // kRebuildable only for rows start-up recovery writes again from durable data (see above).
  Status Write(WriteFn fn, Durability durability = Durability::kSynced, Coming* coming = nullptr) {
    return RunWrite(std::move(fn), durability, coming);
  }
  // As Write, without waiting: the future is ready once the write is durable (or failed). `fn`
  // must own what it uses.
  std::future<Status> WriteAsync(WriteFn fn) { return SubmitWrite(std::move(fn)); }
  // A read-only connection from the pool (WAL: never blocks on, nor blocks, the writer); it sees
  // every commit made before the read starts, and goes back to the pool when dropped.
  Result<PooledReader> OpenReader() const;
  // For another pool of readers (the query engine's), so that it follows the statistics too.
  ReaderPool::StatisticsEpoch statistics_epoch() const { return statistics_; }
  // Bumped by every commit that changed a row of reading_tasks, studies, series or patients (the
  // tables a worklist row is read from) that a task's row shows (shown_rows.h: not the rows of a
  // study still being received), after the commit and before its writers are answered.
  // A worklist page read at version v is current while the version is v.
  uint64_t tasks_version() const { return tasks_version_.load(std::memory_order_acquire); }
  // Which critical results are open (CriticalStore::Version): moved by their writers after the
  // commit of each write that opens or acknowledges one, not by escalations nor webhook attempts,
  // which change no reminder; a list of open results read at version v is current while it is v.
  uint64_t critical_version() const { return critical_version_.load(std::memory_order_acquire); }
  void CriticalResultsChanged() { critical_version_.fetch_add(1, std::memory_order_release); }
  // `fn` is called by the batch's leader after each COMMIT that moves tasks_version, once the
  // version has moved (a reader woken by it finds the new rows), before the batch's writers are
  // answered: it must be quick (e.g. wake what reads pages ahead). One listener: a second is
  // refused (Conflict) until the first is unset with null.
  Status OnTasksChange(std::function<void()> fn);
  // Writes queued for the next batch (not counting the batch running); for tests that order what
  // goes into one batch.
  size_t QueuedWrites();
  // Batches committed (or failed) so far.
  uint64_t batches() const { return batches_.load(std::memory_order_relaxed); }

  // A write on its way: an object being received whose row is to be written. While any is, the
  // writer thread holds a batch that will sync the WAL up to gather_us (kGatherUs) for their
  // writes to join it, so that one sync serves them all (a lone association has none on its
  // way: its write never waits). It arrives with its write (AddInstance), or by Arrived when it
  // will not come (the destructor calls it).
  class Coming {
   public:
    Coming() = default;
    Coming(Coming&& other) noexcept : index_(std::exchange(other.index_, nullptr)) {}
    Coming& operator=(Coming&& other) noexcept {
      if (this != &other) {
        Arrived();
        index_ = std::exchange(other.index_, nullptr);
      }
      return *this;
    }
    Coming(const Coming&) = delete;
    Coming& operator=(const Coming&) = delete;
    ~Coming() { Arrived(); }
    void Arrived();

   private:
    friend class Index;
    explicit Coming(Index* index) : index_(index) {}
    Index* index_ = nullptr;
  };
  Coming ExpectWrite();
  static constexpr int64_t kGatherUs = 300;
  void set_gather_us_for_test(int64_t us) { gather_us_.store(us, std::memory_order_relaxed); }
  Result<std::vector<StudyOverview>> ListStudies();

 private:
  // A caller waiting in RunWrite for its write. Guarded by queue_mu_; shared with the leader so
  // that it may be woken after queue_mu_ is released.
  struct Waiter {
    std::condition_variable cv;
    bool taken = false;  // in a batch that a leader runs
    bool done = false;   // answered: result is final
    Status result;
  };
  struct PendingWrite {
    WriteFn fn;
    std::shared_ptr<Waiter> waiter;            // a caller waiting in RunWrite, or
    std::optional<std::promise<Status>> done;  // WriteAsync's
    Durability durability = Durability::kSynced;
  };

  Index(std::filesystem::path db_path, std::unique_ptr<Database> writer, std::unique_ptr<Database> reader);
  std::filesystem::path db_path_;
  // Queues `fn` and returns once it is durable (or failed); leads its batch when alone.
  // `coming` arrives as `fn` queues (under the same lock: a gathering leader sees both at once).
  Status RunWrite(WriteFn fn, Durability durability = Durability::kSynced, Coming* coming = nullptr);
  std::future<Status> SubmitWrite(WriteFn fn);  // WriteAsync's
  // Called with queue_mu_ held through `lock`, no leader, a write queued: runs every queued write
  // as one batch and answers them. Returns with queue_mu_ released; a caller leading (`self`)
  // leaves the index at its last unlock, after which nothing of the index is touched (the
  // destructor may be waiting for it). An exception here would leave the batch unanswered and
  // the index without a leader: terminate instead.
  void LeadBatch(std::unique_lock<std::mutex>& lock, const Waiter* self) noexcept;
  void CallerLeft();   // under queue_mu_: a caller of RunWrite is about to return
  struct BatchTrace {  // bench-only (TELEREAD_API_TRACE)
    int64_t run_us = 0, commit_us = 0, checkpoint_us = -1;
    bool shown = false;
  };
  // The batch's transaction; the final answer of each write. Under writer_mu_.
  std::vector<Status> CommitBatch(std::deque<PendingWrite>& batch, BatchTrace* trace);
  void WriterLoop();
  // Under queue_mu_ (`lock`), on the writer thread: waits while writes are on their way to a
  // batch that will sync, at most gather_us_.
  void GatherBatch(std::unique_lock<std::mutex>& lock);
  // Under writer_mu_: fsyncs the WAL file when commits are unsynced (`force`: whatever their age).
  Status SyncUnsyncedCommits(bool force);
  Status InsertInstance(Database& db, const NewInstance& instance);
  bool AnalyzeDue() const;
  void MaybeAnalyze(Database& db);

  struct WriterStatements;
  // Held by the leader while its batch runs (and by the writer thread while it refreshes the
  // statistics): the writer connection and what goes with it are used by one thread at a time.
  std::mutex writer_mu_;
  std::unique_ptr<Database> writer_db_;           // guarded by writer_mu_
  std::unique_ptr<WriterStatements> writer_sql_;  // guarded by writer_mu_; prepared once
  int64_t inserted_since_analyze_ = 0;            // guarded by writer_mu_
  bool wal_unsynced_ = false;                     // guarded by writer_mu_: synchronous=NORMAL is set
  // Steady-clock µs of the first commit not synced since the last sync; 0: none. Written under
  // writer_mu_, read by the writer thread to time its sync.
  std::atomic<int64_t> unsynced_since_us_{0};
  std::atomic<int64_t> max_unsynced_us_{kMaxUnsyncedMs * 1000};
  std::atomic<uint64_t> idle_wal_syncs_{0};
  std::atomic<uint64_t> sync_epoch_{0};
  int64_t instances_at_analyze_ = 0;  // guarded by writer_mu_
  ShownRowChanges shown_changes_;     // guarded by writer_mu_ (its update hook)
  std::atomic<uint64_t> tasks_version_{0};
  std::atomic<uint64_t> critical_version_{0};
  std::mutex tasks_listener_mu_;
  std::function<void()> tasks_listener_;  // guarded by tasks_listener_mu_

  std::mutex queue_mu_;
  // Wakes the writer thread; shared so that a leader may notify it after releasing queue_mu_,
  // when the index may be going (its caller has left).
  std::shared_ptr<std::condition_variable> writer_cv_ = std::make_shared<std::condition_variable>();
  std::deque<PendingWrite> queue_;  // guarded by queue_mu_
  bool leading_ = false;            // guarded by queue_mu_: a batch is running
  bool writer_timing_ = false;      // guarded by queue_mu_: the writer thread waits to sync unsynced commits
  int solo_batches_ = 0;            // guarded by queue_mu_: batches in a row of one write, none queued behind
  static constexpr int kSoloBatchesToLead = 4;
  // Coming tokens not arrived yet: taken down by Arrived, or by RunWrite under queue_mu_ as the
  // token's write queues.
  std::atomic<int> writes_coming_{0};
  std::atomic<bool> gathering_{false};  // the writer thread waits in GatherBatch
  std::atomic<int64_t> gather_us_{kGatherUs};
  std::atomic<uint64_t> batches_{0};
  bool analyze_due_ = false;              // guarded by queue_mu_: for the writer thread, between batches
  bool stopping_ = false;                 // guarded by queue_mu_
  int callers_ = 0;                       // guarded by queue_mu_: inside RunWrite, their write queued
  std::condition_variable callers_left_;  // the destructor waits on it for callers_ == 0
  std::thread writer_thread_;

  // Bumped when the writer refreshes the statistics (MaybeAnalyze): pooled readers opened before are
  // closed, not used again with the old ones (reader_pool.h).
  const std::shared_ptr<std::atomic<uint64_t>> statistics_ = std::make_shared<std::atomic<uint64_t>>(0);
  std::shared_ptr<ReaderPool> readers_;  // for OpenReader

  std::mutex read_mu_;
  std::unique_ptr<Database> reader_db_;  // guarded by read_mu_
  static constexpr size_t kOwnersKept = 4096;
  std::mutex owners_mu_;
  std::unordered_map<std::string, std::string> owners_;  // StudyOwner's, guarded by owners_mu_
};

// Index::ReadObjectData on a connection of the caller's (export's read-only one).
Status ReadObjectData(sqlite3* db, const std::string& relative_path, const std::function<Status(std::string_view)>& fn);

}  // namespace teleread
