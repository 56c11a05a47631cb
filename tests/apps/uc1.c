/* Use case 1 (initiator or acceptor): connect(2) or accept(2), get the
 * pToken from the descriptor, get the iToken from the pToken. System
 * policy (PAD/SPD) chose both identities; the application authorizes the
 * peer it now sees.
 *
 *   uc1 connect HOST PORT EXPECTED_PEER
 *   uc1 accept PORT EXPECTED_PEER
 *
 * Passes when the peer's identity is EXPECTED_PEER (e.g.
 * fqdn:alice.example.org) and a line makes the round trip. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/apps/uc_common.h"

static int check_peer(int fd, const char *expected) {
  ipsec_pToken_t ptoken = ipsec_create_pToken();
  if (ipsec_get_socket_pToken(fd, ptoken) != 0) {
    uc_print_why("ipsec_get_socket_pToken");
    return UC_FAIL;
  }
  char peer[256];
  uint16_t method = 0;
  uint32_t latch = 0, len = sizeof latch;
  ipsec_get_token_attr(ptoken, IPSEC_API_ATTR_latchState, &len, &latch);
  const int have = uc_peer_of(ptoken, peer, sizeof peer, &method);
  char key[80];
  const int has_key = uc_peer_key_of(ptoken, key, sizeof key) == 0;
  ipsec_free_pToken(ptoken);
  if (have != 0) {
    printf("UC1 FAIL the pToken names no peer\n");
    return UC_FAIL;
  }
  printf("peer: %s method: %u latch: %u\n", peer, method, latch);
  if (has_key) printf("peer key: %s\n", key);
  if (strcmp(peer, expected) != 0 || latch != IPSEC_LATCH_ESTABLISHED) {
    printf("UC1 FAIL expected an ESTABLISHED latch with %s\n", expected);
    return UC_FAIL;
  }
  return UC_PASS;
}

int main(int argc, char **argv) {
  struct sockaddr_in address;
  char line[256];
  if (argc == 5 && strcmp(argv[1], "connect") == 0) {
    if (uc_address(argv[2], argv[3], &address) != 0) return UC_USAGE;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
      printf("UC1 FAIL connect: %s\n", strerror(errno));
      return UC_FAIL;
    }
    if (check_peer(fd, argv[4]) != UC_PASS) return UC_FAIL;
    const char hello[] = "uc1 hello\n";
    if (write(fd, hello, sizeof hello - 1) != (ssize_t)(sizeof hello - 1)) return UC_FAIL;
    ssize_t n = read(fd, line, sizeof line);
    if (n != (ssize_t)(sizeof hello - 1) || memcmp(line, hello, (size_t)n) != 0) {
      printf("UC1 FAIL no echo\n");
      return UC_FAIL;
    }
    printf("UC1 PASS initiator sees %s\n", argv[4]);
    return UC_PASS;
  }
  if (argc == 4 && strcmp(argv[1], "accept") == 0) {
    if (uc_address("0.0.0.0", argv[2], &address) != 0) return UC_USAGE;
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0 ||
        listen(listener, 4) != 0) {
      printf("UC1 FAIL listen: %s\n", strerror(errno));
      return UC_FAIL;
    }
    printf("listening: %s\n", argv[2]);
    fflush(stdout);
    int fd = accept(listener, NULL, NULL);
    if (fd < 0) return UC_FAIL;
    printf("accepted\n");
    fflush(stdout);
    const int verdict = check_peer(fd, argv[3]);
    /* Echo until the initiator closes, so the connection stays up as long
     * as it wants (the latching test keeps it open). */
    ssize_t n;
    while ((n = read(fd, line, sizeof line)) > 0) (void)!write(fd, line, (size_t)n);
    if (verdict == UC_PASS) printf("UC1 PASS acceptor sees %s\n", argv[3]);
    close(fd);
    return verdict;
  }
  fprintf(stderr, "usage: uc1 connect HOST PORT EXPECTED_PEER | uc1 accept PORT EXPECTED_PEER\n");
  return UC_USAGE;
}
