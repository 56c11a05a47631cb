/* Connection latching (RFC 5660) seen by an application: a UC2 connection
 * to WANTED_PEER, a round trip, then a subscription to its latch. The
 * program prints "latched" and waits for an event; on BROKEN it prints it,
 * writes one more line (which must not reach anyone: the socket is bound to
 * the SA it latched on) and exits 0.
 *
 *   uc_latch HOST PORT WANTED_PEER [SECONDS]
 *
 * Exit 1 when no BROKEN event came within SECONDS (default 60). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/apps/uc_common.h"

int main(int argc, char **argv) {
  struct sockaddr_in address;
  if ((argc != 4 && argc != 5) || uc_address(argv[1], argv[2], &address) != 0) {
    fprintf(stderr, "usage: uc_latch HOST PORT WANTED_PEER [SECONDS]\n");
    return UC_USAGE;
  }
  const int seconds = argc == 5 ? atoi(argv[4]) : 60;
  ipsec_pToken_t pToken =
      get_new_pToken(DEFAULT_INITIATOR_ITOKEN, get_new_iToken(argv[3]));
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (ipsec_set_socket_pToken(fd, pToken) != 0 ||
      uc_connect(fd, &address, 15) != 0) {
    printf("LATCH FAIL connect: %s; why=%d %s\n", strerror(errno),
           ipsec_api_why_code(), ipsec_api_why());
    return UC_FAIL;
  }
  if (uc_echo(fd, "latch hello\n", "LATCH") != UC_PASS) return UC_FAIL;
  uint64_t latch_id = 0;
  if (ipsec_subscribe_latch(fd, &latch_id) != 0) {
    uc_print_why("ipsec_subscribe_latch");
    return UC_FAIL;
  }
  printf("latched: id %llu\n", (unsigned long long)latch_id);
  fflush(stdout);
  struct ipsec_latch_event event;
  for (int waited = 0; waited < seconds; ++waited) {
    if (ipsec_next_latch_event(&event, 1000) != 0) continue;
    printf("event: %u -> %u why=%u peer=%s %s\n", event.old_state, event.new_state,
           event.why, event.peer, event.message);
    fflush(stdout);
    if (event.new_state != IPSEC_LATCH_BROKEN) continue;
    const char after[] = "after the latch broke\n";
    const ssize_t wrote = write(fd, after, sizeof after - 1);
    printf("LATCH BROKEN peer=%s; wrote %zd octets into the blocked connection\n",
           event.peer, wrote);
    fflush(stdout);
    sleep(3);
    return UC_PASS;
  }
  printf("LATCH FAIL no BROKEN event in %d s\n", seconds);
  return UC_FAIL;
}
