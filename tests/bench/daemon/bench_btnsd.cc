// btnsd's Daemon with the in-memory XFRM kernel, for the daemon benchmark:
// everything btnsd does (sockets, shards, kernel thread, the engine) except
// that SAs and policies go to memory, since the host kernel has no ESP.
// Prints a status line every 100 ms on stdout for the driver:
//   status rss_kb=N ike_sas=N half_open=N datagrams_in=N rate_limited=N
//          half_open_full=N queue_full=N
//
//   bench_btnsd CONFIG
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>

#include "config/loader.h"
#include "daemon/credentials.h"
#include "daemon/daemon.h"
#include "daemon/log.h"
#include "kernel_glue/xfrm_in_memory.h"

namespace {

long RssKb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: bench_btnsd CONFIG\n");
    return 2;
  }
  auto loaded = btnsd::config::LoadConfigFile(argv[1]);
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
    return 1;
  }
  btnsd::daemon::Logger::SetLevel(btnsd::daemon::Level::kError);
  auto credentials = btnsd::daemon::LoadCredentials(*loaded.snapshot);
  const auto tags = btnsd::daemon::ToKernelTags(loaded.snapshot->daemon.ownership);
  kernel_glue::XfrmInMemory xfrm(tags.ownership);
  std::mutex mutex;
  ike::crypto::SystemRandomSource random;
  btnsd::daemon::DaemonDependencies deps;
  deps.kernel = {&xfrm, &mutex};
  deps.spi_kernel = {&xfrm, &mutex};
  deps.random = &random;
  btnsd::daemon::Daemon daemon(argv[1], loaded.snapshot, std::move(credentials.store),
                               std::move(deps));
  daemon.HandleSignals();
  if (!daemon.Start()) return 1;
  std::atomic<bool> done{false};
  std::thread reporter([&] {
    while (!done) {
      const auto totals = daemon.engine_totals();
      const auto counters = daemon.counters();
      std::printf("status rss_kb=%ld ike_sas=%zu half_open=%zu datagrams_in=%lu "
                  "rate_limited=%lu half_open_full=%lu queue_full=%lu shards=%zu\n",
                  RssKb(), totals.ike_sas, totals.half_open,
                  (unsigned long)counters.datagrams_received,
                  (unsigned long)counters.init_rate_limited,
                  (unsigned long)counters.init_half_open_full,
                  (unsigned long)counters.shard_queue_full, daemon.shard_count());
      std::fflush(stdout);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  daemon.Run();
  done = true;
  reporter.join();
  return 0;
}
