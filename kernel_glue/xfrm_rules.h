// Validity rules shared by every XfrmInterface implementation, so the
// in-memory one rejects exactly what the kernel glue rejects before sending.
#ifndef KERNEL_GLUE_XFRM_RULES_H_
#define KERNEL_GLUE_XFRM_RULES_H_

#include <cerrno>
#include <string>

#include "kernel_glue/xfrm_interface.h"

namespace kernel_glue {

// Kernel algorithm names and sizes for the negotiated transforms.
const char* CipherKernelName(Cipher cipher);
const char* IntegrityKernelName(Integrity integrity);
// Truncated ICV length in bits (RFC 4868 / RFC 4106 / RFC 7634).
unsigned IcvBits(Cipher cipher, Integrity integrity);
bool IsAead(Cipher cipher);

KernelError MakeError(std::string operation, int error_number,
                      std::string message = "");

// EINVAL with a message naming the field when the SA cannot be installed;
// EPERM when its reqid lies outside the owned range.
Status ValidateSa(const SaParams& sa, const Ownership& ownership);
Status ValidatePolicy(const PolicyParams& policy, const Ownership& ownership);
Status ValidateSocketPolicy(const SocketPolicy& policy);

// A byte string that identifies the object, for maps keyed by identity.
std::string SaKey(const SaId& id);
std::string PolicyKey(const PolicyId& id);

const char* DirectionName(Direction direction);

}  // namespace kernel_glue

#endif  // KERNEL_GLUE_XFRM_RULES_H_
