// The six use cases of the BTNS API slides, each as written there, against
// a real endpoint (Unix socket, SCM_RIGHTS) backed by FakeSaDirectory.
#include <fcntl.h>
#include <poll.h>

#include <fstream>

#include "tests/btns_api/api_fixture.h"

namespace btns_api::testing {
namespace {

uint16_t U16Attr(const void* token, uint32_t attr) {
  uint16_t v = 0xffff;
  uint32_t len = sizeof v;
  EXPECT_EQ(ipsec_get_token_attr(token, attr, &len, &v), 0) << ipsec_api_why();
  EXPECT_EQ(len, sizeof v);
  return v;
}

std::string BytesAttr(const void* token, uint32_t attr) {
  uint32_t len = 0;
  // Length query: ERANGE with the size needed.
  EXPECT_EQ(ipsec_get_token_attr(token, attr, &len, nullptr), -1);
  EXPECT_EQ(errno, ERANGE);
  std::string out(len, '\0');
  EXPECT_EQ(ipsec_get_token_attr(token, attr, &len, out.data()), 0) << ipsec_api_why();
  return out;
}

std::string StrAttr(const void* token, uint32_t attr) {
  std::string s = BytesAttr(token, attr);
  EXPECT_FALSE(s.empty());
  if (!s.empty() && s.back() == '\0') s.pop_back();
  return s;
}

std::string Hex(const std::string& s) {
  static const char* k = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += k[c >> 4];
    out += k[c & 15];
  }
  return out;
}

std::string ExpectedBinding(const PeerIdentity& a, const PeerIdentity& b) {
  auto h = Botan::HashFunction::create("SHA-256");
  auto x = h->process(a.public_key);
  auto y = h->process(b.public_key);
  for (size_t i = 0; i < x.size(); ++i) x[i] ^= y[i];
  auto v = h->process(x);
  return std::string(v.begin(), v.end());
}

class UseCases : public ApiFixture {
 protected:
  void SetUp() override {
    ApiFixture::SetUp();
    // bob (certificate) serves on 127.0.0.1; alice (raw key, BTNS) is the
    // client on 127.0.0.2. Each host's view of the same IPsec connection.
    alice_ = RawKeyPeer(0xa1);
    bob_ = CertPeer("bob", 0xb0);
    AddSa(MakeSa(1, 10, "127.0.0.2", "127.0.0.1", bob_, alice_));
    AddSa(MakeSa(2, 20, "127.0.0.1", "127.0.0.2", alice_, bob_));
  }
  PeerIdentity alice_, bob_;
};

// UC1: connect/accept, get the pToken from the fd, the iToken from it.
TEST_F(UseCases, Uc1InitiatorAndAcceptorLearnThePeer) {
  TcpPair c;
  Connect(&c, "127.0.0.2", "127.0.0.1");

  ipsec_pToken_t ip = ipsec_create_pToken();
  ASSERT_EQ(ipsec_get_socket_pToken(c.client, ip), 0) << ipsec_api_why();
  ipsec_iToken_t who = ipsec_get_pToken_iToken(ip);
  ASSERT_NE(who, nullptr) << ipsec_api_why();
  EXPECT_EQ(StrAttr(who, IPSEC_API_ATTR_identity), "fqdn:bob");
  EXPECT_EQ(U16Attr(who, IPSEC_API_ATTR_authenticationMethod),
            IPSEC_API_ATTR_authMeth_PKIX_INLINE);
  EXPECT_EQ(StrAttr(who, IPSEC_API_ATTR_certificateDN), "CN=bob,O=Example");
  EXPECT_EQ(StrAttr(who, IPSEC_API_ATTR_certificateAuthorityDN), "CN=Example Test CA");
  EXPECT_EQ(U16Attr(ip, IPSEC_API_ATTR_privacyProtected), IPSEC_API_ATTR_ENABLE);
  EXPECT_EQ(U16Attr(ip, IPSEC_API_ATTR_integrityProtected), IPSEC_API_ATTR_ENABLE);
  EXPECT_EQ(U16Attr(ip, IPSEC_API_ATTR_tunnelMode), IPSEC_API_ATTR_DISABLE);
  EXPECT_EQ(StrAttr(ip, IPSEC_API_ATTR_policyName), "btns-hosts");
  EXPECT_NE(StrAttr(ip, IPSEC_API_ATTR_auditString).find("fqdn:bob"), std::string::npos);
  EXPECT_NE(StrAttr(ip, IPSEC_API_ATTR_informationString).find("transport"), std::string::npos);
  uint32_t state = 0, len = sizeof state;
  ASSERT_EQ(ipsec_get_token_attr(ip, IPSEC_API_ATTR_latchState, &len, &state), 0);
  EXPECT_EQ(state, IPSEC_LATCH_ESTABLISHED);
  // The local identity travels in the (misnamed) remote_iToken.
  ipsec_iToken_t me = nullptr;
  len = sizeof me;
  ASSERT_EQ(ipsec_get_token_attr(ip, IPSEC_API_ATTR_remote_iToken, &len, &me), 0);
  EXPECT_EQ(StrAttr(me, IPSEC_API_ATTR_identity), alice_.id);

  ipsec_pToken_t ap = ipsec_create_pToken();
  ASSERT_EQ(ipsec_get_socket_pToken(c.accepted, ap), 0) << ipsec_api_why();
  ipsec_iToken_t initiator = ipsec_get_pToken_iToken(ap);
  ASSERT_NE(initiator, nullptr);
  EXPECT_EQ(StrAttr(initiator, IPSEC_API_ATTR_identity), alice_.id);
  EXPECT_EQ(U16Attr(initiator, IPSEC_API_ATTR_authenticationMethod),
            IPSEC_API_ATTR_authMeth_BTNS);
  std::string key_id = BytesAttr(initiator, IPSEC_API_ATTR_pubKeyID);
  EXPECT_EQ(key_id, std::string(alice_.spki_sha256->begin(), alice_.spki_sha256->end()));

  // Both ends compute the same end-point channel binding, equal to an
  // independent H(H(pk_a) XOR H(pk_b)).
  std::string cb_initiator = BytesAttr(who, IPSEC_API_ATTR_channelBinding);
  std::string cb_acceptor = BytesAttr(initiator, IPSEC_API_ATTR_channelBinding);
  EXPECT_EQ(Hex(cb_initiator), Hex(ExpectedBinding(alice_, bob_)));
  EXPECT_EQ(cb_initiator, cb_acceptor);
  std::string cb384(48, '\0');
  len = static_cast<uint32_t>(cb384.size());
  ASSERT_EQ(ipsec_get_channel_binding(c.client, "SHA-384", cb384.data(), &len), 0)
      << ipsec_api_why();
  std::string other(48, '\0');
  ASSERT_EQ(ipsec_get_channel_binding(c.accepted, "SHA-384", other.data(), &len), 0);
  EXPECT_EQ(cb384, other);
  EXPECT_EQ(ipsec_get_channel_binding(c.client, "MD5", other.data(), &len), -1);
  EXPECT_EQ(ipsec_api_why_code(), IPSEC_API_WHY_NOT_SUPPORTED);

  // Asking again gives an equivalent pToken (same latch).
  ipsec_pToken_t again = ipsec_create_pToken();
  ASSERT_EQ(ipsec_get_socket_pToken(c.client, again), 0);
  EXPECT_EQ(ipsec_cmp_pToken(ip, again), 0);
  EXPECT_NE(ipsec_cmp_pToken(ip, ap), 0);
  // Established pTokens are read-only.
  uint16_t on = IPSEC_API_ATTR_ENABLE;
  EXPECT_EQ(ipsec_set_token_attr(ip, IPSEC_API_ATTR_tunnelMode, sizeof on, &on), -1);
  EXPECT_EQ(errno, EPERM);
  for (auto t : {who, me, initiator}) ipsec_free_iToken(t);
  for (auto p : {ip, ap, again}) ipsec_free_pToken(p);
}

TEST_F(UseCases, Uc1UnprotectedConnectionSaysSo) {
  TcpPair c;
  Connect(&c, "127.0.0.3", "127.0.0.1");
  ipsec_pToken_t p = ipsec_create_pToken();
  ASSERT_EQ(ipsec_get_socket_pToken(c.client, p), 0) << ipsec_api_why();
  EXPECT_EQ(U16Attr(p, IPSEC_API_ATTR_privacyProtected), IPSEC_API_ATTR_DISABLE);
  EXPECT_EQ(U16Attr(p, IPSEC_API_ATTR_integrityProtected), IPSEC_API_ATTR_DISABLE);
  EXPECT_EQ(ipsec_get_pToken_iToken(p), nullptr);
  EXPECT_EQ(errno, ENOENT);
  uint32_t len = 8;
  char buf[8];
  EXPECT_EQ(ipsec_get_channel_binding(c.client, "SHA-256", buf, &len), -1);
  EXPECT_EQ(ipsec_api_why_code(), IPSEC_API_WHY_NOT_PROTECTED);
  ipsec_free_pToken(p);
}

// UC2: the initiator names the acceptor it wants before connect().
TEST_F(UseCases, Uc2InitiatorNamesTheAcceptor) {
  ipsec_iToken_t desired_acceptor_iToken = get_new_iToken("bob");
  ipsec_pToken_t pToken = get_new_pToken(/* who am I*/ DEFAULT_INITIATOR_ITOKEN,
                                         /* who I want to talk to */ desired_acceptor_iToken);
  ASSERT_NE(pToken, nullptr);
  int listener = BoundSocket(SOCK_STREAM, "127.0.0.1");
  ASSERT_EQ(listen(listener, 2), 0);
  int fd = BoundSocket(SOCK_STREAM, "127.0.0.2");
  ASSERT_EQ(ipsec_set_socket_pToken(fd, pToken), 0) << ipsec_api_why();
  auto reqs = fake_.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_TRUE(reqs[0].had_socket);
  EXPECT_EQ(reqs[0].request.remote_identity.value_or(""), "fqdn:bob");
  EXPECT_FALSE(reqs[0].request.local_identity.has_value());
  EXPECT_FALSE(reqs[0].request.conversation.has_value());  // before connect
  sockaddr_in to = Addr("127.0.0.1", PortOf(listener));
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to), 0);

  ipsec_pToken_t got = ipsec_create_pToken();
  ASSERT_EQ(ipsec_get_socket_pToken(fd, got), 0);
  ipsec_iToken_t peer = ipsec_get_pToken_iToken(got);
  ASSERT_NE(peer, nullptr);
  EXPECT_EQ(StrAttr(peer, IPSEC_API_ATTR_identity), "fqdn:bob");
  EXPECT_EQ(ipsec_cmp_iToken(peer, desired_acceptor_iToken), 0);
  uint32_t state = 0, len = sizeof state;
  ASSERT_EQ(ipsec_get_token_attr(got, IPSEC_API_ATTR_latchState, &len, &state), 0);
  EXPECT_EQ(state, IPSEC_LATCH_ESTABLISHED);
  close(fd);
  close(listener);
  ipsec_free_iToken(peer);
  ipsec_free_iToken(desired_acceptor_iToken);
  ipsec_free_pToken(pToken);
  ipsec_free_pToken(got);
}

