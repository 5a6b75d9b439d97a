// libFuzzer target for the wire decoders: any bytes given to DecodeBatch, DecodeAck,
// DecodeCommand and DecodeCommandResult must be rejected or decode to something that keeps the
// decoders' promises and survives a round trip through the encoders unchanged.
//
// Built with clang++ -fsanitize=fuzzer,address,undefined by tests/CMakeLists.txt; run by
// `ctest -L fuzz` (a short run) and `./scripts/fuzz wire --minutes N` (a long one).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "waybill/sync/events.h"
#include "waybill/sync/wire.h"

namespace {

using namespace waybill::sync;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

bool Same(const StoredEvent& a, const StoredEvent& b) {
  return a.seq == b.seq && a.cls == b.cls && a.ts_ms == b.ts_ms && a.ts_src == b.ts_src &&
         a.body == b.body;
}

void FuzzBatch(std::string_view bytes) {
  waybill::Result<DecodedBatch> batch = DecodeBatch(bytes);
  if (!batch.ok()) {
    Check(!batch.status().message().empty());
    return;
  }
  Check(batch->schema_version >= 1 && batch->schema_version <= kSchemaVersion);
  Check(IsValidDeviceId(batch->device_id));
  Check(batch->events.size() <= kMaxBatchEvents);
  for (size_t i = 0; i < batch->events.size(); ++i) {
    const StoredEvent& e = batch->events[i];
    if (i > 0) Check(e.seq > batch->events[i - 1].seq);
    if (e.cls == EventClass::kFix) Check(DecodeFix(e.body).ok());
  }
  waybill::Result<std::string> again = EncodeBatch(batch->device_id, batch->historical,
                                                   batch->events);
  if (!again.ok()) {
    // Envelope bodies near the size bound may not fit again next to re-encoded fixes.
    Check(again.status().message().find("send fewer") != std::string::npos);
    return;
  }
  waybill::Result<DecodedBatch> back = DecodeBatch(*again);
  Check(back.ok());
  Check(back->events.size() == batch->events.size());
  for (size_t i = 0; i < back->events.size(); ++i) Check(Same(back->events[i], batch->events[i]));
}

void FuzzAck(std::string_view bytes) {
  std::string device;
  waybill::Result<std::vector<uint64_t>> seqs = DecodeAck(bytes, &device);
  if (!seqs.ok()) return;
  Check(IsValidDeviceId(device));
  Check(seqs->size() <= kMaxAckSeqs);
  for (size_t i = 1; i < seqs->size(); ++i) Check((*seqs)[i] > (*seqs)[i - 1]);
  waybill::Result<std::vector<uint64_t>> back = DecodeAck(EncodeAck(device, *seqs), nullptr);
  Check(back.ok() && *back == *seqs);
}

void FuzzCommand(std::string_view bytes) {
  waybill::Result<Command> command = DecodeCommand(bytes);
  if (command.ok()) {
    waybill::Result<std::string> again = EncodeCommand(*command);
    Check(again.ok());
    waybill::Result<Command> back = DecodeCommand(*again);
    Check(back.ok() && *back == *command);
  }
  waybill::Result<CommandResult> result = DecodeCommandResult(bytes);
  if (result.ok()) {
    waybill::Result<std::string> again = EncodeCommandResult(*result);
    Check(again.ok());
    Check(*DecodeCommandResult(*again) == *result);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  FuzzBatch(bytes);
  FuzzAck(bytes);
  FuzzCommand(bytes);
  return 0;
}
