/* Use case 3 (initiator only): the application brings its own identity and
 * credential, a signing key in a PKCS#11 token that never leaves it.
 *
 *   desired_acceptor_iToken = get_new_iToken("bob");
 *   i_iToken = get_new_iToken("alice");
 *   ipsec_set_iToken_attr(i_iToken, IPSEC_BTNS_CREDENTIAL,
 *                         pkcs11_session, sizeof(pkcs11_session));
 *   pToken = get_new_pToken(i_iToken, desired_acceptor_iToken);
 *   set pToken on fd; connect(2)  (EAGAIN while IKE runs: call it again)
 *
 * (The slides name the first argument desired_initiator_cToken and the
 * second i_iToken; by their own comments, "who am I" and "who I want to
 * talk to", the first is the application's iToken and the second the
 * acceptor's.) The token is opened the way an application would: the
 * module with dlopen() and C_GetFunctionList(), the token by its label,
 * a user login with the PIN, the private key by its CKA_LABEL.
 *
 *   uc3 HOST PORT WANTED_PEER MY_NAME MODULE TOKEN_LABEL PIN KEY_LABEL [logout]
 *
 * WANTED_PEER "-" asks for no particular acceptor (get_new_pToken(i_iToken)).
 * "logout" logs out of the token after setting the credential and before
 * connect(2), so the token refuses to sign: the daemon's reason is read.
 * Exit 0 (PASS) when the connection reached the peer, presenting MY_NAME,
 * and a line made the round trip; exit 3 (REFUSED) when connect() failed
 * and the daemon says why (the line then prints the reason). */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#include "tests/apps/uc_common.h"

/* The token's session and key, as the application opens them. */
static int open_key(const char *module_path, const char *token_label, const char *pin,
                    const char *key_label, struct ipsec_pkcs11_credential *out) {
  void *module = dlopen(module_path, RTLD_NOW | RTLD_LOCAL);
  if (!module) {
    printf("UC3 FAIL dlopen %s: %s\n", module_path, dlerror());
    return -1;
  }
  CK_C_GetFunctionList get_list = (CK_C_GetFunctionList)dlsym(module, "C_GetFunctionList");
  CK_FUNCTION_LIST_PTR p11 = NULL;
  if (!get_list || get_list(&p11) != CKR_OK || p11->C_Initialize(NULL) != CKR_OK) {
    printf("UC3 FAIL %s is not a usable PKCS#11 module\n", module_path);
    return -1;
  }
  CK_SLOT_ID slots[16];
  CK_ULONG count = 16;
  if (p11->C_GetSlotList(CK_TRUE, slots, &count) != CKR_OK) count = 0;
  CK_SLOT_ID slot = 0;
  int found = 0;
  for (CK_ULONG i = 0; i < count && !found; ++i) {
    CK_TOKEN_INFO info;
    if (p11->C_GetTokenInfo(slots[i], &info) != CKR_OK) continue;
    size_t n = strlen(token_label);
    found = n <= sizeof info.label && memcmp(info.label, token_label, n) == 0 &&
            (n == sizeof info.label || info.label[n] == ' ');
    if (found) slot = slots[i];
  }
  if (!found) {
    printf("UC3 FAIL no token labelled '%s'\n", token_label);
    return -1;
  }
  CK_SESSION_HANDLE session;
  if (p11->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &session) != CKR_OK ||
      p11->C_Login(session, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)) != CKR_OK) {
    printf("UC3 FAIL cannot log in to token '%s'\n", token_label);
    return -1;
  }
  CK_OBJECT_CLASS private_class = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE query[] = {
      {CKA_CLASS, &private_class, sizeof private_class},
      {CKA_LABEL, (void *)key_label, strlen(key_label)},
  };
  CK_OBJECT_HANDLE key = 0;
  CK_ULONG keys = 0;
  if (p11->C_FindObjectsInit(session, query, 2) != CKR_OK ||
      p11->C_FindObjects(session, &key, 1, &keys) != CKR_OK ||
      p11->C_FindObjectsFinal(session) != CKR_OK || keys != 1) {
    printf("UC3 FAIL no private key labelled '%s'\n", key_label);
    return -1;
  }
  out->functions = p11;
  out->session = session;
  out->private_key = key;
  return 0;
}

int main(int argc, char **argv) {
  struct sockaddr_in address;
  const int logout = argc == 10 && strcmp(argv[9], "logout") == 0;
  if ((argc != 9 && !logout) || uc_address(argv[1], argv[2], &address) != 0) {
    fprintf(stderr,
            "usage: uc3 HOST PORT WANTED_PEER MY_NAME MODULE TOKEN_LABEL PIN KEY_LABEL "
            "[logout]\n");
    return UC_USAGE;
  }
  struct ipsec_pkcs11_credential pkcs11_session;
  if (open_key(argv[5], argv[6], argv[7], argv[8], &pkcs11_session) != 0) return UC_FAIL;

  const int any_acceptor = strcmp(argv[3], "-") == 0;
  ipsec_iToken_t desired_acceptor_iToken = any_acceptor ? NULL : get_new_iToken(argv[3]);
  ipsec_iToken_t i_iToken = get_new_iToken(argv[4]);
  if (!i_iToken || (!any_acceptor && !desired_acceptor_iToken)) {
    uc_print_why("get_new_iToken");
    return UC_FAIL;
  }
  if (ipsec_set_iToken_attr(i_iToken, IPSEC_BTNS_CREDENTIAL, &pkcs11_session,
                            sizeof(pkcs11_session)) != 0) {
    uc_print_why("ipsec_set_iToken_attr");
    printf("UC3 FAIL the library did not take the token's key\n");
    return UC_FAIL;
  }
  ipsec_pToken_t pToken = any_acceptor
                              ? get_new_pToken(i_iToken)
                              : get_new_pToken(i_iToken, desired_acceptor_iToken);
  if (!pToken) {
    uc_print_why("get_new_pToken");
    return UC_FAIL;
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (ipsec_set_socket_pToken(fd, pToken) != 0) {
    uc_print_why("ipsec_set_socket_pToken");
    printf("UC3 FAIL the daemon did not take the pToken\n");
    return UC_FAIL;
  }
  if (logout) {
    CK_FUNCTION_LIST_PTR p11 = (CK_FUNCTION_LIST_PTR)pkcs11_session.functions;
    if (p11->C_Logout(pkcs11_session.session) != CKR_OK) {
      printf("UC3 FAIL C_Logout\n");
      return UC_FAIL;
    }
  }
  return uc_connect_and_check(fd, &address, "UC3", "uc3 hello\n", i_iToken,
                              any_acceptor ? NULL : desired_acceptor_iToken);
}