TEST_F(UseCases, Uc2SomeoneElseAtThatAddressIsRefused) {
  ipsec_iToken_t carol = get_new_iToken("carol");
  ipsec_pToken_t pToken = get_new_pToken(DEFAULT_INITIATOR_ITOKEN, carol);
  int listener = BoundSocket(SOCK_STREAM, "127.0.0.1");
  ASSERT_EQ(listen(listener, 2), 0);
  int fd = BoundSocket(SOCK_STREAM, "127.0.0.2");
  ASSERT_EQ(ipsec_set_socket_pToken(fd, pToken), 0) << ipsec_api_why();
  sockaddr_in to = Addr("127.0.0.1", PortOf(listener));
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
  // The SA at that address belongs to bob: the latch is never ESTABLISHED.
  ipsec_pToken_t got = ipsec_create_pToken();
  ASSERT_EQ(ipsec_get_socket_pToken(fd, got), 0);
  uint32_t state = 0, len = sizeof state;
  ASSERT_EQ(ipsec_get_token_attr(got, IPSEC_API_ATTR_latchState, &len, &state), 0);
  EXPECT_EQ(state, IPSEC_LATCH_BROKEN);
  EXPECT_EQ(ipsec_get_pToken_iToken(got), nullptr);  // nothing was latched
  close(fd);
  close(listener);
  ipsec_free_iToken(carol);
  ipsec_free_pToken(pToken);
  ipsec_free_pToken(got);
}

