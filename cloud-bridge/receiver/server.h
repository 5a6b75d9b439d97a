// Receiver: the HTTP face of waybill-receiver.
//
// `POST /v1/<anything>` ingests a batch (validated, faults drawn, applied once per
// Idempotency-Key through the Store); `PUT /v1/photos/{sha256}` stores a proof-of-delivery photo
// (its digest checked, idempotent); `/_stats`, `/_events`, `/_photos` and `/_faults` let tests,
// benchmarks and the demo see and steer it. docs/RECEIVER.md describes the endpoints for users.
//
// Requests run on a pool of threads large enough that a request held by a hang fault does not
// hold up the others. Stop() wakes held requests, so a stop never waits out a hang.
#pragma once

#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "faults.h"
#include "store.h"
#include "waybill/hal/clock.h"
#include "waybill/hal/log_limit.h"
#include "waybill/status.h"

namespace waybill::receiver {

struct ReceiverOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: a free port, see Receiver::port()
  std::string db_path = "receiver.db";
  FaultSettings faults;
  uint64_t seed = 1;
  int threads = 32;
};

class Receiver {
 public:
  // Opens the database and binds the port. Fails with IOError naming the file or the address.
  // `clock` stamps stored requests and paces the log; it must outlive the receiver.
  static Result<std::unique_ptr<Receiver>> Create(const ReceiverOptions& options,
                                                  hal::Clock& clock);
  ~Receiver();
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  // The bound port.
  int port() const { return port_; }

  // Serves until Stop(); returns after the requests in flight have been answered.
  Status Run();

  // Stops listening and wakes requests sleeping on latency or a hang, which then answer at once.
  // Thread-safe; may be called before, during or after Run().
  void Stop();

 private:
  Receiver(const ReceiverOptions& options, std::unique_ptr<Store> store, hal::Clock& clock);
  void Ingest(const httplib::Request& req, const std::string& body, httplib::Response& res);
  void GetStats(const httplib::Request& req, httplib::Response& res);
  void GetEvents(const httplib::Request& req, httplib::Response& res);
  void PostFaults(const httplib::Request& req, httplib::Response& res);
  void PutPhoto(const httplib::Request& req, const std::string& body, httplib::Response& res);
  void GetPhotos(const httplib::Request& req, httplib::Response& res);
  void BadRequest(const httplib::Request& req, httplib::Response& res, const Status& why);
  // Sleeps `ms` unless Stop() comes first; returns false if stopped.
  bool SleepUnlessStopped(int64_t ms);

  httplib::Server server_;
  hal::Clock& clock_;
  std::unique_ptr<Store> store_;
  FaultInjector faults_;
  int port_ = -1;

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;

  std::mutex log_mu_;
  hal::LogLimiter bad_request_log_{10, 60'000};

  // Counters since this process started; the store keeps the durable totals.
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> duplicate_requests_{0};
  std::atomic<uint64_t> bad_requests_{0};
  std::atomic<uint64_t> key_conflicts_{0};
  std::atomic<uint64_t> storage_errors_{0};
  std::atomic<uint64_t> fault_500_{0};
  std::atomic<uint64_t> fault_500_after_apply_{0};
  std::atomic<uint64_t> fault_429_{0};
  std::atomic<uint64_t> fault_hang_{0};
  std::atomic<uint64_t> photos_stored_{0};
  std::atomic<uint64_t> photo_duplicates_{0};
};

}  // namespace waybill::receiver
