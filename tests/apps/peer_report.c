#include "tests/apps/peer_report.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <btns/ipsec_api.h>

static const char *yes_no(uint16_t flag) {
  switch (flag) {
    case IPSEC_API_ATTR_ENABLE: return "yes";
    case IPSEC_API_ATTR_DISABLE: return "no";
    default: return "any";
  }
}

static const char *auth_name(uint16_t method) {
  switch (method) {
    case IPSEC_API_ATTR_authMeth_NONE: return "null";
    case IPSEC_API_ATTR_authMeth_BTNS: return "raw-key";
    case IPSEC_API_ATTR_authMeth_LEAPOFFAITH: return "pinned-key";
    case IPSEC_API_ATTR_authMeth_PRESHAREDKEY: return "psk";
    case IPSEC_API_ATTR_authMeth_PKIX_INLINE:
    case IPSEC_API_ATTR_authMeth_PKIX_TRUSTED: return "certificate";
    default: return "unknown";
  }
}

static const char *latch_name(uint32_t state) {
  switch (state) {
    case IPSEC_LATCH_NONE: return "none";
    case IPSEC_LATCH_LISTENER: return "listener";
    case IPSEC_LATCH_ESTABLISHED: return "established";
    case IPSEC_LATCH_BROKEN: return "broken";
    case IPSEC_LATCH_CLOSED: return "closed";
    default: return "unknown";
  }
}

/* A string attribute, or "(none)" when the token does not have it. */
static void print_string(const char *label, const void *token, uint32_t attr) {
  char value[512];
  uint32_t len = sizeof value;
  if (ipsec_get_token_attr(token, attr, &len, value) == 0 && len > 0) {
    value[len < sizeof value ? len : sizeof value - 1] = '\0';
    printf("%s: %s\n", label, value);
  } else {
    printf("%s: (none)\n", label);
  }
}

static uint16_t get_u16(const void *token, uint32_t attr) {
  uint16_t value = 0;
  uint32_t len = sizeof value;
  if (ipsec_get_token_attr(token, attr, &len, &value) != 0) return 0;
  return value;
}

int btns_print_peer(int fd) {
  ipsec_pToken_t ptoken = ipsec_create_pToken();
  if (ptoken == NULL || ipsec_get_socket_pToken(fd, ptoken) != 0) {
    printf("ptoken: error (%s; %s)\n", strerror(errno), ipsec_api_why());
    if (ptoken != NULL) ipsec_free_pToken(ptoken);
    return -1;
  }
  uint32_t latch = 0;
  uint32_t len = sizeof latch;
  if (ipsec_get_token_attr(ptoken, IPSEC_API_ATTR_latchState, &len, &latch) != 0)
    latch = IPSEC_LATCH_NONE;
  printf("latch: %s\n", latch_name(latch));
  printf("privacy: %s\n", yes_no(get_u16(ptoken, IPSEC_API_ATTR_privacyProtected)));
  printf("integrity: %s\n",
         yes_no(get_u16(ptoken, IPSEC_API_ATTR_integrityProtected)));
  printf("tunnel: %s\n", yes_no(get_u16(ptoken, IPSEC_API_ATTR_tunnelMode)));
  print_string("policy", ptoken, IPSEC_API_ATTR_policyName);
  print_string("algorithms", ptoken, IPSEC_API_ATTR_algorithms);
  print_string("audit", ptoken, IPSEC_API_ATTR_auditString);

  ipsec_iToken_t peer = ipsec_get_pToken_iToken(ptoken);
  if (peer == NULL) {
    printf("peer-auth: (none)\npeer-id: (none)\npeer-key: (none)\n");
  } else {
    printf("peer-auth: %s\n",
           auth_name(get_u16(peer, IPSEC_API_ATTR_authenticationMethod)));
    print_string("peer-id", peer, IPSEC_API_ATTR_identity);
    unsigned char key[32];
    len = sizeof key;
    if (ipsec_get_token_attr(peer, IPSEC_API_ATTR_pubKeyID, &len, key) == 0 &&
        len == sizeof key) {
      printf("peer-key: sha256:");
      for (size_t i = 0; i < sizeof key; ++i) printf("%02x", key[i]);
      printf("\n");
    } else {
      printf("peer-key: (none)\n");
    }
    print_string("peer-audit", peer, IPSEC_API_ATTR_auditString);
    ipsec_free_iToken(peer);
  }
  ipsec_free_pToken(ptoken);
  fflush(stdout);
  return 0;
}