// UC2 against the daemon's own enforcement: the socket was refused before
// anything left it, and the reason waits for the application's next call.
TEST_F(UseCases, Uc2RefusedSocketReportsTheDaemonsReason) {
  int fd = BoundSocket(SOCK_STREAM, "127.0.0.2");
  OnLoop([&] {
    fake_.SetSocketFailure(Status::Fail(ECONNREFUSED, Why::kPeerMismatch,
                                        "the host at 127.0.0.1 authenticated as "
                                        "'fqdn:carol', not 'fqdn:bob'"));
  });
  ipsec_pToken_t got = ipsec_create_pToken();
  EXPECT_EQ(ipsec_get_socket_pToken(fd, got), -1);
  EXPECT_EQ(errno, ECONNREFUSED);
  EXPECT_EQ(ipsec_api_why_code(), IPSEC_API_WHY_PEER_MISMATCH);
  EXPECT_NE(std::string(ipsec_api_why()).find("'fqdn:carol', not 'fqdn:bob'"),
            std::string::npos);
  // Without the record the same socket is merely not connected.
  OnLoop([&] { fake_.SetSocketFailure(std::nullopt); });
  EXPECT_EQ(ipsec_get_socket_pToken(fd, got), -1);
  EXPECT_EQ(ipsec_api_why_code(), IPSEC_API_WHY_NOT_CONNECTED);
  close(fd);
  ipsec_free_pToken(got);
}

