#include "faults.h"

#include <string>

namespace waybill::receiver {

nlohmann::json ToJson(const FaultSettings& s) {
  return {{"fail_rate", s.fail_rate},         {"fail_after_apply_rate", s.fail_after_apply_rate},
          {"throttle_rate", s.throttle_rate}, {"hang_rate", s.hang_rate},
          {"latency_ms", s.latency_ms},       {"hang_ms", s.hang_ms},
          {"retry_after_s", s.retry_after_s}};
}

Result<FaultSettings> Patched(const FaultSettings& settings, const nlohmann::json& patch) {
  if (!patch.is_object()) {
    return Status::InvalidArgument(std::string("body: expected a JSON object, got ") +
                                   patch.type_name());
  }
  FaultSettings out = settings;
  for (const auto& [name, value] : patch.items()) {
    double* rate = name == "fail_rate"               ? &out.fail_rate
                   : name == "fail_after_apply_rate" ? &out.fail_after_apply_rate
                   : name == "throttle_rate"         ? &out.throttle_rate
                   : name == "hang_rate"             ? &out.hang_rate
                                                     : nullptr;
    int64_t* count = name == "latency_ms"      ? &out.latency_ms
                     : name == "hang_ms"       ? &out.hang_ms
                     : name == "retry_after_s" ? &out.retry_after_s
                                               : nullptr;
    if (rate) {
      if (!value.is_number() || value.get<double>() < 0 || value.get<double>() > 1) {
        return Status::InvalidArgument(name + ": expected a number from 0 to 1, got " +
                                       value.dump());
      }
      *rate = value.get<double>();
    } else if (count) {
      // An unsigned above INT64_MAX reads as negative here and is refused like any other.
      if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
          value.get<int64_t>() > INT32_MAX) {
        return Status::InvalidArgument(name + ": expected an integer from 0 to 2147483647, got " +
                                       value.dump());
      }
      *count = value.get<int64_t>();
    } else {
      return Status::InvalidArgument(name + ": unknown setting");
    }
  }
  return out;
}

FaultInjector::Decision FaultInjector::Draw() {
  std::lock_guard lock(mu_);
  // 53 random bits scaled to [0, 1): exact, and never 1.0, so a rate of 1 always hits.
  auto uniform = [](std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1p-53; };
  Decision d;
  d.settings = settings_;
  // One draw per kind even when an earlier kind hit, so that changing one rate does not shift
  // the sequence of the others.
  bool hang = uniform(rng_) < settings_.hang_rate;
  bool fail = uniform(rng_) < settings_.fail_rate;
  bool throttle = uniform(rng_) < settings_.throttle_rate;
  bool fail_after_apply = uniform(rng_) < settings_.fail_after_apply_rate;
  d.fault = hang               ? Fault::kHang
            : fail             ? Fault::kFail
            : throttle         ? Fault::kThrottle
            : fail_after_apply ? Fault::kFailAfterApply
                               : Fault::kNone;
  return d;
}

Result<FaultSettings> FaultInjector::Update(const nlohmann::json& patch) {
  std::lock_guard lock(mu_);
  Result<FaultSettings> next = Patched(settings_, patch);
  if (next.ok()) settings_ = *next;
  return next;
}

FaultSettings FaultInjector::settings() const {
  std::lock_guard lock(mu_);
  return settings_;
}

}  // namespace waybill::receiver
