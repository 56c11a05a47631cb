#include "ike/wire/names.h"

#include <string_view>

namespace ike::wire {
namespace {

std::string Unknown(unsigned value) {
  return "UNKNOWN(" + std::to_string(value) + ")";
}

std::string_view KnownNotifyName(NotifyType type) {
  switch (type) {
    case NotifyType::kUnsupportedCriticalPayload: return "UNSUPPORTED_CRITICAL_PAYLOAD";
    case NotifyType::kInvalidIkeSpi: return "INVALID_IKE_SPI";
    case NotifyType::kInvalidMajorVersion: return "INVALID_MAJOR_VERSION";
    case NotifyType::kInvalidSyntax: return "INVALID_SYNTAX";
    case NotifyType::kInvalidMessageId: return "INVALID_MESSAGE_ID";
    case NotifyType::kInvalidSpi: return "INVALID_SPI";
    case NotifyType::kNoProposalChosen: return "NO_PROPOSAL_CHOSEN";
    case NotifyType::kInvalidKePayload: return "INVALID_KE_PAYLOAD";
    case NotifyType::kAuthenticationFailed: return "AUTHENTICATION_FAILED";
    case NotifyType::kSinglePairRequired: return "SINGLE_PAIR_REQUIRED";
    case NotifyType::kNoAdditionalSas: return "NO_ADDITIONAL_SAS";
    case NotifyType::kInternalAddressFailure: return "INTERNAL_ADDRESS_FAILURE";
    case NotifyType::kFailedCpRequired: return "FAILED_CP_REQUIRED";
    case NotifyType::kTsUnacceptable: return "TS_UNACCEPTABLE";
    case NotifyType::kInvalidSelectors: return "INVALID_SELECTORS";
    case NotifyType::kUnacceptableAddresses: return "UNACCEPTABLE_ADDRESSES";
    case NotifyType::kUnexpectedNatDetected: return "UNEXPECTED_NAT_DETECTED";
    case NotifyType::kUseAssignedHoa: return "USE_ASSIGNED_HoA";
    case NotifyType::kTemporaryFailure: return "TEMPORARY_FAILURE";
    case NotifyType::kChildSaNotFound: return "CHILD_SA_NOT_FOUND";
    case NotifyType::kInvalidGroupId: return "INVALID_GROUP_ID";
    case NotifyType::kAuthorizationFailed: return "AUTHORIZATION_FAILED";
    case NotifyType::kStateNotFound: return "STATE_NOT_FOUND";
    case NotifyType::kInitialContact: return "INITIAL_CONTACT";
    case NotifyType::kSetWindowSize: return "SET_WINDOW_SIZE";
    case NotifyType::kAdditionalTsPossible: return "ADDITIONAL_TS_POSSIBLE";
    case NotifyType::kIpcompSupported: return "IPCOMP_SUPPORTED";
    case NotifyType::kNatDetectionSourceIp: return "NAT_DETECTION_SOURCE_IP";
    case NotifyType::kNatDetectionDestinationIp: return "NAT_DETECTION_DESTINATION_IP";
    case NotifyType::kCookie: return "COOKIE";
    case NotifyType::kUseTransportMode: return "USE_TRANSPORT_MODE";
    case NotifyType::kHttpCertLookupSupported: return "HTTP_CERT_LOOKUP_SUPPORTED";
    case NotifyType::kRekeySa: return "REKEY_SA";
    case NotifyType::kEspTfcPaddingNotSupported: return "ESP_TFC_PADDING_NOT_SUPPORTED";
    case NotifyType::kNonFirstFragmentsAlso: return "NON_FIRST_FRAGMENTS_ALSO";
    case NotifyType::kMobikeSupported: return "MOBIKE_SUPPORTED";
    case NotifyType::kAdditionalIp4Address: return "ADDITIONAL_IP4_ADDRESS";
    case NotifyType::kAdditionalIp6Address: return "ADDITIONAL_IP6_ADDRESS";
    case NotifyType::kNoAdditionalAddresses: return "NO_ADDITIONAL_ADDRESSES";
    case NotifyType::kUpdateSaAddresses: return "UPDATE_SA_ADDRESSES";
    case NotifyType::kCookie2: return "COOKIE2";
    case NotifyType::kNoNatsAllowed: return "NO_NATS_ALLOWED";
    case NotifyType::kAuthLifetime: return "AUTH_LIFETIME";
    case NotifyType::kMultipleAuthSupported: return "MULTIPLE_AUTH_SUPPORTED";
    case NotifyType::kAnotherAuthFollows: return "ANOTHER_AUTH_FOLLOWS";
    case NotifyType::kRedirectSupported: return "REDIRECT_SUPPORTED";
    case NotifyType::kRedirect: return "REDIRECT";
    case NotifyType::kRedirectedFrom: return "REDIRECTED_FROM";
    case NotifyType::kTicketLtOpaque: return "TICKET_LT_OPAQUE";
    case NotifyType::kTicketRequest: return "TICKET_REQUEST";
    case NotifyType::kTicketAck: return "TICKET_ACK";
    case NotifyType::kTicketNack: return "TICKET_NACK";
    case NotifyType::kTicketOpaque: return "TICKET_OPAQUE";
    case NotifyType::kLinkId: return "LINK_ID";
    case NotifyType::kUseWespMode: return "USE_WESP_MODE";
    case NotifyType::kRohcSupported: return "ROHC_SUPPORTED";
    case NotifyType::kEapOnlyAuthentication: return "EAP_ONLY_AUTHENTICATION";
    case NotifyType::kChildlessIkev2Supported: return "CHILDLESS_IKEV2_SUPPORTED";
    case NotifyType::kQuickCrashDetection: return "QUICK_CRASH_DETECTION";
    case NotifyType::kIkev2MessageIdSyncSupported: return "IKEV2_MESSAGE_ID_SYNC_SUPPORTED";
    case NotifyType::kIpsecReplayCounterSyncSupported: return "IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED";
    case NotifyType::kIkev2MessageIdSync: return "IKEV2_MESSAGE_ID_SYNC";
    case NotifyType::kIpsecReplayCounterSync: return "IPSEC_REPLAY_COUNTER_SYNC";
    case NotifyType::kSecurePasswordMethods: return "SECURE_PASSWORD_METHODS";
    case NotifyType::kPskPersist: return "PSK_PERSIST";
    case NotifyType::kPskConfirm: return "PSK_CONFIRM";
    case NotifyType::kErxSupported: return "ERX_SUPPORTED";
    case NotifyType::kIfomCapability: return "IFOM_CAPABILITY";
    case NotifyType::kSenderRequestId: return "SENDER_REQUEST_ID";
    case NotifyType::kIkev2FragmentationSupported: return "IKEV2_FRAGMENTATION_SUPPORTED";
    case NotifyType::kSignatureHashAlgorithms: return "SIGNATURE_HASH_ALGORITHMS";
    case NotifyType::kCloneIkeSaSupported: return "CLONE_IKE_SA_SUPPORTED";
    case NotifyType::kCloneIkeSa: return "CLONE_IKE_SA";
    case NotifyType::kPuzzle: return "PUZZLE";
    case NotifyType::kUsePpk: return "USE_PPK";
    case NotifyType::kPpkIdentity: return "PPK_IDENTITY";
    case NotifyType::kNoPpkAuth: return "NO_PPK_AUTH";
    case NotifyType::kIntermediateExchangeSupported: return "INTERMEDIATE_EXCHANGE_SUPPORTED";
  }
  return {};
}

std::string_view KnownTransformIdName(TransformType type, uint16_t id) {
  switch (type) {
    case TransformType::kEncr:
      switch (static_cast<EncrId>(id)) {
        case EncrId::kDes: return "ENCR_DES";
        case EncrId::k3Des: return "ENCR_3DES";
        case EncrId::kNull: return "ENCR_NULL";
        case EncrId::kAesCbc: return "ENCR_AES_CBC";
        case EncrId::kAesCtr: return "ENCR_AES_CTR";
        case EncrId::kAesCcm8: return "ENCR_AES_CCM_8";
        case EncrId::kAesCcm12: return "ENCR_AES_CCM_12";
        case EncrId::kAesCcm16: return "ENCR_AES_CCM_16";
        case EncrId::kAesGcm8: return "ENCR_AES_GCM_8";
        case EncrId::kAesGcm12: return "ENCR_AES_GCM_12";
        case EncrId::kAesGcm16: return "ENCR_AES_GCM_16";
        case EncrId::kNullAuthAesGmac: return "ENCR_NULL_AUTH_AES_GMAC";
        case EncrId::kChaCha20Poly1305: return "ENCR_CHACHA20_POLY1305";
      }
      return {};
    case TransformType::kPrf:
      switch (static_cast<PrfId>(id)) {
        case PrfId::kHmacMd5: return "PRF_HMAC_MD5";
        case PrfId::kHmacSha1: return "PRF_HMAC_SHA1";
        case PrfId::kAes128Xcbc: return "PRF_AES128_XCBC";
        case PrfId::kHmacSha2_256: return "PRF_HMAC_SHA2_256";
        case PrfId::kHmacSha2_384: return "PRF_HMAC_SHA2_384";
        case PrfId::kHmacSha2_512: return "PRF_HMAC_SHA2_512";
        case PrfId::kAes128Cmac: return "PRF_AES128_CMAC";
      }
      return {};
    case TransformType::kInteg:
      switch (static_cast<IntegId>(id)) {
        case IntegId::kNone: return "NONE";
        case IntegId::kHmacMd5_96: return "AUTH_HMAC_MD5_96";
        case IntegId::kHmacSha1_96: return "AUTH_HMAC_SHA1_96";
        case IntegId::kAesXcbc96: return "AUTH_AES_XCBC_96";
        case IntegId::kHmacSha2_256_128: return "AUTH_HMAC_SHA2_256_128";
        case IntegId::kHmacSha2_384_192: return "AUTH_HMAC_SHA2_384_192";
        case IntegId::kHmacSha2_512_256: return "AUTH_HMAC_SHA2_512_256";
      }
      return {};
    case TransformType::kKe:
      switch (static_cast<KeGroup>(id)) {
        case KeGroup::kNone: return "NONE";
        case KeGroup::kModp768: return "MODP_768";
        case KeGroup::kModp1024: return "MODP_1024";
        case KeGroup::kModp1536: return "MODP_1536";
        case KeGroup::kModp2048: return "MODP_2048";
        case KeGroup::kModp3072: return "MODP_3072";
        case KeGroup::kModp4096: return "MODP_4096";
        case KeGroup::kModp6144: return "MODP_6144";
        case KeGroup::kModp8192: return "MODP_8192";
        case KeGroup::kEcp256: return "ECP_256";
        case KeGroup::kEcp384: return "ECP_384";
        case KeGroup::kEcp521: return "ECP_521";
        case KeGroup::kCurve25519: return "CURVE25519";
        case KeGroup::kCurve448: return "CURVE448";
      }
      return {};
    case TransformType::kEsn:
      switch (static_cast<EsnId>(id)) {
        case EsnId::kNoEsn: return "NO_ESN";
        case EsnId::kEsn: return "ESN";
      }
      return {};
  }
  return {};
}

std::string OrUnknown(std::string_view name, unsigned value) {
  return name.empty() ? Unknown(value) : std::string(name);
}

}  // namespace

std::string ExchangeName(ExchangeType type) {
  switch (type) {
    case ExchangeType::kIkeSaInit: return "IKE_SA_INIT";
    case ExchangeType::kIkeAuth: return "IKE_AUTH";
    case ExchangeType::kCreateChildSa: return "CREATE_CHILD_SA";
    case ExchangeType::kInformational: return "INFORMATIONAL";
    case ExchangeType::kIkeSessionResume: return "IKE_SESSION_RESUME";
    case ExchangeType::kIkeIntermediate: return "IKE_INTERMEDIATE";
  }
  return Unknown(static_cast<unsigned>(type));
}

std::string PayloadName(uint8_t type) {
  switch (static_cast<PayloadType>(type)) {
    case PayloadType::kNone: return "NONE";
    case PayloadType::kSa: return "SA";
    case PayloadType::kKe: return "KE";
    case PayloadType::kIdi: return "IDi";
    case PayloadType::kIdr: return "IDr";
    case PayloadType::kCert: return "CERT";
    case PayloadType::kCertReq: return "CERTREQ";
    case PayloadType::kAuth: return "AUTH";
    case PayloadType::kNonce: return "Nonce";
    case PayloadType::kNotify: return "Notify";
    case PayloadType::kDelete: return "Delete";
    case PayloadType::kVendorId: return "VendorID";
    case PayloadType::kTsi: return "TSi";
    case PayloadType::kTsr: return "TSr";
    case PayloadType::kSk: return "SK";
    case PayloadType::kCp: return "CP";
    case PayloadType::kEap: return "EAP";
    case PayloadType::kSkf: return "SKF";
  }
  return Unknown(type);
}

std::string NotifyName(NotifyType type) {
  return OrUnknown(KnownNotifyName(type), static_cast<unsigned>(type));
}

std::string ProtocolName(uint8_t protocol) {
  switch (protocol) {
    case 0: return "NONE";
    case static_cast<uint8_t>(ProtocolId::kIke): return "IKE";
    case static_cast<uint8_t>(ProtocolId::kAh): return "AH";
    case static_cast<uint8_t>(ProtocolId::kEsp): return "ESP";
  }
  return Unknown(protocol);
}

std::string TransformTypeName(TransformType type) {
  switch (type) {
    case TransformType::kEncr: return "ENCR";
    case TransformType::kPrf: return "PRF";
    case TransformType::kInteg: return "INTEG";
    case TransformType::kKe: return "KE";
    case TransformType::kEsn: return "ESN";
  }
  return Unknown(static_cast<unsigned>(type));
}

std::string TransformIdName(TransformType type, uint16_t id) {
  return OrUnknown(KnownTransformIdName(type, id), id);
}

std::string IdTypeName(IdType type) {
  switch (type) {
    case IdType::kIpv4Addr: return "ID_IPV4_ADDR";
    case IdType::kFqdn: return "ID_FQDN";
    case IdType::kRfc822Addr: return "ID_RFC822_ADDR";
    case IdType::kIpv6Addr: return "ID_IPV6_ADDR";
    case IdType::kDerAsn1Dn: return "ID_DER_ASN1_DN";
    case IdType::kDerAsn1Gn: return "ID_DER_ASN1_GN";
    case IdType::kKeyId: return "ID_KEY_ID";
    case IdType::kFcName: return "ID_FC_NAME";
    case IdType::kNull: return "ID_NULL";
  }
  return Unknown(static_cast<unsigned>(type));
}

std::string AuthMethodName(AuthMethod method) {
  switch (method) {
    case AuthMethod::kRsaSig: return "RSA_DIGITAL_SIGNATURE";
    case AuthMethod::kSharedKeyMic: return "SHARED_KEY_MIC";
    case AuthMethod::kDss: return "DSS_DIGITAL_SIGNATURE";
    case AuthMethod::kEcdsa256: return "ECDSA_SHA256_P256";
    case AuthMethod::kEcdsa384: return "ECDSA_SHA384_P384";
    case AuthMethod::kEcdsa521: return "ECDSA_SHA512_P521";
    case AuthMethod::kGenericSecurePassword: return "GENERIC_SECURE_PASSWORD";
    case AuthMethod::kNull: return "NULL_AUTH";
    case AuthMethod::kDigitalSignature: return "DIGITAL_SIGNATURE";
  }
  return Unknown(static_cast<unsigned>(method));
}

std::string CertEncodingName(CertEncoding encoding) {
  switch (encoding) {
    case CertEncoding::kPkcs7X509: return "PKCS7_X509";
    case CertEncoding::kPgp: return "PGP";
    case CertEncoding::kDnsSignedKey: return "DNS_SIGNED_KEY";
    case CertEncoding::kX509Signature: return "X509_SIGNATURE";
    case CertEncoding::kKerberos: return "KERBEROS";
    case CertEncoding::kCrl: return "CRL";
    case CertEncoding::kArl: return "ARL";
    case CertEncoding::kSpki: return "SPKI";
    case CertEncoding::kX509Attribute: return "X509_ATTRIBUTE";
    case CertEncoding::kRawRsaKey: return "RAW_RSA_KEY";
    case CertEncoding::kHashUrlX509: return "HASH_URL_X509";
    case CertEncoding::kHashUrlBundle: return "HASH_URL_BUNDLE";
    case CertEncoding::kOcspContent: return "OCSP_CONTENT";
    case CertEncoding::kRawPublicKey: return "RAW_PUBLIC_KEY";
  }
  return Unknown(static_cast<unsigned>(encoding));
}

std::string TsTypeName(TsType type) {
  switch (type) {
    case TsType::kIpv4AddrRange: return "TS_IPV4_ADDR_RANGE";
    case TsType::kIpv6AddrRange: return "TS_IPV6_ADDR_RANGE";
  }
  return Unknown(static_cast<unsigned>(type));
}

std::string CfgTypeName(CfgType type) {
  switch (type) {
    case CfgType::kRequest: return "CFG_REQUEST";
    case CfgType::kReply: return "CFG_REPLY";
    case CfgType::kSet: return "CFG_SET";
    case CfgType::kAck: return "CFG_ACK";
  }
  return Unknown(static_cast<unsigned>(type));
}

}  // namespace ike::wire
