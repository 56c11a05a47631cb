/* The header and library used from C: token construction, attributes,
 * both forms of get_new_pToken, iToken export/import, and a clear failure
 * when the daemon is not there. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "btns/ipsec_api.h"

static int failures = 0;
#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) {                                                   \
      fprintf(stderr, "%s:%d: CHECK failed: %s (why: %s)\n", __FILE__, \
              __LINE__, #cond, ipsec_api_why());                     \
      ++failures;                                                    \
    }                                                                \
  } while (0)

int main(void) {
  ipsec_iToken_t bob = get_new_iToken("bob");
  CHECK(bob != NULL);
  char name[64];
  uint32_t len = sizeof name;
  CHECK(ipsec_get_token_attr(bob, IPSEC_API_ATTR_identity, &len, name) == 0);
  CHECK(strcmp(name, "fqdn:bob") == 0);
  CHECK(len == strlen("fqdn:bob") + 1);
  len = 3;
  CHECK(ipsec_get_token_attr(bob, IPSEC_API_ATTR_identity, &len, name) == -1);
  CHECK(errno == ERANGE && len == strlen("fqdn:bob") + 1);
  CHECK(get_new_iToken("") == NULL && errno == EINVAL);

  /* Two-argument and one-argument forms. */
  ipsec_pToken_t two = get_new_pToken(DEFAULT_INITIATOR_ITOKEN, bob);
  ipsec_pToken_t one = get_new_pToken(bob);
  CHECK(two != NULL && one != NULL);
  ipsec_iToken_t peer = ipsec_get_pToken_iToken(two);
  CHECK(peer != NULL && ipsec_cmp_iToken(peer, bob) == 0);
  CHECK(ipsec_get_pToken_iToken(one) == NULL && errno == ENOENT);
  ipsec_iToken_t local = NULL;
  len = sizeof local;
  CHECK(ipsec_get_token_attr(one, IPSEC_API_ATTR_remote_iToken, &len, &local) == 0);
  CHECK(local != NULL && ipsec_cmp_iToken(local, bob) == 0);

  /* Template attributes: 2-octet values, range-checked. */
  uint16_t on = IPSEC_API_ATTR_ENABLE, bad = 99, v = 0;
  CHECK(ipsec_set_token_attr(two, IPSEC_API_ATTR_privacyProtected, sizeof on, &on) == 0);
  len = sizeof v;
  CHECK(ipsec_get_token_attr(two, IPSEC_API_ATTR_privacyProtected, &len, &v) == 0);
  CHECK(v == IPSEC_API_ATTR_ENABLE);
  CHECK(ipsec_set_token_attr(two, IPSEC_API_ATTR_privacyProtected, sizeof bad, &bad) == -1);
  CHECK(ipsec_api_why_code() == IPSEC_API_WHY_BAD_ARGUMENT);
  CHECK(ipsec_set_token_attr(two, IPSEC_API_ATTR_auditString, 2, "x") == -1);
  CHECK(ipsec_set_token_attr(bob, IPSEC_API_ATTR_pubKeyID, 2, "x") == -1);
  CHECK(ipsec_set_token_attr(two, IPSEC_API_ATTR_policyName, 7, "secure") == 0);
  ipsec_pToken_t copy = NULL;
  CHECK(ipsec_dup_pToken(two, &copy) == 0 && copy != NULL);
  len = sizeof name;
  CHECK(ipsec_get_token_attr(copy, IPSEC_API_ATTR_policyName, &len, name) == 0);
  CHECK(strcmp(name, "secure") == 0);

  /* Export and import keep the identity; garbage is refused. */
  unsigned char blob[256];
  len = sizeof blob;
  CHECK(ipsec_export_iToken(bob, blob, &len) == 0);
  ipsec_iToken_t back = ipsec_import_iToken(blob, len);
  CHECK(back != NULL && ipsec_cmp_iToken(back, bob) == 0);
  blob[0] ^= 0xff;
  CHECK(ipsec_import_iToken(blob, len) == NULL && errno == EINVAL);
  ipsec_iToken_t carol = get_new_iToken("email:carol@example.com");
  CHECK(ipsec_cmp_iToken(carol, bob) != 0);

  /* No daemon at the endpoint: a failure with a reason, not a hang. */
  CHECK(ipsec_api_set_endpoint("/nonexistent/btnsd/api.sock") == 0);
  ipsec_pToken_t p = ipsec_create_pToken();
  CHECK(ipsec_get_socket_pToken(0, p) == -1);
  CHECK(ipsec_api_why_code() == IPSEC_API_WHY_DAEMON_UNAVAILABLE);
  CHECK(strstr(ipsec_api_why(), "/nonexistent/btnsd/api.sock") != NULL);
  CHECK(strstr(ipsec_channel_binding_hashes(), "SHA-256") != NULL);

  CHECK(ipsec_free_pToken(p) == 0 && ipsec_free_pToken(copy) == 0);
  CHECK(ipsec_free_pToken(two) == 0 && ipsec_free_pToken(one) == 0);
  CHECK(ipsec_free_iToken(peer) == 0 && ipsec_free_iToken(local) == 0);
  CHECK(ipsec_free_iToken(back) == 0 && ipsec_free_iToken(carol) == 0);
  CHECK(ipsec_free_iToken(bob) == 0);
  if (failures == 0) printf("c_api_test: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
