#include "btns_api/pkcs11_key.h"

#include <cstdio>
#include <mutex>

namespace btns::client {
namespace {

using Bytes = std::vector<uint8_t>;

std::string Rv(const char* call, CK_RV rv) {
  char hex[32];
  std::snprintf(hex, sizeof hex, "0x%lx", static_cast<unsigned long>(rv));
  return std::string(call) + " failed with CKR " + hex;
}

// DER: tag, definite length, contents.
Bytes Tlv(uint8_t tag, const Bytes& body) {
  Bytes out{tag};
  size_t n = body.size();
  if (n < 128) {
    out.push_back(uint8_t(n));
  } else {
    Bytes len;
    for (; n; n >>= 8) len.insert(len.begin(), uint8_t(n));
    out.push_back(uint8_t(0x80 | len.size()));
    out.insert(out.end(), len.begin(), len.end());
  }
  out.insert(out.end(), body.begin(), body.end());
  return out;
}
Bytes Cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}
Bytes BitString(const Bytes& contents) {
  Bytes b{0};  // no unused bits
  b.insert(b.end(), contents.begin(), contents.end());
  return Tlv(0x03, b);
}
Bytes UnsignedInteger(Bytes v) {
  while (v.size() > 1 && v[0] == 0 && !(v[1] & 0x80)) v.erase(v.begin());
  if (v.empty() || (v[0] & 0x80)) v.insert(v.begin(), 0);
  return Tlv(0x02, v);
}
// CKA_EC_POINT is a DER OCTET STRING by the standard; some tokens give
// the bare point.
Bytes UnwrapOctetString(const Bytes& v) {
  if (v.size() < 2 || v[0] != 0x04) return v;
  size_t len = v[1], header = 2;
  if (len & 0x80) {
    size_t count = len & 0x7f;
    if (count == 0 || count > 2 || v.size() < 2 + count) return v;
    len = 0;
    for (size_t i = 0; i < count; ++i) len = len << 8 | v[2 + i];
    header = 2 + count;
  }
  if (header + len != v.size()) return v;
  return Bytes(v.begin() + long(header), v.end());
}

std::variant<Bytes, std::string> GetAttribute(const Pkcs11Key& k, CK_OBJECT_HANDLE object,
                                              CK_ATTRIBUTE_TYPE type, const char* name) {
  CK_ATTRIBUTE a{type, nullptr, 0};
  CK_RV rv = k.functions->C_GetAttributeValue(k.session, object, &a, 1);
  if (rv != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
    return Rv((std::string("C_GetAttributeValue(") + name + ")").c_str(), rv);
  Bytes value(a.ulValueLen);
  a.pValue = value.data();
  rv = k.functions->C_GetAttributeValue(k.session, object, &a, 1);
  if (rv != CKR_OK) return Rv((std::string("C_GetAttributeValue(") + name + ")").c_str(), rv);
  value.resize(a.ulValueLen);
  return value;
}

std::variant<CK_BBOOL, std::string> GetBool(const Pkcs11Key& k, CK_OBJECT_HANDLE object,
                                            CK_ATTRIBUTE_TYPE type, const char* name) {
  CK_BBOOL value = CK_FALSE;
  CK_ATTRIBUTE a{type, &value, sizeof value};
  CK_RV rv = k.functions->C_GetAttributeValue(k.session, object, &a, 1);
  if (rv != CKR_OK) return Rv((std::string("C_GetAttributeValue(") + name + ")").c_str(), rv);
  return value;
}

std::variant<std::vector<CK_OBJECT_HANDLE>, std::string> Find(const Pkcs11Key& k,
                                                             CK_ATTRIBUTE* tmpl,
                                                             CK_ULONG count) {
  CK_RV rv = k.functions->C_FindObjectsInit(k.session, tmpl, count);
  if (rv != CKR_OK) return Rv("C_FindObjectsInit", rv);
  std::vector<CK_OBJECT_HANDLE> found;
  CK_OBJECT_HANDLE batch[8];
  CK_ULONG n = 0;
  while ((rv = k.functions->C_FindObjects(k.session, batch, 8, &n)) == CKR_OK && n > 0)
    found.insert(found.end(), batch, batch + n);
  k.functions->C_FindObjectsFinal(k.session);
  if (rv != CKR_OK) return Rv("C_FindObjects", rv);
  return found;
}

const Bytes kOidEcPublicKey = {0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
const Bytes kOidEd25519 = {0x06, 0x03, 0x2b, 0x65, 0x70};
const Bytes kOidRsaEncryption = {0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
                                 0x0d, 0x01, 0x01, 0x01};

std::variant<Bytes, std::string> PublicKeyInfo(const Pkcs11Key& k, CK_OBJECT_HANDLE pub) {
  auto fail = [](std::string s) { return std::variant<Bytes, std::string>(std::move(s)); };
  if (k.key_type == CKK_EC || k.key_type == CKK_EC_EDWARDS) {
    auto point = GetAttribute(k, pub, CKA_EC_POINT, "CKA_EC_POINT");
    if (auto* e = std::get_if<std::string>(&point)) return fail(*e);
    Bytes raw = UnwrapOctetString(std::get<Bytes>(point));
    if (k.key_type == CKK_EC_EDWARDS) {
      if (raw.size() != 32) return fail("the EdDSA public key is not an Ed25519 key");
      return Tlv(0x30, Cat({Tlv(0x30, kOidEd25519), BitString(raw)}));
    }
    auto params = GetAttribute(k, pub, CKA_EC_PARAMS, "CKA_EC_PARAMS");
    if (auto* e = std::get_if<std::string>(&params)) return fail(*e);
    const Bytes& curve = std::get<Bytes>(params);
    if (curve.empty() || curve[0] != 0x06) return fail("the EC key's curve is not a named curve");
    return Tlv(0x30, Cat({Tlv(0x30, Cat({kOidEcPublicKey, curve})), BitString(raw)}));
  }
  auto modulus = GetAttribute(k, pub, CKA_MODULUS, "CKA_MODULUS");
  if (auto* e = std::get_if<std::string>(&modulus)) return fail(*e);
  auto exponent = GetAttribute(k, pub, CKA_PUBLIC_EXPONENT, "CKA_PUBLIC_EXPONENT");
  if (auto* e = std::get_if<std::string>(&exponent)) return fail(*e);
  Bytes rsa = Tlv(0x30, Cat({UnsignedInteger(std::get<Bytes>(modulus)),
                              UnsignedInteger(std::get<Bytes>(exponent))}));
  return Tlv(0x30, Cat({Tlv(0x30, Cat({kOidRsaEncryption, {0x05, 0x00}})), BitString(rsa)}));
}

std::mutex& TokenMutex() {  // a PKCS#11 session serves one call at a time
  static std::mutex m;
  return m;
}

}  // namespace

std::variant<Pkcs11Key, std::string> OpenPkcs11Key(CK_FUNCTION_LIST_PTR functions,
                                                   CK_SESSION_HANDLE session,
                                                   CK_OBJECT_HANDLE private_key) {
  if (!functions) return std::string("the PKCS#11 function list is NULL");
  std::lock_guard lock(TokenMutex());
  Pkcs11Key k;
  k.functions = functions;
  k.session = session;
  CK_SESSION_INFO info;
  if (CK_RV rv = functions->C_GetSessionInfo(session, &info); rv != CKR_OK)
    return Rv("C_GetSessionInfo", rv);
  if (private_key == 0) {
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_SIGN, &yes, sizeof yes}};
    auto found = Find(k, tmpl, 2);
    if (auto* e = std::get_if<std::string>(&found)) return *e;
    auto& list = std::get<std::vector<CK_OBJECT_HANDLE>>(found);
    if (list.size() != 1)
      return std::string("the session sees ") + std::to_string(list.size()) +
             " private signing keys; name one";
    private_key = list[0];
  }
  k.private_key = private_key;
  CK_OBJECT_CLASS cls = 0;
  CK_ATTRIBUTE ca{CKA_CLASS, &cls, sizeof cls};
  if (CK_RV rv = functions->C_GetAttributeValue(session, private_key, &ca, 1); rv != CKR_OK)
    return Rv("C_GetAttributeValue(CKA_CLASS)", rv);
  if (cls != CKO_PRIVATE_KEY) return std::string("the object is not a private key");
  CK_ATTRIBUTE ta{CKA_KEY_TYPE, &k.key_type, sizeof k.key_type};
  if (CK_RV rv = functions->C_GetAttributeValue(session, private_key, &ta, 1); rv != CKR_OK)
    return Rv("C_GetAttributeValue(CKA_KEY_TYPE)", rv);
  if (k.key_type != CKK_EC && k.key_type != CKK_EC_EDWARDS && k.key_type != CKK_RSA)
    return std::string("the key is neither EC, EdDSA nor RSA");
  // The key must stay in the token: sensitive and never extractable.
  auto sensitive = GetBool(k, private_key, CKA_SENSITIVE, "CKA_SENSITIVE");
  if (auto* e = std::get_if<std::string>(&sensitive)) return *e;
  auto extractable = GetBool(k, private_key, CKA_EXTRACTABLE, "CKA_EXTRACTABLE");
  if (auto* e = std::get_if<std::string>(&extractable)) return *e;
  auto can_sign = GetBool(k, private_key, CKA_SIGN, "CKA_SIGN");
  if (auto* e = std::get_if<std::string>(&can_sign)) return *e;
  if (!std::get<CK_BBOOL>(sensitive) || std::get<CK_BBOOL>(extractable))
    return std::string("the private key could leave its token (CKA_SENSITIVE false or "
                       "CKA_EXTRACTABLE true): refused");
  if (!std::get<CK_BBOOL>(can_sign)) return std::string("the key may not sign (CKA_SIGN false)");
  auto id = GetAttribute(k, private_key, CKA_ID, "CKA_ID");
  if (auto* e = std::get_if<std::string>(&id)) return *e;
  Bytes& id_value = std::get<Bytes>(id);
  CK_OBJECT_CLASS pub_class = CKO_PUBLIC_KEY;
  CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &pub_class, sizeof pub_class},
                         {CKA_ID, id_value.data(), CK_ULONG(id_value.size())}};
  auto found = Find(k, tmpl, 2);
  if (auto* e = std::get_if<std::string>(&found)) return *e;
  auto& list = std::get<std::vector<CK_OBJECT_HANDLE>>(found);
  if (list.empty()) return std::string("no public key object has the private key's CKA_ID");
  auto spki = PublicKeyInfo(k, list[0]);
  if (auto* e = std::get_if<std::string>(&spki)) return *e;
  k.spki_der = std::move(std::get<Bytes>(spki));
  return k;
}

