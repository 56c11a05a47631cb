/* Prints what the BTNS API says about a connected socket's peer, one
 * "key: value" line each, so scripts can grep them. Uses only
 * <btns/ipsec_api.h>. */
#ifndef TESTS_APPS_PEER_REPORT_H_
#define TESTS_APPS_PEER_REPORT_H_

/* Returns 0 when the pToken could be read (even for an unprotected
 * socket), -1 with the reason printed otherwise. */
int btns_print_peer(int fd);

#endif
