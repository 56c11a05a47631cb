// IANA code points for IKEv2 (RFC 7296 and the registries it created), shared
// by every layer. Values only; names for printing live in names.h.
#pragma once

#include <cstdint>

namespace ike::wire {

enum class ExchangeType : uint8_t {
  kIkeSaInit = 34,
  kIkeAuth = 35,
  kCreateChildSa = 36,
  kInformational = 37,
  kIkeSessionResume = 38,  // RFC 5723
  kIkeIntermediate = 43,   // RFC 9242
};

// Next Payload values.
enum class PayloadType : uint8_t {
  kNone = 0,
  kSa = 33,
  kKe = 34,
  kIdi = 35,
  kIdr = 36,
  kCert = 37,
  kCertReq = 38,
  kAuth = 39,
  kNonce = 40,
  kNotify = 41,
  kDelete = 42,
  kVendorId = 43,
  kTsi = 44,
  kTsr = 45,
  kSk = 46,
  kCp = 47,
  kEap = 48,
  kSkf = 53,  // RFC 7383
};

namespace header_flags {
inline constexpr uint8_t kInitiator = 0x08;
inline constexpr uint8_t kVersion = 0x10;
inline constexpr uint8_t kResponse = 0x20;
}  // namespace header_flags

enum class ProtocolId : uint8_t { kIke = 1, kAh = 2, kEsp = 3 };

enum class TransformType : uint8_t {
  kEncr = 1,
  kPrf = 2,
  kInteg = 3,
  kKe = 4,  // "Diffie-Hellman Group" in RFC 7296
  kEsn = 5,
};

enum class EncrId : uint16_t {
  kDes = 2,
  k3Des = 3,
  kNull = 11,
  kAesCbc = 12,
  kAesCtr = 13,
  kAesCcm8 = 14,
  kAesCcm12 = 15,
  kAesCcm16 = 16,
  kAesGcm8 = 18,
  kAesGcm12 = 19,
  kAesGcm16 = 20,
  kNullAuthAesGmac = 21,
  kChaCha20Poly1305 = 28,  // RFC 7634
};

enum class PrfId : uint16_t {
  kHmacMd5 = 1,
  kHmacSha1 = 2,
  kAes128Xcbc = 4,
  kHmacSha2_256 = 5,
  kHmacSha2_384 = 6,
  kHmacSha2_512 = 7,
  kAes128Cmac = 8,
};

enum class IntegId : uint16_t {
  kNone = 0,
  kHmacMd5_96 = 1,
  kHmacSha1_96 = 2,
  kAesXcbc96 = 5,
  kHmacSha2_256_128 = 12,
  kHmacSha2_384_192 = 13,
  kHmacSha2_512_256 = 14,
};

enum class KeGroup : uint16_t {
  kNone = 0,
  kModp768 = 1,
  kModp1024 = 2,
  kModp1536 = 5,
  kModp2048 = 14,
  kModp3072 = 15,
  kModp4096 = 16,
  kModp6144 = 17,
  kModp8192 = 18,
  kEcp256 = 19,
  kEcp384 = 20,
  kEcp521 = 21,
  kCurve25519 = 31,  // RFC 8031
  kCurve448 = 32,
};

enum class EsnId : uint16_t { kNoEsn = 0, kEsn = 1 };

// Transform attribute types (the AF bit is carried separately).
inline constexpr uint16_t kAttrKeyLength = 14;

enum class IdType : uint8_t {
  kIpv4Addr = 1,
  kFqdn = 2,
  kRfc822Addr = 3,
  kIpv6Addr = 5,
  kDerAsn1Dn = 9,
  kDerAsn1Gn = 10,
  kKeyId = 11,
  kFcName = 12,
  kNull = 13,  // RFC 7619
};

enum class CertEncoding : uint8_t {
  kPkcs7X509 = 1,
  kPgp = 2,
  kDnsSignedKey = 3,
  kX509Signature = 4,
  kKerberos = 6,
  kCrl = 7,
  kArl = 8,
  kSpki = 9,
  kX509Attribute = 10,
  kRawRsaKey = 11,
  kHashUrlX509 = 12,
  kHashUrlBundle = 13,
  kOcspContent = 14,
  kRawPublicKey = 15,  // RFC 7670
};

enum class AuthMethod : uint8_t {
  kRsaSig = 1,
  kSharedKeyMic = 2,
  kDss = 3,
  kEcdsa256 = 9,
  kEcdsa384 = 10,
  kEcdsa521 = 11,
  kGenericSecurePassword = 12,
  kNull = 13,              // RFC 7619
  kDigitalSignature = 14,  // RFC 7427
};

// RFC 7427 hash algorithm identifiers (SIGNATURE_HASH_ALGORITHMS).
enum class HashAlgorithm : uint16_t {
  kSha1 = 1,
  kSha2_256 = 2,
  kSha2_384 = 3,
  kSha2_512 = 4,
  kIdentity = 5,  // RFC 8420
};

enum class TsType : uint8_t { kIpv4AddrRange = 7, kIpv6AddrRange = 8 };

enum class CfgType : uint8_t { kRequest = 1, kReply = 2, kSet = 3, kAck = 4 };

// Notify Message Types: errors are below 16384, status types from 16384.
enum class NotifyType : uint16_t {
  kUnsupportedCriticalPayload = 1,
  kInvalidIkeSpi = 4,
  kInvalidMajorVersion = 5,
  kInvalidSyntax = 7,
  kInvalidMessageId = 9,
  kInvalidSpi = 11,
  kNoProposalChosen = 14,
  kInvalidKePayload = 17,
  kAuthenticationFailed = 24,
  kSinglePairRequired = 34,
  kNoAdditionalSas = 35,
  kInternalAddressFailure = 36,
  kFailedCpRequired = 37,
  kTsUnacceptable = 38,
  kInvalidSelectors = 39,
  kUnacceptableAddresses = 40,
  kUnexpectedNatDetected = 41,
  kUseAssignedHoa = 42,
  kTemporaryFailure = 43,
  kChildSaNotFound = 44,
  kInvalidGroupId = 45,
  kAuthorizationFailed = 46,
  kStateNotFound = 47,

