/* A configured local identity chosen by name (use case 3 without a
 * credential: the daemon holds the key):
 *
 *   i_iToken = get_new_iToken("alice");
 *   pToken = get_new_pToken(i_iToken, get_new_iToken(WANTED_PEER));
 *   set pToken on fd; connect(2)
 *
 *   uc_identity HOST PORT LOCAL_NAME WANTED_PEER [HOLD_SECONDS]
 *
 * Exit 0 (PASS) when a line made the round trip to WANTED_PEER; the
 * connection is kept HOLD_SECONDS (default 0) after "UCI PASS" is printed,
 * then closed. Exit 3 (REFUSED) when the daemon refused, with its reason
 * (not allowed to present LOCAL_NAME, or the peer did not accept it). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/apps/uc_common.h"

int main(int argc, char **argv) {
  struct sockaddr_in address;
  if ((argc != 5 && argc != 6) || uc_address(argv[1], argv[2], &address) != 0) {
    fprintf(stderr, "usage: uc_identity HOST PORT LOCAL_NAME WANTED_PEER [HOLD_SECONDS]\n");
    return UC_USAGE;
  }
  const int hold = argc == 6 ? atoi(argv[5]) : 0;
  ipsec_iToken_t i_iToken = get_new_iToken(argv[3]);
  ipsec_iToken_t desired_acceptor_iToken = get_new_iToken(argv[4]);
  ipsec_pToken_t pToken = get_new_pToken(i_iToken, desired_acceptor_iToken);
  if (!i_iToken || !desired_acceptor_iToken || !pToken) {
    uc_print_why("get_new_pToken");
    return UC_FAIL;
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (ipsec_set_socket_pToken(fd, pToken) != 0) {
    printf("UCI REFUSED ipsec_set_socket_pToken: %s; why=%d %s\n", strerror(errno),
           ipsec_api_why_code(), ipsec_api_why());
    return UC_REFUSED;
  }
  const int status = uc_connect_or_report(fd, &address, 20, "UCI");
  if (status != UC_PASS) return status;
  if (uc_echo(fd, "identity hello\n", "UCI") != UC_PASS) return UC_FAIL;
  struct uc_view view;
  if (uc_connection_view(fd, &view) != 0) return UC_FAIL;
  printf("UCI PASS reached %s presenting %s\n", view.peer, view.me);
  fflush(stdout);
  sleep((unsigned)hold);
  close(fd);
  return UC_PASS;
}
