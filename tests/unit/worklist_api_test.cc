// How a worklist row reads in the reading API's answers (server/http/worklist_api.cc).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "server/http/api_reply.h"
#include "server/store/task_store.h"

using namespace teleread;
using nlohmann::json;

TEST_CASE("a worklist row's JSON names every field, with null for what has not happened", "[api][worklist]") {
  WorklistRow r;
  r.study_instance_uid = "1.2.3";
  r.member_id = "zhuozhou";
  r.modalities = "CT\\SR";
  r.body_part = "CHEST";
  r.study_description = "CT chest";
  r.patient_name = "ZHANG^WEI";
  r.patient_id = "P1";
  r.patient_birth_date = "19600101";
  r.patient_age = "064Y";
  r.patient_sex = "M";
  r.study_date = "20261201";
  r.num_series = 3;
  r.num_instances = 300;
  r.priority = "STAT";
  r.state = "claimed";
  r.claimed_by = "wang.li";
  r.received_ms = 10;
  r.complete_ms = 20;
  r.due_ms = 30;
  r.claimed_ms = 40;
  r.lease_expires_ms = 50;
  r.overdue = true;
  const json claimed = {{"study_instance_uid", "1.2.3"},
                        {"member", "zhuozhou"},
                        {"modalities", "CT\\SR"},
                        {"body_part", "CHEST"},
                        {"description", "CT chest"},
                        {"patient_name", "ZHANG^WEI"},
                        {"patient_id", "P1"},
                        {"patient_birth_date", "19600101"},
                        {"patient_age", "064Y"},
                        {"patient_sex", "M"},
                        {"study_date", "20261201"},
                        {"series", 3},
                        {"instances", 300},
                        {"priority", "STAT"},
                        {"state", "claimed"},
                        {"claimed_by", "wang.li"},
                        {"received_ms", 10},
                        {"complete_ms", 20},
                        {"due_ms", 30},
                        {"claimed_ms", 40},
                        {"lease_expires_ms", 50},
                        {"reported_ms", nullptr},
                        {"delivered_ms", nullptr},
                        {"amended_ms", nullptr},
                        {"reported_by", nullptr},
                        {"acknowledged_ms", nullptr},
                        {"overdue", true}};
  CHECK(api::RowJson(r) == claimed);

  // Reported and delivered: the lease is no longer shown, and the claim's holder stays named.
  r.state = "reported";
  r.reported_ms = 60;
  r.delivered_ms = 70;
  r.amended_ms = 80;
  r.reported_by = "wang.li";
  r.acknowledged_ms = 90;
  json reported = claimed;
  reported["state"] = "reported";
  reported["lease_expires_ms"] = nullptr;
  reported["reported_ms"] = 60;
  reported["delivered_ms"] = 70;
  reported["amended_ms"] = 80;
  reported["reported_by"] = "wang.li";
  reported["acknowledged_ms"] = 90;
  CHECK(api::RowJson(r) == reported);
  // Waiting: no holder, no claim time.
  r.state = "waiting";
  r.claimed_by.clear();
  r.claimed_ms = 0;
  CHECK(api::RowJson(r)["claimed_by"].is_null());
  CHECK(api::RowJson(r)["claimed_ms"].is_null());
  CHECK(api::RowJson(r).size() == 27);
}
