// SPDX-License-Identifier: Apache-2.0
#include "outcome.h"

#include "safe_text.h"

namespace pgjobs::worker {

Outcome FinalOutcome(const Outcome& returned, bool committed,
                     std::chrono::steady_clock::time_point returned_at,
                     std::chrono::steady_clock::time_point job_deadline,
                     std::chrono::steady_clock::time_point shutdown_deadline) {
  if (committed) return Outcome::Success();
  Outcome out = returned;
  if (out.kind == Outcome::Kind::kSuccess && returned_at > job_deadline) {
    out = Outcome::Timeout("timeout: the handler returned after the job's timeout");
  }
  if (out.kind == Outcome::Kind::kTimeout && shutdown_deadline < job_deadline &&
      returned_at >= shutdown_deadline) {
    out = Outcome::Failure(
        "worker shut down: the job did not finish within the shutdown grace period");
  }
  if (out.kind != Outcome::Kind::kSuccess) out.error = SafeTail(out.error, kMaxTracebackBytes);
  return out;
}

}  // namespace pgjobs::worker
