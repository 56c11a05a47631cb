/* btns-echo-server PORT: accepts one TCP connection, prints what the BTNS
 * API knows about the peer (see peer_report.c), echoes one line, exits.
 * The API endpoint is $BTNS_API_SOCKET, else /run/btnsd/api.sock. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/apps/peer_report.h"

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: btns-echo-server PORT\n");
    return 2;
  }
  const int port = atoi(argv[1]);
  if (port <= 0 || port > 65535) {
    fprintf(stderr, "btns-echo-server: PORT must be 1-65535, got '%s'\n", argv[1]);
    return 2;
  }
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in address;
  memset(&address, 0, sizeof address);
  address.sin_family = AF_INET;
  address.sin_port = htons((uint16_t)port);
  if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0 ||
      listen(listener, 1) != 0) {
    perror("btns-echo-server: bind/listen");
    return 1;
  }
  printf("listening: %d\n", port);
  fflush(stdout);
  int fd = accept(listener, NULL, NULL);
  if (fd < 0) {
    perror("btns-echo-server: accept");
    return 1;
  }
  struct sockaddr_in peer;
  socklen_t peer_len = sizeof peer;
  getpeername(fd, (struct sockaddr *)&peer, &peer_len);
  printf("accepted: %s:%u\n", inet_ntoa(peer.sin_addr), ntohs(peer.sin_port));
  const int report = btns_print_peer(fd);
  char line[1024];
  ssize_t n = read(fd, line, sizeof line);
  if (n > 0) {
    if (write(fd, line, (size_t)n) != n) perror("btns-echo-server: write");
    printf("echoed: %.*s", (int)n, line);
    if (line[n - 1] != '\n') printf("\n");
  }
  close(fd);
  close(listener);
  return report == 0 && n > 0 ? 0 : 1;
}
