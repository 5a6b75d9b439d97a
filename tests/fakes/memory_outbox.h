// MemoryOutbox: an in-memory sync::Outbox for unit tests of its callers. Appends can be made to
// fail with a chosen Status. Not durable, by design.
#pragma once

#include <map>
#include <mutex>

#include "waybill/sync/outbox.h"

namespace waybill::fakes {

class MemoryOutbox : public sync::Outbox {
 public:
  Result<uint64_t> Append(const sync::NewEvent& event) override {
    std::lock_guard lock(mu_);
    if (!fail_with_.ok()) return fail_with_;
    uint64_t seq = next_seq_++;
    events_[seq] = sync::StoredEvent{seq, event.cls, event.ts_ms, event.ts_src, event.body};
    return seq;
  }
  void AppendAsync(sync::NewEvent event, std::function<void(Result<uint64_t>)> done) override {
    done(Append(event));
  }
  Result<std::vector<sync::StoredEvent>> Claim(size_t max_events, bool) override {
    std::lock_guard lock(mu_);
    std::vector<sync::StoredEvent> out;
    for (auto& [seq, ev] : events_) {
      if (out.size() >= max_events) break;
      out.push_back(ev);
    }
    return out;
  }
  Status Ack(std::span<const uint64_t> seqs) override {
    std::lock_guard lock(mu_);
    for (uint64_t s : seqs) events_.erase(s);
    return Status::Ok();
  }
  void Release(std::span<const uint64_t>) override {}
  Result<uint64_t> CorrectTime(int64_t) override { return uint64_t{0}; }
  sync::OutboxStats Stats() override {
    std::lock_guard lock(mu_);
    sync::OutboxStats st;
    st.events = events_.size();
    for (auto& [seq, ev] : events_) ++st.by_class[static_cast<int>(ev.cls)];
    st.next_seq = next_seq_;
    return st;
  }
  Status Flush() override { return Status::Ok(); }

  void FailWith(Status s) {
    std::lock_guard lock(mu_);
    fail_with_ = std::move(s);
  }
  std::map<uint64_t, sync::StoredEvent> events() {
    std::lock_guard lock(mu_);
    return events_;
  }

 private:
  std::mutex mu_;
  std::map<uint64_t, sync::StoredEvent> events_;
  uint64_t next_seq_ = 1;
  Status fail_with_;
};

}  // namespace waybill::fakes
