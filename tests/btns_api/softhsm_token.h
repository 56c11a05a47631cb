// A real SoftHSM2 token in a scratch folder (no root): a softhsm2.conf
// under `dir`, SOFTHSM2_CONF pointing at it, the module loaded through
// p11-kit, one token initialised and a user session logged in.
#pragma once

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <sys/stat.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>

namespace btns::testing {

constexpr char kSoftHsmModule[] = "/usr/lib/softhsm/libsofthsm2.so";

class SoftHsmToken {
 public:
  // Empty error(): ready. Otherwise what failed.
  explicit SoftHsmToken(const std::string& dir, const std::string& pin = "1234") {
    std::string tokens = dir + "/tokens";
    mkdir(dir.c_str(), 0700);
    mkdir(tokens.c_str(), 0700);
    std::ofstream(dir + "/softhsm2.conf")
        << "directories.tokendir = " << tokens << "\nobjectstore.backend = file\n"
        << "log.level = ERROR\n";
    setenv("SOFTHSM2_CONF", (dir + "/softhsm2.conf").c_str(), 1);
    module_ = p11_kit_module_load(kSoftHsmModule, 0);
    if (!module_) { Set(std::string("p11_kit_module_load: ") + p11_kit_message()); return; }
    if (p11_kit_module_initialize(module_) != CKR_OK) { Set("p11_kit_module_initialize"); return; }
    CK_SLOT_ID slots[8];
    CK_ULONG count = 8;
    if (module_->C_GetSlotList(CK_FALSE, slots, &count) != CKR_OK || count == 0)
      { Set("C_GetSlotList"); return; }
    CK_UTF8CHAR label[32];
    std::memset(label, ' ', sizeof label);
    std::memcpy(label, "btns-test", 9);
    auto* so_pin = reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>("5678"));
    auto* user_pin = reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(pin.c_str()));
    if (CK_RV rv = module_->C_InitToken(slots[0], so_pin, 4, label); rv != CKR_OK)
      { Set("C_InitToken " + std::to_string(rv)); return; }
    // SoftHSM moves an initialised token to a new slot: look again.
    count = 8;
    module_->C_GetSlotList(CK_TRUE, slots, &count);
    if (count == 0) { Set("no initialised token"); return; }
    slot_ = slots[0];
    CK_SESSION_HANDLE so;
    if (module_->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                               &so) != CKR_OK ||
        module_->C_Login(so, CKU_SO, so_pin, 4) != CKR_OK ||
        module_->C_InitPIN(so, user_pin, pin.size()) != CKR_OK)
      { Set("SO login / C_InitPIN"); return; }
    module_->C_Logout(so);
    module_->C_CloseSession(so);
    if (module_->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                               &session_) != CKR_OK ||
        module_->C_Login(session_, CKU_USER, user_pin, pin.size()) != CKR_OK)
      { Set("user login"); return; }
  }
  ~SoftHsmToken() {
    if (!module_) return;
    if (session_) module_->C_CloseSession(session_);
    p11_kit_module_finalize(module_);
    p11_kit_module_release(module_);
  }

  // A key pair made inside the token. `extractable`/`sensitive` as asked
  // (a well-kept key: false/true). Returns the private key, 0 on failure.
  CK_OBJECT_HANDLE GenerateP256(const std::string& id, bool extractable = false,
                                bool sensitive = true) {
    static const CK_BYTE kP256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    return Generate(id, CKM_EC_KEY_PAIR_GEN, kP256, sizeof kP256, extractable, sensitive);
  }
  CK_OBJECT_HANDLE GenerateEd25519(const std::string& id) {
    // PrintableString "edwards25519" (PKCS#11 3.0 accepts it or the OID).
    static const CK_BYTE kEd25519[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd',
                                       's',  '2',  '5', '5', '1', '9'};
    return Generate(id, CKM_EC_EDWARDS_KEY_PAIR_GEN, kEd25519, sizeof kEd25519, false, true);
  }

  CK_FUNCTION_LIST_PTR functions() const { return module_; }
  CK_SESSION_HANDLE session() const { return session_; }
  const std::string& error() const { return error_; }

 private:
  CK_OBJECT_HANDLE Generate(const std::string& id, CK_MECHANISM_TYPE mech_type,
                            const CK_BYTE* params, CK_ULONG params_len, bool extractable,
                            bool sensitive) {
    CK_MECHANISM mech{mech_type, nullptr, 0};
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_BBOOL ext = extractable ? CK_TRUE : CK_FALSE, sens = sensitive ? CK_TRUE : CK_FALSE;
    CK_ATTRIBUTE pub[] = {
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_VERIFY, &yes, sizeof yes},
        {CKA_EC_PARAMS, const_cast<CK_BYTE*>(params), params_len},
        {CKA_ID, const_cast<char*>(id.data()), CK_ULONG(id.size())},
    };
    CK_ATTRIBUTE priv[] = {
        {CKA_TOKEN, &yes, sizeof yes},       {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SIGN, &yes, sizeof yes},        {CKA_SENSITIVE, &sens, sizeof sens},
        {CKA_EXTRACTABLE, &ext, sizeof ext}, {CKA_ID, const_cast<char*>(id.data()), CK_ULONG(id.size())},
        {CKA_DERIVE, &no, sizeof no},
    };
    CK_OBJECT_HANDLE pub_handle = 0, priv_handle = 0;
    CK_RV rv = module_->C_GenerateKeyPair(session_, &mech, pub, 4, priv, 7, &pub_handle,
                                          &priv_handle);
    if (rv != CKR_OK) {
      error_ = "C_GenerateKeyPair " + std::to_string(rv);
      return 0;
    }
    return priv_handle;
  }
  void Set(std::string e) { error_ = std::move(e); }

  CK_FUNCTION_LIST_PTR module_ = nullptr;
  CK_SLOT_ID slot_ = 0;
  CK_SESSION_HANDLE session_ = 0;
  std::string error_;
};

}  // namespace btns::testing
