// Connection latching (RFC 5660): the latch database on its own, and
// latch events reaching a subscriber over the real endpoint.
#include "btns_api/latch.h"

#include "tests/btns_api/api_fixture.h"

namespace btns_api::testing {
namespace {

FiveTuple Conversation() {
  return {{*IpAddress::Parse("127.0.0.2"), 40000}, {*IpAddress::Parse("127.0.0.1"), 443}, 6};
}

TEST(LatchDatabase, CongruentRekeyIsInvisibleAndPeerChangeBreaks) {
  LatchDatabase db;
  SaInfo bob = MakeSa(1, 10, "127.0.0.2", "127.0.0.1", CertPeer("bob", 1), RawKeyPeer(2));
  Latch& l = db.CreateConnectionLatch(7, 99, Conversation(), {bob}, std::nullopt);
  EXPECT_EQ(l.state, LatchState::kEstablished);
  const uint64_t id = l.id;

  SaInfo rekey = bob;
  rekey.child_sa_id = 2;
  rekey.algorithms = "ENCR_CHACHA20_POLY1305";  // algorithm change: still congruent
  EXPECT_TRUE(db.OnSaEvent({SaEventKind::kUp, rekey}).empty());
  EXPECT_TRUE(db.OnSaEvent({SaEventKind::kDown, bob}).empty());
  EXPECT_EQ(db.Find(id)->state, LatchState::kEstablished);

  SaInfo mallory = MakeSa(3, 30, "127.0.0.0", "127.0.0.1", CertPeer("mallory", 3), RawKeyPeer(2));
  mallory.local_ts = {HostTs("127.0.0.2")};
  auto alerts = db.OnSaEvent({SaEventKind::kUp, mallory});
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0].old_state, LatchState::kEstablished);
  EXPECT_EQ(alerts[0].new_state, LatchState::kBroken);
  EXPECT_EQ(alerts[0].why, Why::kLatchBroken);
  ASSERT_TRUE(alerts[0].peer.has_value());
  EXPECT_EQ(alerts[0].peer->id, "fqdn:mallory");

  alerts = db.OnSaEvent({SaEventKind::kDown, mallory});
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0].new_state, LatchState::kEstablished);
  EXPECT_EQ(alerts[0].why, Why::kConflictCleared);
}

TEST(LatchDatabase, ProtectionDowngradeBreaks) {
  LatchDatabase db;
  SaInfo bob = MakeSa(1, 10, "127.0.0.2", "127.0.0.1", CertPeer("bob", 1), RawKeyPeer(2));
  db.CreateConnectionLatch(1, 1, Conversation(), {bob}, std::nullopt);
  SaInfo integrity_only = bob;
  integrity_only.child_sa_id = 2;
  integrity_only.privacy = false;
  auto alerts = db.OnSaEvent({SaEventKind::kUp, integrity_only});
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0].new_state, LatchState::kBroken);
}

TEST(LatchDatabase, NullPeerIsTheSameOnlyAlongItsIkeSaChain) {
  LatchDatabase db;
  SaInfo first = MakeSa(1, 10, "127.0.0.2", "127.0.0.1", NullPeer(), NullPeer());
  uint64_t id = db.CreateConnectionLatch(1, 1, Conversation(), {first}, std::nullopt).id;
  SaInfo rekeyed_ike = first;  // IKE SA rekey: successor of IKE SA 10
  rekeyed_ike.child_sa_id = 2;
  rekeyed_ike.ike_sa_id = 11;
  rekeyed_ike.predecessor_ike_sa_id = 10;
  EXPECT_TRUE(db.OnSaEvent({SaEventKind::kUp, rekeyed_ike}).empty());
  SaInfo next_child = first;  // a later child under IKE SA 11 still matches
  next_child.child_sa_id = 3;
  next_child.ike_sa_id = 11;
  EXPECT_TRUE(db.OnSaEvent({SaEventKind::kUp, next_child}).empty());
  SaInfo fresh = first;  // a new IKE SA from scratch: cannot be the same
  fresh.child_sa_id = 4;
  fresh.ike_sa_id = 12;
  auto alerts = db.OnSaEvent({SaEventKind::kUp, fresh});
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(db.Find(id)->state, LatchState::kBroken);
}

