/* Use case 6 (datagram initiator): the application names the peer, then
 * sendmsg(..., pToken) sends only under an SA with that peer.
 *
 *   desired_acceptor_iToken = get_new_iToken("bob");
 *   pToken = get_new_pToken(DEFAULT_INITIATOR_ITOKEN, desired_acceptor_iToken);
 *   sendmsg(..., pToken);
 *
 *   uc6 HOST PORT WANTED_PEER
 *
 * While IKE runs the send fails with EAGAIN and is retried (for up to
 * 15 s). Exit 0 (PASS) when the datagram went and the reply came back from
 * WANTED_PEER; exit 3 (REFUSED) when the daemon refused because the SA at
 * HOST has another peer. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/apps/uc_common.h"

int main(int argc, char **argv) {
  struct sockaddr_in address;
  if (argc != 4 || uc_address(argv[1], argv[2], &address) != 0) {
    fprintf(stderr, "usage: uc6 HOST PORT WANTED_PEER\n");
    return UC_USAGE;
  }
  ipsec_iToken_t desired_acceptor_iToken = get_new_iToken(argv[3]);
  ipsec_pToken_t pToken =
      get_new_pToken(DEFAULT_INITIATOR_ITOKEN, desired_acceptor_iToken);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  char data[] = "uc6 datagram";
  struct iovec iov = {data, sizeof data - 1};
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_name = &address;
  msg.msg_namelen = sizeof address;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  const time_t deadline = time(NULL) + 15;
  for (;;) {
    if (ipsec_sendmsg(fd, &msg, 0, pToken) == (ssize_t)(sizeof data - 1)) break;
    if (errno == EAGAIN && time(NULL) < deadline) {
      usleep(200 * 1000);
      continue;
    }
    const int send_errno = errno;
    printf("%s sendmsg: %s; why=%d %s\n",
           ipsec_api_why_code() == IPSEC_API_WHY_PEER_MISMATCH ? "UC6 REFUSED" : "UC6 FAIL",
           strerror(send_errno), ipsec_api_why_code(), ipsec_api_why());
    return ipsec_api_why_code() == IPSEC_API_WHY_PEER_MISMATCH ? UC_REFUSED : UC_FAIL;
  }
  struct pollfd wait = {fd, POLLIN, 0};
  if (poll(&wait, 1, 10000) != 1) {
    printf("UC6 FAIL no reply\n");
    return UC_FAIL;
  }
  char reply[64];
  struct iovec reply_iov = {reply, sizeof reply};
  char control[IPSEC_PTOKEN_CMSG_SPACE];
  struct sockaddr_in from;
  struct msghdr in;
  memset(&in, 0, sizeof in);
  in.msg_name = &from;
  in.msg_namelen = sizeof from;
  in.msg_iov = &reply_iov;
  in.msg_iovlen = 1;
  in.msg_control = control;
  in.msg_controllen = sizeof control;
  ipsec_pToken_t seen = ipsec_create_pToken();
  if (ipsec_recvmsg(fd, &in, 0, seen) != (ssize_t)(sizeof data - 1)) {
    uc_print_why("ipsec_recvmsg");
    return UC_FAIL;
  }
  char peer[256], wanted[256];
  uint16_t method = 0;
  uc_identity(desired_acceptor_iToken, wanted, sizeof wanted, NULL);
  if (uc_peer_of(seen, peer, sizeof peer, &method) != 0 || strcmp(peer, wanted) != 0) {
    printf("UC6 FAIL reply from '%s', wanted %s\n", peer, wanted);
    return UC_FAIL;
  }
  printf("UC6 PASS sent only under an SA with %s, reply from it\n", peer);
  return UC_PASS;
}
