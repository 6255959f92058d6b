// Objects stored with another in one index transaction (StoreRequest::companions): the report
// desk's PDF copy lands with its signed SR, both or neither. Kept apart from ingest.cc, whose
// durable write path changes on its own schedule: this file only places, indexes and removes.
#include "common/log.h"
#include "server/reading/ingest.h"

namespace teleread {

std::list<TempFileGuard> Ingest::GuardCompanions(const StoreRequest& req) {
  std::list<TempFileGuard> guards;
  for (const CompanionObject& c : req.companions) guards.emplace_back(c.temp_file);
  return guards;
}

Result<std::vector<NewInstance>> Ingest::PlaceCompanions(const StoreRequest& req) {
  std::vector<NewInstance> placed;
  for (const CompanionObject& c : req.companions) {
    std::error_code ec;
    NewInstance instance{c.summary,
                         req.member_id,
                         req.calling_ae_title,
                         ObjectStore::RelativePathFor(c.summary.sop_instance_uid),
                         std::filesystem::file_size(c.temp_file, ec),
                         clock_()};
    Result<ObjectStore::Placed> p = store_.Place(c.temp_file, instance.relative_path);
    Status failed = !p.ok() ? p.status()
                    : p.value() == ObjectStore::Placed::kExisting
                        ? Status::Conflict("object " + c.summary.sop_instance_uid + " is stored already")
                        : Status::Ok();
    if (!failed.ok()) {
      RemoveCompanions(placed);
      return failed;
    }
    placed.push_back(std::move(instance));
  }
  return placed;
}

Index::WriteFn Ingest::WithCompanions(const std::vector<NewInstance>& placed, const Index::WriteFn& also) {
  if (placed.empty()) return also;
  // Runs while AddInstance waits for it, so the references outlive it.
  return [this, &placed, &also](Database& db) -> Status {
    for (const NewInstance& instance : placed) {
      if (Status s = index_.AddInstanceInWrite(db, instance); !s.ok()) return s;
    }
    return also ? also(db) : Status::Ok();
  };
}

void Ingest::RemoveCompanions(const std::vector<NewInstance>& placed) {
  for (const NewInstance& instance : placed) {
    std::error_code ec;
    if (!std::filesystem::remove(store_.Absolute(instance.relative_path), ec) && ec) {
      spdlog::warn("cannot remove {} after a failed index write: {}", instance.relative_path, ec.message());
    }
  }
}

}  // namespace teleread
