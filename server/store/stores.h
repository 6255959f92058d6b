#pragma once
// The narrow stores over one index, built together: what reading/ and http/ are given.
// With index.h, object_store.h and query.h, their headers are store/'s whole interface
// (store/README.md).
#include "common/clock.h"
#include "server/store/audit_log.h"
#include "server/store/commitment_store.h"
#include "server/store/critical_store.h"
#include "server/store/delivery_store.h"
#include "server/store/index.h"
#include "server/store/report_store.h"
#include "server/store/study_reads.h"
#include "server/store/task_store.h"

namespace teleread {

struct Stores {
  Stores(Index& index, Clock clock)
      : tasks(index),
        reports(index),
        deliveries(index),
        reads(index),
        critical(index),
        commitments(index),
        audit(index, std::move(clock)) {}
  TaskStore tasks;
  ReportStore reports;
  DeliveryStore deliveries;
  StudyReads reads;
  CriticalStore critical;
  CommitmentStore commitments;
  AuditLog audit;
};

}  // namespace teleread
