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
  return uc_connect_and_check(fd, &address, "UC4", "uc4 hello\n", a_iToken, wanted_peer);
}
