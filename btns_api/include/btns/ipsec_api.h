/*
 * BTNS application API: protection tokens (pTokens) and identity tokens
 * (iTokens) after draft-ietf-btns-c-api-04 and draft-ietf-btns-abstract-api,
 * connection latching events (RFC 5660), and the calls of the six BTNS API
 * use cases. The library talks to btnsd over its Unix-domain endpoint
 * (BTNS_API_SOCKET in the environment, else IPSEC_API_DEFAULT_ENDPOINT).
 *
 * Conventions:
 *  - Functions returning int give 0 on success and -1 with errno set on
 *    failure; constructors return NULL with errno set. After any failure
 *    ipsec_api_why() gives a sentence naming the cause and
 *    ipsec_api_why_code() one of IPSEC_API_WHY_*. Both are per thread.
 *  - Attribute values: booleans are 2-octet unsigned (uint16_t) holding
 *    IPSEC_API_ATTR_ENABLE / DISABLE / ANY; strings are NUL-terminated;
 *    object-valued attributes (IPSEC_API_ATTR_iToken, _remote_iToken) take
 *    a pointer to an ipsec_iToken_t: if it is NULL a new iToken is created
 *    (free it), otherwise the existing one is overwritten.
 *  - ipsec_get_token_attr: *attr_len is the buffer size on input and the
 *    value's size on output. A buffer too small (or attr_val NULL) fails
 *    with ERANGE and sets *attr_len to the size needed.
 *  - Thread-safe: one endpoint connection per process, serialised; a child
 *    after fork() opens its own.
 */
#ifndef BTNS_IPSEC_API_H_
#define BTNS_IPSEC_API_H_

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IPSEC_API_DEFAULT_ENDPOINT "/run/btnsd/api.sock"
#define IPSEC_API_VERSION 1

typedef struct ipsec_iToken *ipsec_iToken_t;
typedef struct ipsec_pToken *ipsec_pToken_t;

