/* Helpers shared by the six use-case programs (uc1..uc6): address parsing,
 * reading an iToken's identity, and one PASS/FAIL line per run so the UML
 * script can grep the outcome. Only <btns/ipsec_api.h> is used. */
#ifndef TESTS_APPS_UC_COMMON_H_
#define TESTS_APPS_UC_COMMON_H_

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include <btns/ipsec_api.h>

/* Exit statuses: 0 the use case did what the slides promise, 1 it did not,
 * 2 bad command line, 3 the daemon refused as asked (the expected outcome
 * when the host at the address is not the wanted peer). */
enum { UC_PASS = 0, UC_FAIL = 1, UC_USAGE = 2, UC_REFUSED = 3 };

/* "A.B.C.D" and a port into *out; -1 when either is not valid. */
int uc_address(const char *host, const char *port, struct sockaddr_in *out);
/* The identity string ("fqdn:bob.example.org") and authentication method
 * (IPSEC_API_ATTR_authMeth_*) of an iToken; -1 when it has none. */
int uc_identity(const ipsec_iToken_t itoken, char *identity, size_t size,
                uint16_t *method);
/* The peer identity and method of a pToken (get iToken from pToken). */
int uc_peer_of(const ipsec_pToken_t ptoken, char *identity, size_t size,
               uint16_t *method);
/* "sha256:HEX" of the public key of a pToken's peer (its pubKeyID), the
 * form the daemon's PAD records for a key; -1 when the peer has no key. */
int uc_peer_key_of(const ipsec_pToken_t ptoken, char *text, size_t size);
/* connect(2) on a socket that carries a pToken: while the daemon brings
 * up (or checks) the SA the pToken asks for, the kernel answers EAGAIN
 * (its behaviour for per-socket IPsec policies without an SA); call it
 * again. Retries for up to `seconds`; returns connect's last result. */
int uc_connect(int fd, const struct sockaddr_in *address, int seconds);
/* Prints "why: CODE SENTENCE" for the last failed call. */
void uc_print_why(const char *call);
/* uc_connect, and when it fails a line saying why: "LABEL REFUSED connect:
 * ERROR; why=CODE REASON" when the daemon names a reason (UC_REFUSED), else
 * "LABEL FAIL connect: ERROR, and the daemon names no reason" (UC_FAIL).
 * UC_PASS once connected. */
int uc_connect_or_report(int fd, const struct sockaddr_in *address, int seconds,
                         const char *label);
/* Writes HELLO and reads its echo; "LABEL FAIL no echo" and UC_FAIL when the
 * same number of octets did not come back, else UC_PASS. */
int uc_echo(int fd, const char *hello, const char *label);
/* A connection as its pToken tells it (get pToken from fd, get iToken from
 * pToken): the peer reached, and who we were to it (IPSEC_API_ATTR_remote_iToken,
 * the draft's name for the local side; "" when the pToken names none). */
struct uc_view {
  char peer[256];
  uint16_t peer_method;
  char me[256];
  uint16_t my_method;
};
/* -1, after uc_print_why, when the socket's pToken names no peer. */
int uc_connection_view(int fd, struct uc_view *view);
/* Connects fd (its pToken already set), echoes HELLO through the acceptor
   and checks the connection's view: we presented PRESENTED and reached
   WANTED_PEER (NULL: anyone). Prints "LABEL PASS|FAIL|REFUSED ..." and
   returns UC_PASS, UC_FAIL or UC_REFUSED (the reason read from the API). */
int uc_connect_and_check(int fd, const struct sockaddr_in *address, const char *label,
                         const char *hello, const ipsec_iToken_t presented,
                         const ipsec_iToken_t wanted_peer);

#endif
