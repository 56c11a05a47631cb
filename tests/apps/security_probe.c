/* What one user can do to another user's connections through the BTNS API
 * (and around it), for tests/apps/uml_security_test.sh.
 *
 *   security_probe hold HOST PORT WANTED_PEER SECONDS STATE_FILE
 *       (the victim) a UC2 connection, latched; writes "PID FD LATCH" to
 *       STATE_FILE, then one echoed line per second for SECONDS, reading
 *       latch events (until STATE_FILE.stop exists). Exit 0 ("HOLD PASS")
 *       when every line came back, no
 *       event arrived and the latch is still ESTABLISHED at the end.
 *   security_probe steal PID FD
 *       take another process's socket: pidfd_getfd(2), then
 *       open("/proc/PID/fd/FD"). Exit 3 ("REFUSED") when both fail.
 *   security_probe latch ID
 *       release another connection's latch by its id. Exit 3 when refused.
 *   security_probe identity NAME HOST PORT
 *       set a pToken presenting configured identity NAME. Exit 3 when
 *       refused before anything is sent.
 *
 * Every refusal is printed as "REFUSED <what>: errno=E (name) why=W text". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tests/apps/uc_common.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

static void refused(const char *what, int error) {
  printf("REFUSED %s: errno=%d (%s) why=%d %s\n", what, error, strerror(error),
         ipsec_api_why_code(), ipsec_api_why());
  fflush(stdout);
}

static int hold(int argc, char **argv) {
  struct sockaddr_in address;
  if (argc != 7 || uc_address(argv[2], argv[3], &address) != 0) return UC_USAGE;
  const int seconds = atoi(argv[5]);
  ipsec_pToken_t pToken = get_new_pToken(DEFAULT_INITIATOR_ITOKEN, get_new_iToken(argv[4]));
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (ipsec_set_socket_pToken(fd, pToken) != 0 || uc_connect(fd, &address, 20) != 0) {
    printf("HOLD FAIL connect: %s; why=%d %s\n", strerror(errno), ipsec_api_why_code(),
           ipsec_api_why());
    return UC_FAIL;
  }
  uint64_t latch_id = 0;
  if (ipsec_subscribe_latch(fd, &latch_id) != 0) {
    uc_print_why("ipsec_subscribe_latch");
    return UC_FAIL;
  }
  FILE *state = fopen(argv[6], "w");
  if (!state) return UC_FAIL;
  fprintf(state, "%d %d %llu\n", (int)getpid(), fd, (unsigned long long)latch_id);
  fclose(state);
  printf("holding: latch %llu\n", (unsigned long long)latch_id);
  fflush(stdout);
  int events = 0, rounds = 0;
  struct ipsec_latch_event event;
  char stop[512];
  snprintf(stop, sizeof stop, "%s.stop", argv[6]);
  for (int second = 0; second < seconds && access(stop, F_OK) != 0; ++second) {
    char out[32], in[32];
    const int n = snprintf(out, sizeof out, "round %d\n", second);
    if (write(fd, out, (size_t)n) != n || read(fd, in, sizeof in) != n ||
        memcmp(in, out, (size_t)n) != 0) {
      printf("HOLD FAIL round %d did not come back\n", second);
      return UC_FAIL;
    }
    ++rounds;
    if (ipsec_next_latch_event(&event, 1000) == 0) {
      ++events;
      printf("event: %u -> %u why=%u %s\n", event.old_state, event.new_state, event.why,
             event.message);
      fflush(stdout);
    }
  }
  ipsec_pToken_t seen = ipsec_create_pToken();
  uint32_t latch_state = 0;
  uint32_t size = sizeof latch_state;
  char peer[256] = "";
  if (ipsec_get_socket_pToken(fd, seen) != 0 ||
      ipsec_get_token_attr(seen, IPSEC_API_ATTR_latchState, &size, &latch_state) != 0 ||
      uc_peer_of(seen, peer, sizeof peer, NULL) != 0) {
    uc_print_why("ipsec_get_socket_pToken");
    return UC_FAIL;
  }
  if (events != 0 || latch_state != IPSEC_LATCH_ESTABLISHED) {
    printf("HOLD FAIL %d events, latch state %u\n", events, latch_state);
    return UC_FAIL;
  }
  printf("HOLD PASS %d rounds with %s, latch %llu still established, no event\n", rounds,
         peer, (unsigned long long)latch_id);
  close(fd);
  return UC_PASS;
}

static int steal(int argc, char **argv) {
  if (argc != 4) return UC_USAGE;
  const int pid = atoi(argv[2]), fd = atoi(argv[3]);
  int got = -1;
  const int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd >= 0) {
    got = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
    if (got >= 0) {
      printf("STOLEN pidfd_getfd gave descriptor %d\n", got);
      return UC_FAIL;
    }
    refused("pidfd_getfd", errno);
  } else {
    refused("pidfd_open", errno);
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd/%d", pid, fd);
  got = open(path, O_RDWR);
  if (got >= 0) {
    printf("STOLEN open %s\n", path);
    return UC_FAIL;
  }
  refused("open /proc/PID/fd", errno);
  /* The API only answers about descriptors passed to it: a socket of our
   * own that is not that connection tells nothing about it. */
  int own = socket(AF_INET, SOCK_STREAM, 0);
  ipsec_pToken_t seen = ipsec_create_pToken();
  if (ipsec_get_socket_pToken(own, seen) == 0) {
    char peer[256] = "";
    if (uc_peer_of(seen, peer, sizeof peer, NULL) == 0 && peer[0]) {
      printf("LEAK an unconnected socket of ours reads peer %s\n", peer);
      return UC_FAIL;
    }
    printf("own unconnected socket: no peer, no SA\n");
  } else {
    refused("ipsec_get_socket_pToken(own unconnected socket)", errno);
  }
  return UC_REFUSED;
}

static int latch(int argc, char **argv) {
  if (argc != 3) return UC_USAGE;
  const uint64_t id = strtoull(argv[2], NULL, 10);
  if (ipsec_release_latch(id) == 0) {
    printf("RELEASED latch %llu of another process\n", (unsigned long long)id);
    return UC_FAIL;
  }
  refused("ipsec_release_latch", errno);
  return UC_REFUSED;
}

static int identity(int argc, char **argv) {
  struct sockaddr_in address;
  if (argc != 5 || uc_address(argv[3], argv[4], &address) != 0) return UC_USAGE;
  ipsec_pToken_t pToken = get_new_pToken(get_new_iToken(argv[2]), NULL);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (ipsec_set_socket_pToken(fd, pToken) == 0) {
    printf("ACCEPTED a pToken presenting %s\n", argv[2]);
    return UC_FAIL;
  }
  refused("ipsec_set_socket_pToken", errno);
  return UC_REFUSED;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "hold") == 0) return hold(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "steal") == 0) return steal(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "latch") == 0) return latch(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "identity") == 0) return identity(argc, argv);
  fprintf(stderr, "usage: security_probe hold|steal|latch|identity ARGS (see the source)\n");
  return UC_USAGE;
}
