#pragma once
// A member's C-STORE SCP inside the test process (a C-MOVE destination) that can hold its answer
// to the n-th object until the test lets it go: while it holds, the centre's C-MOVE waits, so a
// test can act at a known point of the transfer instead of racing it.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/scp.h"

namespace teleread::test {

class HoldingStoreScp {
 public:
  // Listens on `port` (release it from the port allocator first) as `ae_title`, taking
  // `sop_class` in Explicit or Implicit VR Little Endian; holds the answer to object `hold_at`
  // (1-based; 0: never).
  HoldingStoreScp(uint16_t port, const std::string& ae_title, const std::string& sop_class, int hold_at)
      : scp_(*this), hold_at_(hold_at) {
    scp_.setPort(port);
    scp_.setAETitle(ae_title.c_str());
    scp_.addPresentationContext(sop_class.c_str(),
                                {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax});
    scp_.setConnectionBlockingMode(DUL_NOBLOCK);
    scp_.setConnectionTimeout(1);  // how often it looks whether to stop
    scp_.setACSETimeout(30);
    scp_.setDIMSETimeout(30);
    // Bound before the constructor returns, so that the centre can connect at once.
    listening_ = scp_.openListenPort().good();
    if (listening_) thread_ = std::thread([this] { scp_.acceptAssociations(); });
  }
  ~HoldingStoreScp() {
    stop_ = true;
    Release();
    if (thread_.joinable()) thread_.join();
  }
  HoldingStoreScp(const HoldingStoreScp&) = delete;
  HoldingStoreScp& operator=(const HoldingStoreScp&) = delete;

  bool listening() const { return listening_; }
  // Whether the held object has arrived (its answer not yet sent) within `seconds`.
  bool WaitUntilHeld(int seconds) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(seconds), [this] { return holding_; });
  }
  // Sends the held answer; later objects are answered at once.
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  // Whether the centre's association has ended (released or aborted) within `seconds`.
  bool WaitUntilAssociationEnded(int seconds) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(seconds), [this] { return ended_ > 0; });
  }
  int received() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }

 private:
  class Scp : public DcmSCP {
   public:
    explicit Scp(HoldingStoreScp& owner) : owner_(owner) {}

   protected:
    OFCondition handleIncomingCommand(T_DIMSE_Message* msg, const DcmPresentationContextInfo& info) override {
      if (msg->CommandField != DIMSE_C_STORE_RQ) return DcmSCP::handleIncomingCommand(msg, info);
      T_DIMSE_C_StoreRQ& req = msg->msg.CStoreRQ;
      T_ASC_PresentationContextID pres_id = info.presentationContextID;
      DcmDataset* dataset = nullptr;
      OFCondition cond = receiveSTORERequest(req, pres_id, dataset);
      delete dataset;
      if (cond.bad()) return cond;
      {
        std::unique_lock<std::mutex> lock(owner_.mu_);
        if (++owner_.received_ == owner_.hold_at_) {
          owner_.holding_ = true;
          owner_.cv_.notify_all();
          owner_.cv_.wait(lock, [this] { return owner_.released_; });
        }
      }
      return sendSTOREResponse(pres_id, req, STATUS_Success);
    }
    void notifyAssociationTermination() override {
      std::lock_guard<std::mutex> lock(owner_.mu_);
      ++owner_.ended_;
      owner_.cv_.notify_all();
    }
    OFBool stopAfterConnectionTimeout() override { return owner_.stop_.load(); }

   private:
    HoldingStoreScp& owner_;
  };

  Scp scp_;
  const int hold_at_;
  std::atomic<bool> stop_{false};
  bool listening_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  int received_ = 0, ended_ = 0;
  bool holding_ = false, released_ = false;
  std::thread thread_;
};

}  // namespace teleread::test