  kInitialContact = 16384,
  kSetWindowSize = 16385,
  kAdditionalTsPossible = 16386,
  kIpcompSupported = 16387,
  kNatDetectionSourceIp = 16388,
  kNatDetectionDestinationIp = 16389,
  kCookie = 16390,
  kUseTransportMode = 16391,
  kHttpCertLookupSupported = 16392,
  kRekeySa = 16393,
  kEspTfcPaddingNotSupported = 16394,
  kNonFirstFragmentsAlso = 16395,
  kMobikeSupported = 16396,
  kAdditionalIp4Address = 16397,
  kAdditionalIp6Address = 16398,
  kNoAdditionalAddresses = 16399,
  kUpdateSaAddresses = 16400,
  kCookie2 = 16401,
  kNoNatsAllowed = 16402,
  kAuthLifetime = 16403,
  kMultipleAuthSupported = 16404,
  kAnotherAuthFollows = 16405,
  kRedirectSupported = 16406,  // RFC 5685
  kRedirect = 16407,           // RFC 5685
  kRedirectedFrom = 16408,     // RFC 5685
  kTicketLtOpaque = 16409,
  kTicketRequest = 16410,
  kTicketAck = 16411,
  kTicketNack = 16412,
  kTicketOpaque = 16413,
  kLinkId = 16414,
  kUseWespMode = 16415,
  kRohcSupported = 16416,
  kEapOnlyAuthentication = 16417,
  kChildlessIkev2Supported = 16418,  // RFC 6023
  kQuickCrashDetection = 16419,
  kIkev2MessageIdSyncSupported = 16420,
  kIpsecReplayCounterSyncSupported = 16421,
  kIkev2MessageIdSync = 16422,
  kIpsecReplayCounterSync = 16423,
  kSecurePasswordMethods = 16424,
  kPskPersist = 16425,
  kPskConfirm = 16426,
  kErxSupported = 16427,
  kIfomCapability = 16428,
  kSenderRequestId = 16429,
  kIkev2FragmentationSupported = 16430,  // RFC 7383
  kSignatureHashAlgorithms = 16431,      // RFC 7427
  kCloneIkeSaSupported = 16432,
  kCloneIkeSa = 16433,
  kPuzzle = 16434,
  kUsePpk = 16435,
  kPpkIdentity = 16436,
  kNoPpkAuth = 16437,
  kIntermediateExchangeSupported = 16438,
};

inline constexpr bool IsErrorNotify(uint16_t type) { return type < 16384; }

}  // namespace ike::wire
