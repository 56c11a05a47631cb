// Names of IKEv2 code points for logs, the decoder tool and operators.
// Values without a name print as "UNKNOWN(<number>)"; these never fail.
#pragma once

#include <cstdint>
#include <string>

#include "ike/wire/constants.h"

namespace ike::wire {

std::string ExchangeName(ExchangeType type);       // "IKE_SA_INIT"
std::string PayloadName(uint8_t type);             // "SA", "IDi", "SKF"
std::string NotifyName(NotifyType type);           // "NO_PROPOSAL_CHOSEN"
std::string ProtocolName(uint8_t protocol);        // "IKE", "ESP"
std::string TransformTypeName(TransformType type); // "ENCR", "KE"
// "ENCR_AES_GCM_16", "PRF_HMAC_SHA2_256", "AUTH_HMAC_SHA2_256_128",
// "CURVE25519", "ESN".
std::string TransformIdName(TransformType type, uint16_t id);
std::string IdTypeName(IdType type);               // "ID_FQDN", "ID_NULL"
std::string AuthMethodName(AuthMethod method);     // "SHARED_KEY_MIC"
std::string CertEncodingName(CertEncoding encoding);  // "RAW_PUBLIC_KEY"
std::string TsTypeName(TsType type);               // "TS_IPV4_ADDR_RANGE"
std::string CfgTypeName(CfgType type);             // "CFG_REQUEST"

}  // namespace ike::wire
