// Objects stored with another in one index transaction (StoreRequest::companions): the report
// desk's PDF copy lands with its report row (and its SR, unless indexed before), both or
// neither; a small one inside the index. Kept
// apart from ingest.cc, whose durable write path changes on its own schedule: this file only
// places, indexes and removes.
#include "common/log.h"
#include "server/reading/ingest.h"

namespace teleread {

std::list<TempFileGuard> Ingest::GuardCompanions(const StoreRequest& req) {
  std::list<TempFileGuard> guards;
  for (const CompanionObject& c : req.companions) guards.emplace_back(c.temp_file);
  return guards;
}

Result<Ingest::Companions> Ingest::PlaceCompanions(const StoreRequest& req) {
  Companions placed;
  for (const CompanionObject& c : req.companions) {
    // A small one (an SR's PDF copy, usually) goes in the index with its row, like any object.
    std::string bytes;
    const bool in_index = LoadIfSmall(c.temp_file, &bytes);
    std::error_code ec;
    NewInstance instance{c.summary,
                         req.member_id,
                         req.calling_ae_title,
                         in_index ? ObjectStore::InIndexPathFor(c.summary.sop_instance_uid)
                                  : ObjectStore::RelativePathFor(c.summary.sop_instance_uid),
                         in_index ? bytes.size() : std::filesystem::file_size(c.temp_file, ec),
                         clock_()};
    if (in_index) {
      instance.data = placed.data.emplace_back(std::move(bytes));
      placed.instances.push_back(std::move(instance));
      continue;
    }
    Result<ObjectStore::Placed> p = store_.Place(c.temp_file, instance.relative_path);
    Status failed = !p.ok() ? p.status()
                    : p.value() == ObjectStore::Placed::kExisting
                        ? Status::Conflict("object " + c.summary.sop_instance_uid + " is stored already")
                        : Status::Ok();
    if (!failed.ok()) {
      RemoveCompanions(placed.instances);
      return failed;
    }
    placed.instances.push_back(std::move(instance));
  }
  return placed;  // moved (Companions cannot be copied): the data views stay valid
}

Index::WriteFn Ingest::WithCompanions(const std::vector<NewInstance>& placed, const StoreRequest& req, bool* indexed) {
  *indexed = false;
  if (placed.empty()) return req.also;
  // Runs while the write's caller waits for it, so the references outlive it. `also` first: it
  // decides (the desk: only a report row it inserts) whether the companions are wanted.
  return [this, &placed, &req, indexed](Database& db) -> Status {
    *indexed = false;
    if (req.also) {
      if (Status s = req.also(db); !s.ok()) return s;
    }
    if (req.companions_wanted && !req.companions_wanted()) return Status::Ok();
    for (const NewInstance& instance : placed) {
      if (Status s = index_.AddInstanceInWrite(db, instance); !s.ok()) return s;
    }
    *indexed = true;
    return Status::Ok();
  };
}

Status Ingest::WriteAlso(const StoreRequest& req, const std::vector<NewInstance>& placed) {
  bool indexed = false;
  Index::WriteFn write = WithCompanions(placed, req, &indexed);
  Status st = write ? index_.Write(write) : Status::Ok();
  if (!st.ok() || !indexed) RemoveCompanions(placed);
  return st;
}

void Ingest::RemoveCompanions(const std::vector<NewInstance>& placed) {
  for (const NewInstance& instance : placed) {
    if (ObjectStore::InIndex(instance.relative_path)) continue;  // went with the rolled-back write
    std::error_code ec;
    if (!std::filesystem::remove(store_.Absolute(instance.relative_path), ec) && ec) {
      spdlog::warn("cannot remove {} after a failed index write: {}", instance.relative_path, ec.message());
    }
  }
}

}  // namespace teleread
