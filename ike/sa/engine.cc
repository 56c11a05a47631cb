#include "ike/sa/engine.h"

namespace ike::sa {

std::string_view FailureReasonName(FailureReason reason) {
  switch (reason) {
    case FailureReason::kNone: return "none";
    case FailureReason::kNoProposalChosen: return "no-proposal-chosen";
    case FailureReason::kInvalidKePayload: return "invalid-ke-payload";
    case FailureReason::kAuthenticationFailed: return "authentication-failed";
    case FailureReason::kPeerUnknown: return "peer-unknown";
    case FailureReason::kPadAuthMismatch: return "pad-auth-mismatch";
    case FailureReason::kNullAuthNotAllowed: return "null-auth-not-allowed";
    case FailureReason::kTsUnacceptable: return "ts-unacceptable";
    case FailureReason::kRetransmitTimeout: return "retransmit-timeout";
    case FailureReason::kHalfOpenTimeout: return "half-open-timeout";
    case FailureReason::kDeadPeer: return "dead-peer";
    case FailureReason::kDeletedByPeer: return "deleted-by-peer";
    case FailureReason::kDeletedLocally: return "deleted-locally";
    case FailureReason::kExpired: return "expired";
    case FailureReason::kRekeyed: return "rekeyed";
    case FailureReason::kInvalidSyntax: return "invalid-syntax";
    case FailureReason::kIntegrityCheckFailed: return "integrity-check-failed";
    case FailureReason::kInvalidSpi: return "invalid-spi";
    case FailureReason::kPeerError: return "peer-error";
    case FailureReason::kPolicyMissing: return "policy-missing";
    case FailureReason::kInternalError: return "internal-error";
    case FailureReason::kSignerRefused: return "signer-refused";
    case FailureReason::kSignerTimeout: return "signer-timeout";
    case FailureReason::kNoFreeReqid: return "no-free-reqid";
  }
  return "unknown";
}

}  // namespace ike::sa
