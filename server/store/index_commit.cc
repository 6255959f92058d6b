// The index's group commit: callers' writes queued, batched and committed by a leader (a lone
// caller or the writer thread), each batch one transaction, and how durable its COMMIT is
// (index.h: Durability).
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "common/log.h"
#include "server/store/index.h"
#include "server/store/index_detail.h"
#include "server/store/object_store.h"
#include "server/store/sqlite.h"

namespace teleread {

using index_detail::BatchTraceOn;
using index_detail::checkpoint_us;
using index_detail::NowUs;

Index::Coming Index::ExpectWrite() {
  writes_coming_.fetch_add(1, std::memory_order_relaxed);
  return Coming(this);
}

void Index::Coming::Arrived() {
  Index* index = std::exchange(index_, nullptr);
  if (index == nullptr) return;
  index->writes_coming_.fetch_sub(1);
  // A gathering writer thread counts again (its wait ends when none is on its way); woken under
  // its lock, so that the wake cannot fall between its count and its wait. An idle one is left
  // asleep.
  if (index->gathering_.load()) {
    { std::lock_guard<std::mutex> lock(index->queue_mu_); }
    index->writer_cv_->notify_one();
  }
}

void Index::GatherBatch(std::unique_lock<std::mutex>& lock) {
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::microseconds(gather_us_.load(std::memory_order_relaxed));
  gathering_.store(true);
  for (;;) {
    if (stopping_ || leading_ || queue_.empty() || writes_coming_.load() <= 0) break;
    // A batch of rebuildable writes does not sync: nothing to share.
    const bool syncs = std::any_of(queue_.begin(), queue_.end(),
                                   [](const PendingWrite& w) { return w.durability == Durability::kSynced; });
    if (!syncs || writer_cv_->wait_until(lock, until) == std::cv_status::timeout) break;
  }
  gathering_.store(false);
}

void Index::CallerLeft() {
  if (--callers_ == 0 && stopping_) callers_left_.notify_all();
}

Status Index::RunWrite(WriteFn fn, Durability durability, Coming* coming) {
  auto me = std::make_shared<Waiter>();
  std::unique_lock<std::mutex> lock(queue_mu_);
  if (stopping_) return Status::IOError("index is shutting down");
  queue_.push_back(PendingWrite{std::move(fn), me, std::nullopt, durability});
  if (coming != nullptr && std::exchange(coming->index_, nullptr) != nullptr) writes_coming_.fetch_sub(1);
  ++callers_;  // until CallerLeft: the destructor waits for it
  // Alone, a caller commits its own write: no hand-off. With neighbours (the last batches had
  // company) the writer thread leads: measured, callers leading each other's batches cost more
  // than the hand-off saved.
  const bool lead = solo_batches_ >= kSoloBatchesToLead;
  if (!lead && !leading_) {
    lock.unlock();
    writer_cv_->notify_one();
    lock.lock();
  }
  while (!me->done) {
    // Not while the statistics are due: the writer thread refreshes them, then leads this write.
    if (lead && !me->taken && !leading_ && !analyze_due_) {
      LeadBatch(lock, me.get());  // answers this write too, and calls CallerLeft
      return me->result;          // final once done, and only this thread reads it now
    }
    me->cv.wait(lock);
  }
  CallerLeft();
  return me->result;
}

std::future<Status> Index::SubmitWrite(WriteFn fn) {
  std::future<Status> result;
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (stopping_) {
      std::promise<Status> refused;
      refused.set_value(Status::IOError("index is shutting down"));
      return refused.get_future();
    }
    queue_.push_back(PendingWrite{std::move(fn), nullptr, std::promise<Status>(), Durability::kSynced});
    result = queue_.back().done->get_future();
    wake = !leading_;  // else the running batch's leader wakes the writer thread when it ends
  }
  if (wake) writer_cv_->notify_one();
  return result;
}

Status Index::OnTasksChange(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(tasks_listener_mu_);
  if (fn && tasks_listener_) return Status::Conflict("the index has a tasks listener already");
  tasks_listener_ = std::move(fn);
  return Status::Ok();
}

size_t Index::QueuedWrites() {
  std::lock_guard<std::mutex> lock(queue_mu_);
  return queue_.size();
}