TEST(LatchDatabase, RawKeyPeerComparesByKeyNotByAssertedId) {
  SaInfo a = MakeSa(1, 10, "127.0.0.2", "127.0.0.1", RawKeyPeer(5), RawKeyPeer(2));
  SaInfo b = a;
  b.ike_sa_id = 99;          // a fresh IKE SA with the same key: same peer
  b.peer.id = "fqdn:other";  // the asserted ID carries no authority
  EXPECT_TRUE(SamePeer(a, b));
  SaInfo c = MakeSa(2, 11, "127.0.0.2", "127.0.0.1", RawKeyPeer(6), RawKeyPeer(2));
  EXPECT_FALSE(SamePeer(a, c));
}

TEST(LatchDatabase, WaitingLatchLatchesOnFirstSaAndReleaseAndClose) {
  LatchDatabase db;
  Latch& l = db.CreateConnectionLatch(5, 1, Conversation(), {}, std::string("fqdn:bob"));
  const uint64_t id = l.id;
  EXPECT_FALSE(l.latched.has_value());
  SaInfo bob = MakeSa(1, 10, "127.0.0.2", "127.0.0.1", CertPeer("bob", 1), RawKeyPeer(2));
  EXPECT_TRUE(db.OnSaEvent({SaEventKind::kUp, bob}).empty());
  ASSERT_TRUE(db.Find(id)->latched.has_value());
  EXPECT_EQ(db.Find(id)->latched->peer.id, "fqdn:bob");
  EXPECT_FALSE(db.Release(6, id));  // not the owner
  db.CreateListenerLatch(6, 2, {*IpAddress::Parse("0.0.0.0"), 443}, 6);
  FiveTuple accepted{{*IpAddress::Parse("127.0.0.1"), 443},
                     {*IpAddress::Parse("127.0.0.2"), 40000}, 6};
  EXPECT_NE(db.FindListenerFor(6, accepted), nullptr)
      << "a wildcard listener on port 443 covers the accepted conversation";
  accepted.local.port = 444;
  EXPECT_EQ(db.FindListenerFor(6, accepted), nullptr);
  auto closed = db.CloseAll("shutting down");
  EXPECT_EQ(closed.size(), 2u);
  for (const auto& a : closed) EXPECT_EQ(a.new_state, LatchState::kClosed);
  EXPECT_EQ(db.size(), 0u);
}

class LatchOverEndpoint : public ApiFixture {};

