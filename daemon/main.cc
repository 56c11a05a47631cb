// btnsd: the IKEv2 daemon with a built-in BTNS API.
//
//   btnsd [--config FILE] [--foreground] [--check-config]
//
// Exit status: 0 clean stop (or a valid config with --check-config),
// 1 configuration or start-up error, 2 wrong command line.
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "config/loader.h"
#include "daemon/admin_service.h"
#include "daemon/api_bridge.h"
#include "daemon/credentials.h"
#include "daemon/daemon.h"
#include "daemon/kernel_translate.h"
#include "daemon/log.h"
#include "ike/crypto/random.h"
#include "kernel_glue/xfrm_netlink.h"

namespace {

using btnsd::daemon::Level;

void Usage(FILE* out) {
  std::fprintf(out,
               "usage: btnsd [--config FILE] [--foreground] [--check-config]\n"
               "  --config FILE   policy file (default %s)\n"
               "  --foreground    stay attached (btnsd never forks; accepted for "
               "systemd units and scripts)\n"
               "  --check-config  validate FILE and its key files, print errors, "
               "exit\n",
               btnsd::config::kDefaultConfigPath);
}

Level FromPolicyLevel(ike::policy::LogLevel level) {
  switch (level) {
    case ike::policy::LogLevel::kError: return Level::kError;
    case ike::policy::LogLevel::kWarning: return Level::kWarning;
    case ike::policy::LogLevel::kInfo: return Level::kInfo;
    case ike::policy::LogLevel::kDebug: return Level::kDebug;
    case ike::policy::LogLevel::kTrace: return Level::kTrace;
  }
  return Level::kInfo;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path = btnsd::config::kDefaultConfigPath;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      config_path = arg.substr(9);
    } else if (arg == "--foreground") {
      // btnsd always runs in the foreground; systemd supervises it.
    } else if (arg == "--check-config") {
      check_only = true;
    } else if (arg == "--help" || arg == "-h") {
      Usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "btnsd: unknown argument '%s'\n", arg.c_str());
      Usage(stderr);
      return 2;
    }
  }

  auto loaded = btnsd::config::LoadConfigFile(config_path);
  if (!loaded.ok()) {
    for (const auto& error : loaded.errors)
      std::fprintf(stderr, "%s\n", error.ToString().c_str());
    std::fprintf(stderr, "btnsd: %zu error(s) in %s; not starting\n",
                 loaded.errors.size(), config_path.c_str());
    return 1;
  }
  btnsd::daemon::CredentialLoad credentials =
      btnsd::daemon::LoadCredentials(*loaded.snapshot);
  if (!credentials.ok()) {
    for (const auto& error : credentials.errors)
      std::fprintf(stderr, "%s: %s\n", config_path.c_str(), error.c_str());
    return 1;
  }
  if (check_only) {
    std::printf("%s: ok (%zu PAD entries, %zu SPD entries)\n",
                config_path.c_str(), loaded.snapshot->pad.entries().size(),
                loaded.snapshot->spd.entries().size());
    return 0;
  }
  btnsd::daemon::Logger::SetLevel(FromPolicyLevel(loaded.snapshot->daemon.log_level));

  // Two netlink sockets: SPI allocation on the protocol thread, everything
  // else (and the event subscription) on the kernel thread.
  const btnsd::daemon::KernelTags tags =
      btnsd::daemon::ToKernelTags(loaded.snapshot->daemon.ownership);
  kernel_glue::XfrmNetlink::Options options;
  options.ownership = tags.ownership;
  auto kernel = kernel_glue::XfrmNetlink::Open(options);
  options.subscribe_events = false;
  auto spi_kernel = kernel_glue::XfrmNetlink::Open(options);
  if (!kernel.ok() || !spi_kernel.ok()) {
    BTNSD_LOG(Level::kError, "kernel-open-failed",
              {"error", (!kernel.ok() ? kernel.error() : spi_kernel.error()).ToString()});
    return 1;
  }
  std::mutex kernel_mutex;
  std::mutex spi_mutex;
  ike::crypto::SystemRandomSource random;
  btnsd::daemon::DaemonDependencies deps;
  deps.kernel = {kernel.value().get(), &kernel_mutex};
  deps.spi_kernel = {spi_kernel.value().get(), &spi_mutex};
  deps.random = &random;
  btnsd::daemon::ApiBridge api_bridge(loaded.snapshot);
  std::unique_ptr<btnsd::daemon::AdminService> admin;
  deps.action_observer = [&api_bridge, &admin](const ike::sa::Action& action) {
    api_bridge.OnAction(action);
    if (admin) admin->OnAction(action);
  };
  deps.reload_observer = [&api_bridge, &admin](const ike::policy::PolicySnapshotPtr& next) {
    api_bridge.UpdatePolicy(next);
    if (admin) admin->OnReloaded();
  };
  deps.acquire_observer = [&api_bridge](const kernel_glue::AcquireEvent& acquire) {
    return api_bridge.OnKernelAcquire(acquire);
  };
  deps.credentials_observer =
      [&api_bridge](const std::shared_ptr<const ike::sa::CredentialStore>& credentials) {
        api_bridge.UpdateCredentials(credentials);
      };
  // Keys are shared, not copied: the engine and the API hold the same ones.
  api_bridge.UpdateCredentials(
      std::make_shared<const ike::sa::CredentialStore>(credentials.store));
  api_bridge.SetSocketPolicies(kernel.value().get());

  // Liveness settings apply at start (like listen addresses and ports).
  const auto& liveness = loaded.snapshot->daemon;
  ike::sa::EngineSettings engine_settings;
  engine_settings.dpd_interval = std::chrono::seconds(liveness.dpd_interval_seconds);
  engine_settings.retransmit_initial =
      std::chrono::seconds(liveness.retransmit_initial_seconds);
  engine_settings.retransmit_max = std::chrono::seconds(liveness.retransmit_max_seconds);
  engine_settings.retransmit_tries = liveness.retransmit_tries;
  btnsd::daemon::Daemon daemon(config_path, loaded.snapshot,
                               std::move(credentials.store), std::move(deps),
                               engine_settings);
  daemon.HandleSignals();
  api_bridge.SetReqidOffset(daemon.reqid_offset());
  api_bridge.SetInitiator([&daemon](const std::string& spd_entry,
                                    const ike::policy::PacketFiveTuple& packet) {
    daemon.Post([&daemon, spd_entry, packet] {
      daemon.Dispatch(ike::sa::InitiateRequest{spd_entry, std::nullopt,
                                               std::nullopt, packet});
    });
  });
  api_bridge.SetTerminator([&daemon](ike::sa::IkeSaHandle ike_sa) {
    daemon.Dispatch(ike::sa::DeleteRequest{ike_sa, 0});
  });
  api_bridge.SetCredentialInitiator(
      [&daemon](const std::string& spd_entry, const ike::policy::PacketFiveTuple& packet,
                std::shared_ptr<const ike::sa::LocalCredentialOverride> credential,
                uint64_t tag) {
        daemon.Post([&daemon, spd_entry, packet, credential, tag] {
          ike::sa::InitiateRequest request{spd_entry, std::nullopt, std::nullopt, packet};
          request.local_credential = credential;
          request.request_tag = tag;
          daemon.Dispatch(request);
        });
      });
  // An application's PKCS#11 signature goes back to the shard that owns the
  // IKE SA, never inline on the API thread.
  api_bridge.SetSignatureDeliverer([&daemon](ike::sa::SignatureDelivered answer) {
    daemon.Post([&daemon, answer = std::move(answer)] { daemon.Dispatch(answer); });
  });
  if (!daemon.Start()) {
    BTNSD_LOG(Level::kError, "start-failed", {"config", config_path});
    return 1;
  }
  // The BTNS API is a service on top of IKE: without it btnsd still protects
  // traffic, so a failure to create the endpoint is logged, not fatal.
  btnsd::daemon::ApiService api(api_bridge);
  // btnsctl's calls; SA counters are read on the protocol thread's socket.
  admin = std::make_unique<btnsd::daemon::AdminService>(
      daemon, btnsd::daemon::AdminService::Options{
                  config_path, {spi_kernel.value().get(), &spi_mutex}});
  admin->SetEventSink([&api](const btns::api::v1::AdminEvent& event) {
    api.PublishAdminEvent(event);
  });
  api.SetAdmin(admin.get());
  const auto& settings = loaded.snapshot->daemon;
  std::string api_why;
  if (api.Start(settings.api_socket, settings.api_group, &api_why)) {
    BTNSD_LOG(Level::kInfo, "api-listening", {"socket", settings.api_socket});
  } else {
    BTNSD_LOG(Level::kError, "api-unavailable", {"socket", settings.api_socket},
              {"error", api_why});
  }
  btnsd::daemon::NotifySystemd("READY=1");
  daemon.Run();
  api.Stop("btnsd stopping");
  btnsd::daemon::NotifySystemd("STOPPING=1");
  return 0;
}