std::variant<std::vector<uint8_t>, std::string> Pkcs11Sign(const Pkcs11Key& key,
                                                           const std::string& scheme,
                                                           const std::vector<uint8_t>& octets) {
  struct Scheme {
    const char* name;
    CK_KEY_TYPE key_type;
    CK_MECHANISM_TYPE digest;  // hashed first in the token, then signed
    CK_MECHANISM_TYPE sign;
  };
  static const Scheme kSchemes[] = {
      {"ecdsa-sha256", CKK_EC, CKM_SHA256, CKM_ECDSA},
      {"ecdsa-sha384", CKK_EC, CKM_SHA384, CKM_ECDSA},
      {"ecdsa-sha512", CKK_EC, CKM_SHA512, CKM_ECDSA},
      {"ed25519", CKK_EC_EDWARDS, 0, CKM_EDDSA},
      {"rsa-pkcs1-sha256", CKK_RSA, 0, CKM_SHA256_RSA_PKCS},
      {"rsa-pkcs1-sha384", CKK_RSA, 0, CKM_SHA384_RSA_PKCS},
      {"rsa-pkcs1-sha512", CKK_RSA, 0, CKM_SHA512_RSA_PKCS},
  };
  const Scheme* s = nullptr;
  for (const auto& candidate : kSchemes)
    if (scheme == candidate.name) s = &candidate;
  if (!s) return "unknown signature scheme '" + scheme + "'";
  if (s->key_type != key.key_type)
    return "the token's key cannot sign with '" + scheme + "'";
  std::lock_guard lock(TokenMutex());
  CK_FUNCTION_LIST_PTR f = key.functions;
  Bytes input = octets;
  if (s->digest) {
    CK_MECHANISM digest{s->digest, nullptr, 0};
    if (CK_RV rv = f->C_DigestInit(key.session, &digest); rv != CKR_OK)
      return Rv("C_DigestInit", rv);
    CK_ULONG len = 64;
    Bytes hash(len);
    if (CK_RV rv = f->C_Digest(key.session, input.data(), CK_ULONG(input.size()), hash.data(), &len);
        rv != CKR_OK)
      return Rv("C_Digest", rv);
    hash.resize(len);
    input = std::move(hash);
  }
  CK_MECHANISM mechanism{s->sign, nullptr, 0};
  if (CK_RV rv = f->C_SignInit(key.session, &mechanism, key.private_key); rv != CKR_OK)
    return Rv("C_SignInit", rv);
  CK_ULONG len = 0;
  if (CK_RV rv = f->C_Sign(key.session, input.data(), CK_ULONG(input.size()), nullptr, &len);
      rv != CKR_OK)
    return Rv("C_Sign", rv);
  Bytes signature(len);
  if (CK_RV rv = f->C_Sign(key.session, input.data(), CK_ULONG(input.size()), signature.data(), &len);
      rv != CKR_OK)
    return Rv("C_Sign", rv);
  signature.resize(len);
  return signature;
}

}  // namespace btns::client