TEST_F(LatchOverEndpoint, PeerChangeBreaksTheLatchAndTheSubscriberHearsIt) {
  PeerIdentity bob = CertPeer("bob", 0xb0), alice = RawKeyPeer(0xa1);
  AddSa(MakeSa(1, 10, "127.0.0.2", "127.0.0.1", bob, alice));
  TcpPair c;
  Connect(&c, "127.0.0.2", "127.0.0.1");
  uint64_t latch = 0;
  ASSERT_EQ(ipsec_subscribe_latch(c.client, &latch), 0) << ipsec_api_why();
  ASSERT_NE(latch, 0u);
  ipsec_pToken_t before = ipsec_create_pToken();
  ASSERT_EQ(ipsec_get_socket_pToken(c.client, before), 0);

  // A congruent rekey: no event, and the pToken stays equivalent.
  SaInfo rekey = MakeSa(2, 10, "127.0.0.2", "127.0.0.1", bob, alice);
  AddSa(rekey);
  OnLoop([&] { fake_.RemoveSa(1); });
  ipsec_latch_event ev{};
  EXPECT_EQ(ipsec_next_latch_event(&ev, 150), -1);
  EXPECT_EQ(errno, ETIMEDOUT);
  ipsec_pToken_t after = ipsec_create_pToken();
  ASSERT_EQ(ipsec_get_socket_pToken(c.client, after), 0);
  EXPECT_EQ(ipsec_cmp_pToken(before, after), 0);

  // The IKE SA behind the child SA now has another peer: BROKEN.
  OnLoop([&] { fake_.ChangePeer(2, CertPeer("mallory", 0x66), 40); });
  ASSERT_EQ(ipsec_next_latch_event(&ev, 2000), 0) << ipsec_api_why();
  EXPECT_EQ(ev.latch_id, latch);
  EXPECT_EQ(ev.old_state, static_cast<uint32_t>(IPSEC_LATCH_ESTABLISHED));
  EXPECT_EQ(ev.new_state, static_cast<uint32_t>(IPSEC_LATCH_BROKEN));
  EXPECT_EQ(ev.why, static_cast<uint32_t>(IPSEC_API_WHY_LATCH_BROKEN));
  EXPECT_STREQ(ev.peer, "fqdn:mallory");
  ipsec_pToken_t broken = ipsec_create_pToken();
  ASSERT_EQ(ipsec_get_socket_pToken(c.client, broken), 0);
  uint32_t state = 0, len = sizeof state;
  ASSERT_EQ(ipsec_get_token_attr(broken, IPSEC_API_ATTR_latchState, &len, &state), 0);
  EXPECT_EQ(state, static_cast<uint32_t>(IPSEC_LATCH_BROKEN));
  EXPECT_NE(ipsec_cmp_pToken(before, broken), 0);
  char cb[32];
  len = sizeof cb;
  EXPECT_EQ(ipsec_get_channel_binding(c.client, "SHA-256", cb, &len), -1);
  EXPECT_EQ(ipsec_api_why_code(), IPSEC_API_WHY_LATCH_BROKEN);

  // The conflicting SA goes: ESTABLISHED again, with another event.
  AddSa(MakeSa(3, 11, "127.0.0.2", "127.0.0.1", bob, alice));
  OnLoop([&] { fake_.RemoveSa(2); });
  ASSERT_EQ(ipsec_next_latch_event(&ev, 2000), 0) << ipsec_api_why();
  EXPECT_EQ(ev.new_state, static_cast<uint32_t>(IPSEC_LATCH_ESTABLISHED));
  EXPECT_EQ(ev.why, static_cast<uint32_t>(IPSEC_API_WHY_CONFLICT_CLEARED));

  // Administrative close reaches the holder too.
  OnLoop([&] { server_->CloseAllLatches("operator closed all latches"); });
  ASSERT_EQ(ipsec_next_latch_event(&ev, 2000), 0);
  EXPECT_EQ(ev.new_state, static_cast<uint32_t>(IPSEC_LATCH_CLOSED));
  EXPECT_EQ(ev.why, static_cast<uint32_t>(IPSEC_API_WHY_ADMINISTRATIVELY_CLOSED));
  EXPECT_EQ(ipsec_release_latch(latch), -1);  // already gone
  EXPECT_EQ(ipsec_api_why_code(), IPSEC_API_WHY_UNKNOWN_LATCH);
  for (auto p : {before, after, broken}) ipsec_free_pToken(p);
}

TEST_F(LatchOverEndpoint, LatchesDieWithTheirApiConnection) {
  AddSa(MakeSa(1, 10, "127.0.0.2", "127.0.0.1", CertPeer("bob", 1), RawKeyPeer(2)));
  TcpPair c;
  Connect(&c, "127.0.0.2", "127.0.0.1");
  uint64_t latch = 0;
  ASSERT_EQ(ipsec_subscribe_latch(c.client, &latch), 0);
  EXPECT_EQ(OnLoop([&] { return server_->latches().size(); }), 1u);
  ipsec_api_set_endpoint(path_.c_str());  // drops the connection
  for (int i = 0; i < 100 && OnLoop([&] { return server_->latches().size(); }) != 0; ++i) {
    usleep(10000);
  }
  EXPECT_EQ(OnLoop([&] { return server_->latches().size(); }), 0u);
}

}  // namespace
}  // namespace btns_api::testing
