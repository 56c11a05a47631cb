#include "tests/apps/uc_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int uc_address(const char *host, const char *port, struct sockaddr_in *out) {
  memset(out, 0, sizeof *out);
  out->sin_family = AF_INET;
  char *end = NULL;
  const long number = strtol(port, &end, 10);
  if (inet_pton(AF_INET, host, &out->sin_addr) != 1 || *end != '\0' ||
      number <= 0 || number > 65535)
    return -1;
  out->sin_port = htons((uint16_t)number);
  return 0;
}

int uc_identity(const ipsec_iToken_t itoken, char *identity, size_t size,
                uint16_t *method) {
  uint32_t len = (uint32_t)size - 1;
  if (ipsec_get_token_attr(itoken, IPSEC_API_ATTR_identity, &len, identity) != 0)
    return -1;
  identity[len < size ? len : size - 1] = '\0';
  uint16_t value = 0;
  uint32_t value_len = sizeof value;
  if (ipsec_get_token_attr(itoken, IPSEC_API_ATTR_authenticationMethod,
                           &value_len, &value) != 0)
    value = 0;
  if (method) *method = value;
  return identity[0] ? 0 : -1;
}

int uc_peer_of(const ipsec_pToken_t ptoken, char *identity, size_t size,
               uint16_t *method) {
  ipsec_iToken_t peer = ipsec_get_pToken_iToken(ptoken);
  if (!peer) return -1;
  const int status = uc_identity(peer, identity, size, method);
  ipsec_free_iToken(peer);
  return status;
}

int uc_peer_key_of(const ipsec_pToken_t ptoken, char *text, size_t size) {
  ipsec_iToken_t peer = ipsec_get_pToken_iToken(ptoken);
  if (!peer) return -1;
  uint8_t key_id[32];
  uint32_t len = sizeof key_id;
  const int status = ipsec_get_token_attr(peer, IPSEC_API_ATTR_pubKeyID, &len, key_id);
  ipsec_free_iToken(peer);
  if (status != 0 || len != sizeof key_id || size < 7 + 2 * sizeof key_id + 1) return -1;
  strcpy(text, "sha256:");
  for (size_t i = 0; i < sizeof key_id; ++i) sprintf(text + 7 + 2 * i, "%02x", key_id[i]);
  return 0;
}

void uc_print_why(const char *call) {
  printf("%s failed: errno=%d why=%d %s\n", call, errno, ipsec_api_why_code(),
         ipsec_api_why());
}

int uc_connect(int fd, const struct sockaddr_in *address, int seconds) {
  const time_t deadline = time(NULL) + seconds;
  for (;;) {
    if (connect(fd, (const struct sockaddr *)address, sizeof *address) == 0) return 0;
    if (errno != EAGAIN || time(NULL) >= deadline) return -1;
    usleep(100 * 1000);
  }
}

int uc_connect_and_check(int fd, const struct sockaddr_in *address, const char *label,
                         const char *hello, const ipsec_iToken_t presented,
                         const ipsec_iToken_t wanted_peer) {
  if (uc_connect(fd, address, 20) != 0) {
    const int connect_errno = errno;
    ipsec_pToken_t seen = ipsec_create_pToken();
    if (ipsec_get_socket_pToken(fd, seen) == 0) {
      printf("%s FAIL connect: %s, and the daemon names no reason\n", label,
             strerror(connect_errno));
      return UC_FAIL;
    }
    printf("%s REFUSED connect: %s; why=%d %s\n", label, strerror(connect_errno),
           ipsec_api_why_code(), ipsec_api_why());
    return UC_REFUSED;
  }
  const size_t hello_len = strlen(hello);
  char line[64];
  if (write(fd, hello, hello_len) != (ssize_t)hello_len) return UC_FAIL;
  ssize_t n = read(fd, line, sizeof line);
  if (n != (ssize_t)hello_len) {
    printf("%s FAIL no echo\n", label);
    return UC_FAIL;
  }
  /* Get pToken from fd, get iToken from pToken: who answered, and who we
     were to it. */
  ipsec_pToken_t seen = ipsec_create_pToken();
  char peer[256], me[256], wanted_me[256];
  uint16_t method = 0, my_method = 0;
  ipsec_iToken_t local = NULL;
  uint32_t len = sizeof local;
  if (ipsec_get_socket_pToken(fd, seen) != 0 ||
      uc_peer_of(seen, peer, sizeof peer, &method) != 0 ||
      ipsec_get_token_attr(seen, IPSEC_API_ATTR_remote_iToken, &len, &local) != 0 ||
      uc_identity(local, me, sizeof me, &my_method) != 0) {
    uc_print_why("ipsec_get_socket_pToken");
    return UC_FAIL;
  }
  uc_identity(presented, wanted_me, sizeof wanted_me, NULL);
  if (strcmp(me, wanted_me) != 0) {
    printf("%s FAIL presented %s, not %s\n", label, me, wanted_me);
    return UC_FAIL;
  }
  if (wanted_peer) {
    char wanted[256];
    uc_identity(wanted_peer, wanted, sizeof wanted, NULL);
    if (strcmp(peer, wanted) != 0) {
      printf("%s FAIL reached %s, wanted %s\n", label, peer, wanted);
      return UC_FAIL;
    }
  }
  printf("%s PASS reached %s (method %u) as %s (method %u)\n", label, peer, method, me,
         my_method);
  ipsec_free_iToken(local);
  close(fd);
  return UC_PASS;
}