// UC3: the application picks its own identity. IPSEC_BTNS_CREDENTIAL takes
// a struct ipsec_pkcs11_credential (module functions, session, key; a real
// token in pkcs11_credential_test): a bare session handle is refused.
TEST_F(UseCases, Uc3OwnIdentityIsRequestedAndABareSessionHandleIsRefused) {
  ipsec_iToken_t desired_acceptor_iToken = get_new_iToken("bob");
  ipsec_iToken_t i_iToken = get_new_iToken("alice");
  unsigned long pkcs11_session = 7;
  EXPECT_EQ(ipsec_set_iToken_attr(i_iToken, IPSEC_BTNS_CREDENTIAL, &pkcs11_session,
                                  sizeof(pkcs11_session)),
            -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(ipsec_api_why_code(), IPSEC_API_WHY_BAD_ARGUMENT);
  EXPECT_NE(std::string(ipsec_api_why()).find("ipsec_pkcs11_credential"), std::string::npos);
  // Identity chosen by the application (credential from system policy).
  ipsec_pToken_t pToken = get_new_pToken(i_iToken, desired_acceptor_iToken);
  int fd = BoundSocket(SOCK_STREAM, "127.0.0.2");
  ASSERT_EQ(ipsec_set_socket_pToken(fd, pToken), 0) << ipsec_api_why();
  auto reqs = fake_.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].request.local_identity.value_or(""), "fqdn:alice");
  EXPECT_EQ(reqs[0].request.remote_identity.value_or(""), "fqdn:bob");
  EXPECT_EQ(reqs[0].request.caller.uid, getuid());
  EXPECT_EQ(reqs[0].request.caller.pid, getpid());
  close(fd);
  ipsec_free_iToken(i_iToken);
  ipsec_free_iToken(desired_acceptor_iToken);
  ipsec_free_pToken(pToken);
}

