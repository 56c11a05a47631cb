/* Use case 4 with a credential file: the application names its identity and
 * the file holding its key, and its connection is protected by an IKE SA
 * that presents them.
 *
 *   a_iToken = get_new_iToken("bob");
 *   char *f = "$HOME/keys/myipseckey.pem";
 *   ipsec_set_iToken_attr(a_iToken, IPSEC_BTNS_CREDENTIAL_FILE, f, strlen(f)+1);
 *   pToken = get_new_pToken(a_iToken);
 *   set pToken on fd
 *   get pToken from fd, get iToken from pToken (use case 1's steps 2 and 3)
 *
 * The slides set it on an accept(2)ing socket. btnsd takes a credential
 * file only before connect(2): a responder presents the identity its PAD
 * entry names before it knows which listener the traffic is for, so a
 * listener with a credential file is refused (NOT_SUPPORTED). This program
 * is therefore the initiator: the same calls, then connect(2) (EAGAIN while
 * IKE runs: call it again), then the peer's view of the connection.
 *
 *   uc4 HOST PORT MY_NAME KEY_FILE [WANTED_PEER]
 *
 * Exit 0 (PASS) when the connection came up presenting MY_NAME (and reached
 * WANTED_PEER if given) and a line made the round trip; exit 3 (REFUSED)
 * when connect() failed and the daemon says why. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/apps/uc_common.h"

int main(int argc, char **argv) {
  struct sockaddr_in address;
  if ((argc != 5 && argc != 6) || uc_address(argv[1], argv[2], &address) != 0) {
    fprintf(stderr, "usage: uc4 HOST PORT MY_NAME KEY_FILE [WANTED_PEER]\n");
    return UC_USAGE;
  }
  ipsec_iToken_t a_iToken = get_new_iToken(argv[3]);
  char *f = argv[4];
  if (!a_iToken ||
      ipsec_set_iToken_attr(a_iToken, IPSEC_BTNS_CREDENTIAL_FILE, f, strlen(f) + 1) != 0) {
    uc_print_why("ipsec_set_iToken_attr");
    printf("UC4 FAIL the library did not take the credential file\n");
    return UC_FAIL;
  }
  ipsec_iToken_t wanted_peer = argc == 6 ? get_new_iToken(argv[5]) : NULL;
  ipsec_pToken_t pToken =
      wanted_peer ? get_new_pToken(a_iToken, wanted_peer) : get_new_pToken(a_iToken);
  if (!pToken) {
    uc_print_why("get_new_pToken");
    return UC_FAIL;
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (ipsec_set_socket_pToken(fd, pToken) != 0) {
    uc_print_why("ipsec_set_socket_pToken");
    printf("UC4 FAIL the daemon did not take the pToken\n");
    return UC_FAIL;
  }
  if (uc_connect(fd, &address, 20) != 0) {
    const int connect_errno = errno;
    ipsec_pToken_t seen = ipsec_create_pToken();
    if (ipsec_get_socket_pToken(fd, seen) == 0) {
      printf("UC4 FAIL connect: %s, and the daemon names no reason\n",
             strerror(connect_errno));
      return UC_FAIL;
    }
    printf("UC4 REFUSED connect: %s; why=%d %s\n", strerror(connect_errno),
           ipsec_api_why_code(), ipsec_api_why());
    return UC_REFUSED;
  }
  const char hello[] = "uc4 hello\n";
  char line[64];
  if (write(fd, hello, sizeof hello - 1) != (ssize_t)(sizeof hello - 1)) return UC_FAIL;
  ssize_t n = read(fd, line, sizeof line);
  if (n != (ssize_t)(sizeof hello - 1)) {
    printf("UC4 FAIL no echo\n");
    return UC_FAIL;
  }
  /* Get pToken from fd, get iToken from pToken; and who we were to it. */
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
  uc_identity(a_iToken, wanted_me, sizeof wanted_me, NULL);
  if (strcmp(me, wanted_me) != 0) {
    printf("UC4 FAIL presented %s, not %s\n", me, wanted_me);
    return UC_FAIL;
  }
  if (wanted_peer) {
    char wanted[256];
    uc_identity(wanted_peer, wanted, sizeof wanted, NULL);
    if (strcmp(peer, wanted) != 0) {
      printf("UC4 FAIL reached %s, wanted %s\n", peer, wanted);
      return UC_FAIL;
    }
  }
  printf("UC4 PASS reached %s (method %u) as %s (method %u)\n", peer, method, me,
         my_method);
  ipsec_free_iToken(local);
  close(fd);
  return UC_PASS;
}