void Index::LeadBatch(std::unique_lock<std::mutex>& lock, const Waiter* self) noexcept {
  leading_ = true;
  std::deque<PendingWrite> batch;
  batch.swap(queue_);
  for (PendingWrite& w : batch) {
    if (w.waiter) w.waiter->taken = true;
  }
  lock.unlock();
  bool analyze = false;
  BatchTrace trace;
  std::vector<Status> results;
  {
    std::lock_guard<std::mutex> writer(writer_mu_);
    results = CommitBatch(batch, &trace);
    analyze = AnalyzeDue();
  }
  lock.lock();
  for (size_t i = 0; i < batch.size(); ++i) {
    if (Waiter* w = batch[i].waiter.get()) {
      w->result = results[i];
      w->done = true;
    }
  }
  leading_ = false;
  batches_.fetch_add(1, std::memory_order_relaxed);
  analyze_due_ = analyze_due_ || analyze;
  if (self != nullptr) CallerLeft();
  solo_batches_ = batch.size() == 1 && queue_.empty() ? std::min(solo_batches_ + 1, kSoloBatchesToLead) : 0;
  // What queued meanwhile is led by the writer thread (which leads on when it is the leader, and
  // refreshes the statistics first when due).
  std::shared_ptr<std::condition_variable> writer;
  // Or to time the sync of a commit left unsynced, unless it is timing one already.
  const bool time_sync = !writer_timing_ && unsynced_since_us_.load(std::memory_order_relaxed) != 0;
  if (!queue_.empty() || analyze_due_ || stopping_ || time_sync) writer = writer_cv_;
  lock.unlock();
  // Woken after the unlock, so that it does not wake only to wait for queue_mu_.
  if (writer) writer->notify_one();
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!batch[i].waiter) {
      batch[i].done->set_value(results[i]);
    } else if (batch[i].waiter.get() != self) {
      batch[i].waiter->cv.notify_one();
    }
  }
  // Logged after the answers: a flushed line under the logger's lock would delay them.
  if (BatchTraceOn()) {
    spdlog::warn("index batch n={} run={} commit={} checkpoint={} shown={}", batch.size(), trace.run_us,
                 trace.commit_us, trace.checkpoint_us, trace.shown ? 1 : 0);
  }
}

Status Index::SyncUnsyncedCommits(bool force) {
  const int64_t since = unsynced_since_us_.load(std::memory_order_relaxed);
  if (since == 0 || (!force && NowUs() - since < max_unsynced_us_.load(std::memory_order_relaxed))) {
    return Status::Ok();
  }
  // What SQLite committed is in the file (the WAL VFS writes a commit's frames before it
  // returns): an fsync of the file makes it durable.
  const std::filesystem::path wal = db_path_.string() + "-wal";
  if (Status s = SyncPath(wal); !s.ok() && std::filesystem::exists(wal)) {
    // At error level: after a failed writeback a later fsync may succeed with pages lost; the
    // operator checks the disk.
    spdlog::error("index: {}: commits since {} µs ago may not be durable", s.ToString(), NowUs() - since);
    return s;
  }
  unsynced_since_us_.store(0, std::memory_order_relaxed);
  sync_epoch_.fetch_add(1, std::memory_order_acq_rel);
  return Status::Ok();
}

Status Index::SyncNow() {
  std::lock_guard<std::mutex> writer(writer_mu_);
  return SyncUnsyncedCommits(true);
}

void Index::WriterLoop() {
  std::unique_lock<std::mutex> lock(queue_mu_);
  for (;;) {
    if (leading_ || (queue_.empty() && !analyze_due_ && !stopping_)) {
      // Idle. Commits left unsynced are synced once their bound passes, if no batch did so.
      const int64_t since = unsynced_since_us_.load(std::memory_order_relaxed);
      if (leading_ || since == 0) {
        writer_cv_->wait(lock);
        continue;
      }
      const int64_t left = since + max_unsynced_us_.load(std::memory_order_relaxed) - NowUs();
      if (left > 0) {
        writer_timing_ = true;
        writer_cv_->wait_for(lock, std::chrono::microseconds(left));
        writer_timing_ = false;
        continue;
      }
      leading_ = true;
      lock.unlock();
      bool synced = false;
      {
        std::lock_guard<std::mutex> writer(writer_mu_);
        const bool due = unsynced_since_us_.load(std::memory_order_relaxed) != 0;
        synced = SyncUnsyncedCommits(false).ok() && due;
      }
      if (synced) idle_wal_syncs_.fetch_add(1, std::memory_order_relaxed);
      lock.lock();
      leading_ = false;
      // A failed sync is tried again after a pause, not in a busy loop; writes queued meanwhile
      // end the pause.
      if (unsynced_since_us_.load(std::memory_order_relaxed) != 0) {
        writer_cv_->wait_for(lock, std::chrono::milliseconds(100), [this] { return !queue_.empty() || stopping_; });
      }
      continue;
    }
    if (analyze_due_) {
      // Between two batches, off the callers' threads: no caller's answer waits for it.
      analyze_due_ = false;
      leading_ = true;
      lock.unlock();
      {
        std::lock_guard<std::mutex> writer(writer_mu_);
        MaybeAnalyze(*writer_db_);
      }
      lock.lock();
      leading_ = false;  // what queued meanwhile: led next, by this thread or a caller
    } else if (!queue_.empty()) {
      GatherBatch(lock);
      // Taken meanwhile by a caller leading its own, or statistics fell due: looked at again.
      if (leading_ || queue_.empty() || analyze_due_) continue;
      LeadBatch(lock, nullptr);
      lock.lock();
    } else {
      return;  // stopping, nothing queued, no batch running
    }
  }
}

