/* Use case 5 (datagram acceptor): recvmsg(..., &pToken), then the iToken
 * from the pToken; the application authorizes the sender it sees. The
 * reply goes back with sendmsg(..., pToken), so it leaves only under an SA
 * with that same peer.
 *
 *   uc5 PORT EXPECTED_PEER
 *
 * Passes when a datagram arrived from EXPECTED_PEER over IPsec and the
 * reply was sent under the pToken. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/apps/uc_common.h"

int main(int argc, char **argv) {
  struct sockaddr_in address;
  if (argc != 3 || uc_address("0.0.0.0", argv[1], &address) != 0) {
    fprintf(stderr, "usage: uc5 PORT EXPECTED_PEER\n");
    return UC_USAGE;
  }
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0) {
    printf("UC5 FAIL bind: %s\n", strerror(errno));
    return UC_FAIL;
  }
  printf("listening: %s\n", argv[1]);
  fflush(stdout);
  char data[512];
  struct sockaddr_in from;
  struct iovec iov = {data, sizeof data};
  char control[IPSEC_PTOKEN_CMSG_SPACE];
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_name = &from;
  msg.msg_namelen = sizeof from;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ipsec_pToken_t pToken = ipsec_create_pToken();
  const ssize_t n = ipsec_recvmsg(fd, &msg, 0, pToken);
  if (n < 0) {
    uc_print_why("ipsec_recvmsg");
    return UC_FAIL;
  }
  char peer[256];
  uint16_t method = 0;
  if (uc_peer_of(pToken, peer, sizeof peer, &method) != 0) {
    printf("UC5 FAIL the datagram's pToken names no peer (%s)\n", ipsec_api_why());
    return UC_FAIL;
  }
  printf("datagram from peer %s (method %u)\n", peer, method);
  if (strcmp(peer, argv[2]) != 0) {
    printf("UC5 FAIL expected %s\n", argv[2]);
    return UC_FAIL;
  }
  struct iovec reply_iov = {data, (size_t)n};
  struct msghdr reply;
  memset(&reply, 0, sizeof reply);
  reply.msg_name = &from;
  reply.msg_namelen = sizeof from;
  reply.msg_iov = &reply_iov;
  reply.msg_iovlen = 1;
  if (ipsec_sendmsg(fd, &reply, 0, pToken) != n) {
    uc_print_why("ipsec_sendmsg");
    printf("UC5 FAIL the reply was not sent under the pToken\n");
    return UC_FAIL;
  }
  printf("UC5 PASS datagram from %s, reply under its pToken\n", peer);
  return UC_PASS;
}
