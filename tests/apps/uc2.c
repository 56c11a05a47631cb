/* Use case 2 (initiator only): the application names the acceptor it wants
 * before connect(2); its own identity comes from system policy.
 *
 *   desired_acceptor_iToken = get_new_iToken("bob");
 *   pToken = get_new_pToken(DEFAULT_INITIATOR_ITOKEN, desired_acceptor_iToken);
 *   set pToken on fd; connect(2)  (EAGAIN while IKE runs: call it again)
 *
 *   uc2 HOST PORT WANTED_PEER
 *
 * Exit 0 (PASS) when the connection reached WANTED_PEER and a line made the
 * round trip; exit 3 (REFUSED) when connect() failed and the daemon says
 * why (the host at HOST is someone else): the line then prints the reason. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/apps/uc_common.h"

int main(int argc, char **argv) {
  struct sockaddr_in address;
  if (argc != 4 || uc_address(argv[1], argv[2], &address) != 0) {
    fprintf(stderr, "usage: uc2 HOST PORT WANTED_PEER\n");
    return UC_USAGE;
  }
  ipsec_iToken_t desired_acceptor_iToken = get_new_iToken(argv[3]);
  ipsec_pToken_t pToken =
      get_new_pToken(DEFAULT_INITIATOR_ITOKEN, desired_acceptor_iToken);
  if (!desired_acceptor_iToken || !pToken) {
    uc_print_why("get_new_pToken");
    return UC_FAIL;
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (ipsec_set_socket_pToken(fd, pToken) != 0) {
    uc_print_why("ipsec_set_socket_pToken");
    printf("UC2 FAIL the daemon did not take the pToken\n");
    return UC_FAIL;
  }
  const int status = uc_connect_or_report(fd, &address, 15, "UC2");
  if (status != UC_PASS) return status;
  if (uc_echo(fd, "uc2 hello\n", "UC2") != UC_PASS) return UC_FAIL;
  struct uc_view view;
  if (uc_connection_view(fd, &view) != 0) return UC_FAIL;
  char wanted[256];
  uc_identity(desired_acceptor_iToken, wanted, sizeof wanted, NULL);
  if (strcmp(view.peer, wanted) != 0) {
    printf("UC2 FAIL reached %s, wanted %s\n", view.peer, wanted);
    return UC_FAIL;
  }
  printf("UC2 PASS reached %s (method %u)\n", view.peer, view.peer_method);
  close(fd);
  return UC_PASS;
}
