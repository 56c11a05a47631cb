// Proves every system library links and works from the offline workspace.
#include <botan/hash.h>
#include <botan/hex.h>
#include <gtest/gtest.h>
#include <netlink/xfrm/sa.h>
#include <yaml-cpp/yaml.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

TEST(SystemLibraries, BotanHashesKnownAnswer) {
  auto sha = Botan::HashFunction::create_or_throw("SHA-256");
  sha->update("abc");
  EXPECT_EQ(Botan::hex_encode(sha->final()),
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD");
}

TEST(SystemLibraries, LibnlXfrmAllocatesSa) {
  xfrmnl_sa* sa = xfrmnl_sa_alloc();
  ASSERT_NE(sa, nullptr);
  xfrmnl_sa_put(sa);
}

TEST(SystemLibraries, YamlParsesWithLineNumbers) {
  YAML::Node n = YAML::Load("a:\n  b: 3\n");
  EXPECT_EQ(n["a"]["b"].as<int>(), 3);
  EXPECT_EQ(n["a"]["b"].Mark().line, 1);
}

TEST(SystemLibraries, AsioRunsPostedWork) {
  boost::asio::io_context io;
  int ran = 0;
  boost::asio::post(io, [&] { ++ran; });
  io.run();
  EXPECT_EQ(ran, 1);
}
