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

int uc_connect_or_report(int fd, const struct sockaddr_in *address, int seconds,
                         const char *label) {
  if (uc_connect(fd, address, seconds) == 0) return UC_PASS;
  const int connect_errno = errno;
  /* A refused connection has no pToken: the failed query leaves the
     daemon's reason in ipsec_api_why() (until the next API call). */
  ipsec_pToken_t seen = ipsec_create_pToken();
  int status = UC_REFUSED;
  if (ipsec_get_socket_pToken(fd, seen) == 0) {
    printf("%s FAIL connect: %s, and the daemon names no reason\n", label,
           strerror(connect_errno));
    status = UC_FAIL;
  } else {
    printf("%s REFUSED connect: %s; why=%d %s\n", label, strerror(connect_errno),
           ipsec_api_why_code(), ipsec_api_why());
  }
  ipsec_free_pToken(seen);
  return status;
}

int uc_echo(int fd, const char *hello, const char *label) {
  const size_t hello_len = strlen(hello);
  char line[256];
  if (hello_len > sizeof line || write(fd, hello, hello_len) != (ssize_t)hello_len ||
      read(fd, line, sizeof line) != (ssize_t)hello_len) {
    printf("%s FAIL no echo\n", label);
    return UC_FAIL;
  }
  return UC_PASS;
}

int uc_connection_view(int fd, struct uc_view *view) {
  memset(view, 0, sizeof *view);
  ipsec_pToken_t seen = ipsec_create_pToken();
  if (ipsec_get_socket_pToken(fd, seen) != 0 ||
      uc_peer_of(seen, view->peer, sizeof view->peer, &view->peer_method) != 0) {
    uc_print_why("ipsec_get_socket_pToken");
    ipsec_free_pToken(seen);
    return -1;
  }
  ipsec_iToken_t local = NULL;
  uint32_t len = sizeof local;
  if (ipsec_get_token_attr(seen, IPSEC_API_ATTR_remote_iToken, &len, &local) == 0 && local) {
    if (uc_identity(local, view->me, sizeof view->me, &view->my_method) != 0) view->me[0] = '\0';
    ipsec_free_iToken(local);
  }
  ipsec_free_pToken(seen);
  return 0;
}

int uc_connect_and_check(int fd, const struct sockaddr_in *address, const char *label,
                         const char *hello, const ipsec_iToken_t presented,
                         const ipsec_iToken_t wanted_peer) {
  int status = uc_connect_or_report(fd, address, 20, label);
  if (status != UC_PASS) return status;
  if (uc_echo(fd, hello, label) != UC_PASS) return UC_FAIL;
  /* Who answered, and who we were to it. */
  struct uc_view view;
  if (uc_connection_view(fd, &view) != 0) return UC_FAIL;
  if (!view.me[0]) {
    printf("%s FAIL the pToken names no local identity\n", label);
    return UC_FAIL;
  }
  char wanted_me[256];
  uc_identity(presented, wanted_me, sizeof wanted_me, NULL);
  if (strcmp(view.me, wanted_me) != 0) {
    printf("%s FAIL presented %s, not %s\n", label, view.me, wanted_me);
    return UC_FAIL;
  }
  if (wanted_peer) {
    char wanted[256];
    uc_identity(wanted_peer, wanted, sizeof wanted, NULL);
    if (strcmp(view.peer, wanted) != 0) {
      printf("%s FAIL reached %s, wanted %s\n", label, view.peer, wanted);
      return UC_FAIL;
    }
  }
  printf("%s PASS reached %s (method %u) as %s (method %u)\n", label, view.peer,
         view.peer_method, view.me, view.my_method);
  close(fd);
  return UC_PASS;
}
