/* btns-echo-client HOST PORT [LINE]: connects over TCP, prints what the
 * BTNS API knows about the peer (see peer_report.c), sends one line and
 * prints the echo. The API endpoint is $BTNS_API_SOCKET, else
 * /run/btnsd/api.sock. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/apps/peer_report.h"

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: btns-echo-client HOST PORT [LINE]\n");
    return 2;
  }
  struct sockaddr_in address;
  memset(&address, 0, sizeof address);
  address.sin_family = AF_INET;
  const int port = atoi(argv[2]);
  if (inet_pton(AF_INET, argv[1], &address.sin_addr) != 1 || port <= 0 ||
      port > 65535) {
    fprintf(stderr, "btns-echo-client: expected an IPv4 address and a port 1-65535\n");
    return 2;
  }
  address.sin_port = htons((uint16_t)port);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
    perror("btns-echo-client: connect");
    return 1;
  }
  printf("connected: %s:%d\n", argv[1], port);
  const int report = btns_print_peer(fd);
  char line[1024];
  snprintf(line, sizeof line, "%s\n", argc == 4 ? argv[3] : "hello over BTNS");
  const size_t length = strlen(line);
  if (write(fd, line, length) != (ssize_t)length) {
    perror("btns-echo-client: write");
    return 1;
  }
  char echo[1024];
  ssize_t n = read(fd, echo, sizeof echo);
  if (n <= 0) {
    printf("echo: (none)\n");
    return 1;
  }
  printf("echo: %.*s", (int)n, echo);
  if (echo[n - 1] != '\n') printf("\n");
  close(fd);
  return report == 0 ? 0 : 1;
}