/* ---- attribute selectors (one numbering for both token kinds) ---------- */
/* pToken attributes (c-api-04 section 2.3.2). */
#define IPSEC_API_ATTR_privacyProtected 1
#define IPSEC_API_ATTR_integrityProtected 2
#define IPSEC_API_ATTR_compressionAvailable 3
#define IPSEC_API_ATTR_policyName 4
#define IPSEC_API_ATTR_iToken 5        /* the REMOTE identity (sic) */
#define IPSEC_API_ATTR_remote_iToken 6 /* the LOCAL identity (sic) */
#define IPSEC_API_ATTR_tunnelMode 7
#define IPSEC_API_ATTR_ipoptionsProtected 8
#define IPSEC_API_ATTR_auditString 9   /* on both token kinds */
#define IPSEC_API_ATTR_informationString 10
/* iToken attributes (c-api-04 section 2.1.2). */
#define IPSEC_API_ATTR_authenticationMethod 16
#define IPSEC_API_ATTR_certificateAuthorityDN 17
#define IPSEC_API_ATTR_certificateDN 18
#define IPSEC_API_ATTR_pubKeyID 19      /* 32 octets: SHA-256 of the SPKI */
#define IPSEC_API_ATTR_channelBinding 20 /* 32 octets: end-point CB, SHA-256 */
/* Extensions. */
#define IPSEC_API_ATTR_latchState 32    /* uint32_t IPSEC_LATCH_* (pToken) */
#define IPSEC_API_ATTR_latchID 33       /* uint64_t (pToken) */
#define IPSEC_API_ATTR_algorithms 34    /* string (pToken) */
#define IPSEC_API_ATTR_localAddress 35  /* struct sockaddr_storage (pToken) */
#define IPSEC_API_ATTR_remoteAddress 36 /* struct sockaddr_storage (pToken) */
#define IPSEC_API_ATTR_protocol 37      /* uint16_t (pToken) */
#define IPSEC_API_ATTR_identity 48      /* string, e.g. "fqdn:bob" (iToken) */
/* Local credential of an iToken (UC3/UC4). */
#define IPSEC_BTNS_CREDENTIAL 64        /* struct ipsec_pkcs11_credential */
#define IPSEC_BTNS_CREDENTIAL_FILE 65   /* a key file path, opened by the
                                           library with the caller's rights:
                                           PEM, one unencrypted private key
                                           (PKCS#8) then optionally its
                                           CERTIFICATE chain, <= 64 KiB. Set
                                           before connect(): the connection
                                           gets its own IKE SA presenting
                                           the iToken's identity with that
                                           key; a refusal is read as
                                           IPSEC_API_WHY_AUTHENTICATION_FAILED */

/* IPSEC_BTNS_CREDENTIAL's value: a signing key inside a PKCS#11 token,
 * reached through a session the application opened, and logged in to, with
 * the token's module (loaded with p11-kit, e.g. p11_kit_module_load(), or
 * with dlopen() and C_GetFunctionList()). The library only calls that
 * module's functions; it loads no module itself.
 *
 * Setting it checks that the private key cannot leave the token
 * (CKA_SENSITIVE true, CKA_EXTRACTABLE false, else EPERM), reads the public
 * key of the same CKA_ID, and registers the key with btnsd on a connection
 * of its own, served by a library thread: whenever an IKE_AUTH of a pToken
 * made from this iToken needs a signature, btnsd sends the signed octets
 * (RFC 7296 2.15) and the thread answers with C_Sign (ECDSA with
 * SHA-256/384/512, Ed25519, RSA PKCS#1 v1.5). Only the public key (sent as
 * an RFC 7670 raw key) and the signatures leave the process. The session
 * must stay open, and the module initialised, while any token holding the
 * key lives; the thread ends when the last of them is freed. PKCS#11
 * sessions are not shared across threads by the library: it serialises its
 * own calls, and the application must not use the session meanwhile from
 * another thread. Not inherited across fork().
 *
 * Used like IPSEC_BTNS_CREDENTIAL_FILE: set the pToken on the socket before
 * connect() (the iToken's identity is required); the connection gets its
 * own IKE SA, signed in the token. A peer refusing the key reads as
 * IPSEC_API_WHY_AUTHENTICATION_FAILED; a token that does not sign (refused,
 * key freed, process gone) as IPSEC_API_WHY_SA_SETUP_FAILED (EACCES, or
 * ETIMEDOUT after 10 s without an answer). */
struct ipsec_pkcs11_credential {
  const void* functions;     /* CK_FUNCTION_LIST_PTR of the module */
  unsigned long session;     /* CK_SESSION_HANDLE */
  unsigned long private_key; /* CK_OBJECT_HANDLE; 0: the session's only
                                private key with CKA_SIGN */
};

/* ---- attribute values -------------------------------------------------- */
#define IPSEC_API_ATTR_ANY 0
#define IPSEC_API_ATTR_ENABLE 1
#define IPSEC_API_ATTR_DISABLE 2
#define IPSEC_API_ATTR_LEVEL_LOW 3
#define IPSEC_API_ATTR_LEVEL_MEDIUM 4
#define IPSEC_API_ATTR_LEVEL_HIGH 5

/* authenticationMethod values (abstract-api section 8). */
#define IPSEC_API_ATTR_authMeth_NONE 1        /* RFC 7619 NULL auth */
#define IPSEC_API_ATTR_authMeth_BTNS 2        /* unverified raw key */
#define IPSEC_API_ATTR_authMeth_LEAPOFFAITH 3 /* pinned/cached raw key */
#define IPSEC_API_ATTR_authMeth_PRESHAREDKEY 4
#define IPSEC_API_ATTR_authMeth_GROUPKEY 5
#define IPSEC_API_ATTR_authMeth_XAUTH 6
#define IPSEC_API_ATTR_authMeth_EAP 7
#define IPSEC_API_ATTR_authMeth_PKIX_TRUSTED 8
#define IPSEC_API_ATTR_authMeth_PKIX_INLINE 9
#define IPSEC_API_ATTR_authMeth_PKIX_OFFLINE 10

/* Latch states (RFC 5660 section 2.3). */
#define IPSEC_LATCH_NONE 0 /* not latched: no IPsec for this conversation */
#define IPSEC_LATCH_LISTENER 1
#define IPSEC_LATCH_ESTABLISHED 2
#define IPSEC_LATCH_BROKEN 3
#define IPSEC_LATCH_CLOSED 4

/* Failure reasons ("why"), returned by ipsec_api_why_code(). */
#define IPSEC_API_WHY_NONE 0
#define IPSEC_API_WHY_MALFORMED 1
#define IPSEC_API_WHY_UNSUPPORTED_VERSION 2
#define IPSEC_API_WHY_NO_DESCRIPTOR 3
#define IPSEC_API_WHY_NOT_A_SOCKET 4
#define IPSEC_API_WHY_NOT_CONNECTED 5
#define IPSEC_API_WHY_NOT_PROTECTED 6
#define IPSEC_API_WHY_POLICY_FORBIDS 7
#define IPSEC_API_WHY_PRIVILEGE_REQUIRED 8
#define IPSEC_API_WHY_PEER_MISMATCH 9
#define IPSEC_API_WHY_SA_SETUP_FAILED 10
#define IPSEC_API_WHY_LATCH_BROKEN 11
#define IPSEC_API_WHY_LATCH_CONFLICT 12
#define IPSEC_API_WHY_NOT_SUPPORTED 13
#define IPSEC_API_WHY_TOO_LARGE 14
#define IPSEC_API_WHY_UNKNOWN_LATCH 15
#define IPSEC_API_WHY_INTERNAL 16
#define IPSEC_API_WHY_DAEMON_UNAVAILABLE 17
#define IPSEC_API_WHY_AUTHENTICATION_FAILED 18
#define IPSEC_API_WHY_LOCAL_SPD_BLOCK 19
#define IPSEC_API_WHY_PEER_SPD_BLOCK 20
#define IPSEC_API_WHY_ADMINISTRATIVELY_CLOSED 21
#define IPSEC_API_WHY_CONGRUENT_SA 22
#define IPSEC_API_WHY_CONFLICT_CLEARED 23
#define IPSEC_API_WHY_LISTENER_SPAWNED 24
#define IPSEC_API_WHY_BAD_ARGUMENT 25
#define IPSEC_API_WHY_CREDENTIAL_FILE 26

/* Control space for the pToken ancillary data ipsec_recvmsg() adds. */
#define IPSEC_PTOKEN_CMSG_LEVEL 0x42544e53 /* private level: never the kernel's */
#define IPSEC_PTOKEN_CMSG_TYPE 1
#define IPSEC_PTOKEN_CMSG_MAX 2048
#define IPSEC_PTOKEN_CMSG_SPACE CMSG_SPACE(IPSEC_PTOKEN_CMSG_MAX)

/* ---- endpoint and diagnostics ------------------------------------------ */
/* Overrides the endpoint path for this process (NULL: back to default). */
int ipsec_api_set_endpoint(const char *path);
const char *ipsec_api_why(void);
int ipsec_api_why_code(void);

/* ---- c-api-04 function set --------------------------------------------- */
ipsec_iToken_t ipsec_create_iToken(void);
int ipsec_free_iToken(ipsec_iToken_t p);
ipsec_pToken_t ipsec_create_pToken(void);
int ipsec_free_pToken(ipsec_pToken_t p);
int ipsec_get_token_attr(const void *token, uint32_t attr_type,
                         uint32_t *attr_len, void *attr_val);
int ipsec_set_token_attr(const void *token, uint32_t attr_type,
                         uint32_t attr_len, const void *attr_val);
/* Before connect()/listen(): asks the daemon for a per-socket policy with
 * the template's identities; on a listening socket it also creates a
 * LISTENER latch. Fails (errno EACCES/ECONNREFUSED...) with a reason.
 * On a socket not yet connected, with a remote iToken (or a local one, or
 * privacy/integrity ENABLE), nothing leaves the socket until the daemon has
 * checked the SA for its first destination:
 *  - connect()/sendto() answers EAGAIN while the SA is negotiated (the
 *    kernel's answer for a per-socket IPsec policy without an SA): call it
 *    again, as for a non-blocking connect;
 *  - a peer with the wanted identity: the socket is bound to that SA (and
 *    its rekeys) and connect() goes through;
 *  - any other peer at that address: the socket is blocked (a waiting
 *    connect() ends with ECONNRESET, later ones with EPERM) and
 *    ipsec_get_socket_pToken(fd) fails with ECONNREFUSED and
 *    IPSEC_API_WHY_PEER_MISMATCH, naming the identity found. No SA within
 *    30 s: IPSEC_API_WHY_SA_SETUP_FAILED. */
int ipsec_set_socket_pToken(int fd, const ipsec_pToken_t pToken);
/* The latched pToken of a connected socket (creating its latch). A socket
 * without IPsec succeeds with privacy/integrity DISABLE, latch NONE.
 * Creating the latch binds the socket to the SA it latched on (when one SA
 * carries the conversation), so its packets never leave under an SA with
 * another peer; after that SA is gone for good they are dropped. */
int ipsec_get_socket_pToken(int fd, ipsec_pToken_t pToken);
/* Adds/reads IPSEC_PTOKEN_CMSG ancillary data (see ipsec_sendmsg/recvmsg). */
int ipsec_set_msg_pToken(struct msghdr *msg, const ipsec_pToken_t pToken);
int ipsec_get_msg_pToken(const struct msghdr *msg, ipsec_pToken_t pToken);
/* 0 when both tokens stand for the same peer and the same protection
 * (privacy, integrity, mode); algorithms and addresses may differ. */
int ipsec_cmp_pToken(ipsec_pToken_t p1, ipsec_pToken_t p2);
int ipsec_dup_pToken(const ipsec_pToken_t p, ipsec_pToken_t *p_dup);

/* ---- iToken extensions ------------------------------------------------- */
/* 0 when equal: same authentication method and identity (key hash first). */
int ipsec_cmp_iToken(const ipsec_iToken_t a, const ipsec_iToken_t b);
int ipsec_dup_iToken(const ipsec_iToken_t p, ipsec_iToken_t *p_dup);
/* Serialised form (versioned, not signed): an expected-peer iToken when
 * imported, re-checked against policy when used. Credentials are never
 * exported. *len in: buffer size; out: size (ERANGE when too small). */
int ipsec_export_iToken(const ipsec_iToken_t t, void *buf, uint32_t *len);
ipsec_iToken_t ipsec_import_iToken(const void *buf, uint32_t len);

/* ---- the use-case calls as written in the BTNS API slides -------------- */
/* The system's default local identity (system policy chooses). */
#define DEFAULT_INITIATOR_ITOKEN ((ipsec_iToken_t)0)
/* An iToken naming an identity: "bob" (taken as fqdn:bob), "fqdn:...",
 * "email:...", "ipv4:...", "keyid:<hex>", "sha256:<hex>", "null". */
ipsec_iToken_t get_new_iToken(const char *name);
/* Seed argument order: (token, attribute, value, size). */
int ipsec_set_iToken_attr(ipsec_iToken_t t, uint32_t attr_type,
                          const void *attr_val, size_t attr_len);
/* get_new_pToken(local, remote) or get_new_pToken(local): a template. */
ipsec_pToken_t ipsec_new_pToken2(ipsec_iToken_t local_iToken,
                                 ipsec_iToken_t remote_iToken);
ipsec_pToken_t ipsec_new_pToken1(ipsec_iToken_t local_iToken);
#define IPSEC_API_PICK2_(a, b, name, ...) name
#define get_new_pToken(...) \
  IPSEC_API_PICK2_(__VA_ARGS__, ipsec_new_pToken2, ipsec_new_pToken1, )(__VA_ARGS__)
/* The remote (peer) iToken of a pToken; NULL with ENOENT when none. */
ipsec_iToken_t ipsec_get_pToken_iToken(const ipsec_pToken_t p);
/* recvmsg() that also fills pToken with the SA the datagram's 5-tuple is
 * protected by at receive time (and adds IPSEC_PTOKEN_CMSG data when
 * msg_control has room, else sets MSG_CTRUNC). */
ssize_t ipsec_recvmsg(int fd, struct msghdr *msg, int flags,
                      ipsec_pToken_t pToken);
/* sendmsg() that sends only when the destination is protected by an SA
 * whose peer matches pToken (or msg's IPSEC_PTOKEN_CMSG data when pToken
 * is NULL); otherwise fails (EAGAIN while IKE runs, ECONNREFUSED on a
 * different peer) and the datagram is not sent. */
ssize_t ipsec_sendmsg(int fd, const struct msghdr *msg, int flags,
                      const ipsec_pToken_t pToken);

/* ---- channel bindings (RFC 5660, draft-williams-ipsec-channel-binding) -- */
/* Comma-separated list of supported hashes: "SHA-256,SHA-384,SHA-512". */
const char *ipsec_channel_binding_hashes(void);
/* H(H(pk_a) XOR H(pk_b)) for the connection's two public keys. ENOTSUP for
 * NULL-authenticated and PSK peers. *len as for ipsec_get_token_attr. */
int ipsec_get_channel_binding(int fd, const char *hash, void *value,
                              uint32_t *len);

/* ---- latch events ------------------------------------------------------ */
struct ipsec_latch_event {
  uint64_t latch_id;
  uint32_t old_state; /* IPSEC_LATCH_* */
  uint32_t new_state;
  uint32_t why;       /* IPSEC_API_WHY_* */
  char message[256];
  char peer[256];     /* identity of the SA's peer that caused it */
};
/* Subscribes to the latch of a connected or listening socket. */
int ipsec_subscribe_latch(int fd, uint64_t *latch_id);
int ipsec_release_latch(uint64_t latch_id);
/* Waits up to timeout_ms (-1: forever, 0: poll) for the next event;
 * ETIMEDOUT when none. */
int ipsec_next_latch_event(struct ipsec_latch_event *event, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif /* BTNS_IPSEC_API_H_ */