// UC4: the acceptor presents "bob" with a key file the library opens.
TEST_F(UseCases, Uc4AcceptorWithCredentialFile) {
  std::string home = dir_ + "/home";
  ASSERT_EQ(mkdir(home.c_str(), 0700), 0);
  ASSERT_EQ(mkdir((home + "/keys").c_str(), 0700), 0);
  const std::string key_text = "-----BEGIN PRIVATE KEY-----\ntest-only\n-----END PRIVATE KEY-----\n";
  { std::ofstream(home + "/keys/myipseckey.pem") << key_text; }
  setenv("HOME", home.c_str(), 1);

  ipsec_iToken_t a_iToken = get_new_iToken("bob");
  const char* f = "$HOME/keys/myipseckey.pem";
  ASSERT_EQ(ipsec_set_iToken_attr(a_iToken, IPSEC_BTNS_CREDENTIAL_FILE, f, strlen(f) + 1), 0)
      << ipsec_api_why();
  ipsec_pToken_t a_pToken = get_new_pToken(a_iToken);
  int listener = BoundSocket(SOCK_STREAM, "127.0.0.1");
  ASSERT_EQ(listen(listener, 2), 0);
  ASSERT_EQ(ipsec_set_socket_pToken(listener, a_pToken), 0) << ipsec_api_why();
  // The daemon read the key through the descriptor, never by path.
  auto reqs = fake_.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_TRUE(reqs[0].request.listener);
  EXPECT_EQ(reqs[0].request.local_identity.value_or(""), "fqdn:bob");
  EXPECT_EQ(reqs[0].credential_contents, key_text);
  uint64_t listener_latch = 0;
  ASSERT_EQ(ipsec_subscribe_latch(listener, &listener_latch), 0) << ipsec_api_why();
  EXPECT_NE(listener_latch, 0u);

  int client = BoundSocket(SOCK_STREAM, "127.0.0.2");
  sockaddr_in to = Addr("127.0.0.1", PortOf(listener));
  ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
  int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(fd, 0);
  // Steps 2 and 3 of UC1 on the accepted socket.
  ipsec_pToken_t p = ipsec_create_pToken();
  ASSERT_EQ(ipsec_get_socket_pToken(fd, p), 0) << ipsec_api_why();
  ipsec_iToken_t initiator = ipsec_get_pToken_iToken(p);
  ASSERT_NE(initiator, nullptr);
  EXPECT_EQ(StrAttr(initiator, IPSEC_API_ATTR_identity), alice_.id);
  // The listener's holder hears that its latch spawned one.
  ipsec_latch_event ev{};
  ASSERT_EQ(ipsec_next_latch_event(&ev, 2000), 0) << ipsec_api_why();
  EXPECT_EQ(ev.latch_id, listener_latch);
  EXPECT_EQ(ev.why, static_cast<uint32_t>(IPSEC_API_WHY_LISTENER_SPAWNED));
  EXPECT_EQ(std::string(ev.peer), alice_.id);

  // A credential file that cannot be opened fails with its path in why.
  const char* missing = "$HOME/keys/absent.pem";
  EXPECT_EQ(ipsec_set_iToken_attr(a_iToken, IPSEC_BTNS_CREDENTIAL_FILE, missing,
                                  strlen(missing) + 1),
            -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_NE(std::string(ipsec_api_why()).find("absent.pem"), std::string::npos);
  close(fd);
  close(client);
  close(listener);
  unlink((home + "/keys/myipseckey.pem").c_str());
  rmdir((home + "/keys").c_str());
  rmdir(home.c_str());
  ipsec_free_iToken(initiator);
  ipsec_free_iToken(a_iToken);
  ipsec_free_pToken(a_pToken);
  ipsec_free_pToken(p);
}

// UC5: a datagram acceptor learns each datagram's peer.
TEST_F(UseCases, Uc5RecvmsgGivesTheDatagramsPeer) {
  int server = BoundSocket(SOCK_DGRAM, "127.0.0.1");
  int client = BoundSocket(SOCK_DGRAM, "127.0.0.2");
  int stranger = BoundSocket(SOCK_DGRAM, "127.0.0.3");
  sockaddr_in to = Addr("127.0.0.1", PortOf(server));
  ASSERT_EQ(sendto(client, "hello", 5, 0, reinterpret_cast<sockaddr*>(&to), sizeof to), 5);

  char data[64];
  sockaddr_in from{};
  iovec iov{data, sizeof data};
  alignas(cmsghdr) char control[IPSEC_PTOKEN_CMSG_SPACE];
  msghdr msg{};
  msg.msg_name = &from;
  msg.msg_namelen = sizeof from;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ipsec_pToken_t pToken = ipsec_create_pToken();
  ASSERT_EQ(ipsec_recvmsg(server, &msg, 0, pToken), 5) << ipsec_api_why();
  EXPECT_EQ(std::string(data, 5), "hello");
  ipsec_iToken_t iToken = ipsec_get_pToken_iToken(pToken);
  ASSERT_NE(iToken, nullptr);
  EXPECT_EQ(StrAttr(iToken, IPSEC_API_ATTR_identity), alice_.id);
  // The same pToken rides in the ancillary data.
  ipsec_pToken_t from_msg = ipsec_create_pToken();
  ASSERT_EQ(ipsec_get_msg_pToken(&msg, from_msg), 0) << ipsec_api_why();
  EXPECT_EQ(ipsec_cmp_pToken(pToken, from_msg), 0);

  // An unprotected sender's datagram reads as unprotected; a control
  // buffer without room reports MSG_CTRUNC.
  ASSERT_EQ(sendto(stranger, "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to), 1);
  char small[16];
  msg.msg_namelen = sizeof from;
  msg.msg_control = small;
  msg.msg_controllen = sizeof small;
  ipsec_pToken_t p2 = ipsec_create_pToken();
  ASSERT_EQ(ipsec_recvmsg(server, &msg, 0, p2), 1);
  EXPECT_EQ(U16Attr(p2, IPSEC_API_ATTR_privacyProtected), IPSEC_API_ATTR_DISABLE);
  EXPECT_TRUE(msg.msg_flags & MSG_CTRUNC);
  EXPECT_EQ(ipsec_get_msg_pToken(&msg, from_msg), -1);
  EXPECT_NE(std::string(ipsec_api_why()).find("MSG_CTRUNC"), std::string::npos);
  for (int fd : {server, client, stranger}) close(fd);
  ipsec_free_iToken(iToken);
  for (auto p : {pToken, from_msg, p2}) ipsec_free_pToken(p);
}

bool Readable(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, ms) == 1;
}

// UC6: a datagram initiator sends only under an SA with the named peer.
TEST_F(UseCases, Uc6SendmsgGoesOnlyToTheNamedPeer) {
  int server = BoundSocket(SOCK_DGRAM, "127.0.0.1");
  int client = BoundSocket(SOCK_DGRAM, "127.0.0.2");
  sockaddr_in to = Addr("127.0.0.1", PortOf(server));
  char payload[] = "ping";
  iovec iov{payload, 4};
  msghdr msg{};
  msg.msg_name = &to;
  msg.msg_namelen = sizeof to;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;

  ipsec_iToken_t desired_acceptor_iToken = get_new_iToken("bob");
  ipsec_pToken_t pToken = get_new_pToken(DEFAULT_INITIATOR_ITOKEN, desired_acceptor_iToken);
  ASSERT_EQ(ipsec_sendmsg(client, &msg, 0, pToken), 4) << ipsec_api_why();
  ASSERT_TRUE(Readable(server, 2000));
  char buf[8];
  EXPECT_EQ(recv(server, buf, sizeof buf, 0), 4);

  // The pToken as ancillary data (ipsec_set_msg_pToken) works the same.
  alignas(cmsghdr) char control[IPSEC_PTOKEN_CMSG_SPACE];
  msg.msg_control = control;
  msg.msg_controllen = 0;
  ASSERT_EQ(ipsec_set_msg_pToken(&msg, pToken), 0);
  ASSERT_EQ(ipsec_sendmsg(client, &msg, 0, nullptr), 4) << ipsec_api_why();
  ASSERT_TRUE(Readable(server, 2000));
  EXPECT_EQ(recv(server, buf, sizeof buf, 0), 4);
  msg.msg_control = nullptr;
  msg.msg_controllen = 0;

  // Naming someone else: nothing is sent.
  ipsec_iToken_t carol = get_new_iToken("carol");
  ipsec_pToken_t to_carol = get_new_pToken(DEFAULT_INITIATOR_ITOKEN, carol);
  EXPECT_EQ(ipsec_sendmsg(client, &msg, 0, to_carol), -1);
  EXPECT_EQ(errno, ECONNREFUSED);
  EXPECT_EQ(ipsec_api_why_code(), IPSEC_API_WHY_PEER_MISMATCH);
  EXPECT_FALSE(Readable(server, 100));

  // No SA yet: IKE is asked for and the datagram waits for the caller to
  // retry; once the (emulated) SA is up the send goes out.
  int server2 = BoundSocket(SOCK_DGRAM, "127.0.0.4");
  sockaddr_in to2 = Addr("127.0.0.4", PortOf(server2));
  msg.msg_name = &to2;
  EXPECT_EQ(ipsec_sendmsg(client, &msg, 0, pToken), -1);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_EQ(ipsec_api_why_code(), IPSEC_API_WHY_SA_SETUP_FAILED);
  EXPECT_FALSE(Readable(server2, 100));
  auto reqs = fake_.requests();
  ASSERT_FALSE(reqs.empty());
  ASSERT_TRUE(reqs.back().request.conversation.has_value());
  EXPECT_EQ(reqs.back().request.conversation->remote.address.ToString(), "127.0.0.4");
  EXPECT_EQ(reqs.back().request.remote_identity.value_or(""), "fqdn:bob");
  AddSa(MakeSa(3, 30, "127.0.0.2", "127.0.0.4", bob_, alice_));
  EXPECT_EQ(ipsec_sendmsg(client, &msg, 0, pToken), 4) << ipsec_api_why();
  EXPECT_TRUE(Readable(server2, 2000));
  for (int fd : {server, server2, client}) close(fd);
  ipsec_free_iToken(desired_acceptor_iToken);
  ipsec_free_iToken(carol);
  ipsec_free_pToken(pToken);
  ipsec_free_pToken(to_carol);
}

}  // namespace
}  // namespace btns_api::testing