std::vector<Status> Index::CommitBatch(std::deque<PendingWrite>& batch, BatchTrace* trace) {
  Database& db = *writer_db_;
  // One transaction for the batch; each request in its own savepoint so that one
  // refused request does not undo its neighbours.
  const int64_t batch_start = BatchTraceOn() ? NowUs() : 0;
  // The WAL sync is skipped only for a batch whose every write start-up recovery can redo, and
  // not past the bound since the first commit left unsynced.
  const int64_t since = unsynced_since_us_.load(std::memory_order_relaxed);
  bool unsynced = since == 0 || NowUs() - since < max_unsynced_us_.load(std::memory_order_relaxed);
  for (const PendingWrite& w : batch) unsynced = unsynced && w.durability == Durability::kRebuildable;
  if (unsynced != wal_unsynced_) {
    if (Status s = db.ExecKept(unsynced ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL"); s.ok()) {
      wal_unsynced_ = unsynced;
    } else if (!unsynced) {
      // Still NORMAL: a commit now could return before it is durable.
      spdlog::error("index: cannot restore synchronous commits: {}", s.ToString());
      return std::vector<Status>(batch.size(), s);
    } else {
      spdlog::warn("index: commit synced, as NORMAL could not be set: {}", s.ToString());
    }
  }
  // A transaction that changes nothing writes no WAL frame: SQLite then syncs nothing.
  const int64_t changes_before = sqlite3_total_changes64(db.handle());
  Transaction tx(db);
  std::vector<Status> results;
  results.reserve(batch.size());
  Status lost;                    // set when SQLite rolled the whole transaction back under a request
  size_t lost_at = batch.size();  // that request: told its own failure, the others `lost`
  for (PendingWrite& w : batch) {
    if (!tx.status().ok() || !lost.ok()) {
      results.push_back(!lost.ok() ? lost : tx.status());
      continue;
    }
    Status s = db.ExecKept("SAVEPOINT request");
    if (s.ok()) {
      try {
        s = w.fn(db);
      } catch (const std::exception& e) {  // e.g. no memory: this request fails, the batch carries on
        s = Status::IOError(std::string("index write: ") + e.what());
      }
    }
    Status end = s.ok() ? db.ExecKept("RELEASE request") : db.ExecKept("ROLLBACK TO request");
    if (!s.ok() && end.ok()) end = db.ExecKept("RELEASE request");
    // Not undone (or not released): what the transaction holds is unknown, so none of it may
    // commit.
    if (!end.ok()) {
      if (s.ok()) s = end;
      if (!sqlite3_get_autocommit(db.handle())) (void)db.ExecKept("ROLLBACK");
    }
    results.push_back(s);
    // A full disk or I/O error while spilling pages can make SQLite roll back the whole
    // transaction: the batch so far is gone, and the next SAVEPOINT would open (and its
    // RELEASE commit) a transaction of its own, whose senders the failed COMMIT then refuses.
    if (sqlite3_get_autocommit(db.handle())) {
      lost = Status::IOError("index write: the transaction was rolled back");
      lost_at = results.size() - 1;
      if (s.ok()) results.back() = lost;
    }
  }
  // Which worklist rows the batch changed is read inside its transaction (what it reads there is
  // what commits): two read transactions fewer per commit. The version moves only after the
  // COMMIT, so that a reader at the new version finds the new rows; moved for a COMMIT that then
  // fails, it only ends kept pages early.
  const bool shown = shown_changes_.Take(db);
  const int64_t commit_start = BatchTraceOn() ? NowUs() : 0;
  checkpoint_us = -1;  // only a checkpoint this COMMIT runs
  Status commit = !lost.ok() ? lost : tx.status().ok() ? tx.Commit() : tx.status();
  const int64_t commit_us = BatchTraceOn() ? NowUs() - commit_start : 0;
  if (commit.ok() && sqlite3_total_changes64(db.handle()) != changes_before) {
    if (!wal_unsynced_) {
      unsynced_since_us_.store(0, std::memory_order_relaxed);
      sync_epoch_.fetch_add(1, std::memory_order_acq_rel);
    } else if (unsynced_since_us_.load(std::memory_order_relaxed) == 0) {
      unsynced_since_us_.store(NowUs(), std::memory_order_relaxed);
    }
  }
  if (shown) {
    tasks_version_.fetch_add(1, std::memory_order_release);
    std::lock_guard<std::mutex> lock(tasks_listener_mu_);
    if (tasks_listener_) tasks_listener_();
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!commit.ok() && i != lost_at) results[i] = commit;
  }
  if (BatchTraceOn()) *trace = BatchTrace{commit_start - batch_start, commit_us, checkpoint_us, shown};
  return results;
}

}  // namespace teleread
