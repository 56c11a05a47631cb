#include "kernel_glue/xfrm_in_memory.h"

#include <cerrno>

#include "kernel_glue/xfrm_rules.h"

namespace kernel_glue {

XfrmInMemory::XfrmInMemory(Ownership ownership, uint32_t spi_seed)
    : ownership_(ownership), random_state_(spi_seed == 0 ? 1 : spi_seed) {}

uint32_t XfrmInMemory::NextRandom() {
  // xorshift32: deterministic, so tests replay identically.
  random_state_ ^= random_state_ << 13;
  random_state_ ^= random_state_ >> 17;
  random_state_ ^= random_state_ << 5;
  return random_state_;
}

void XfrmInMemory::FailNextOperation(int error_number, std::string kernel_message) {
  injected_failure_ = MakeError("", error_number, std::move(kernel_message));
}

Status XfrmInMemory::TakeInjectedFailure(const std::string& operation) {
  if (!injected_failure_) return Status::Ok();
  KernelError error = *injected_failure_;
  injected_failure_.reset();
  error.operation = operation;
  return error;
}

Result<uint32_t> XfrmInMemory::AllocateSpi(const IpAddress& src, const IpAddress& dst,
                                           uint32_t reqid, uint32_t min_spi, uint32_t max_spi) {
  const std::string operation = "allocate SPI " + src.ToString() + " -> " + dst.ToString();
  if (Status failure = TakeInjectedFailure(operation); !failure.ok()) return failure.error();
  if (!ownership_.OwnsReqid(reqid))
    return MakeError(operation, EPERM, "reqid " + std::to_string(reqid) + " is outside the owned range");
  if (src.family != dst.family)
    return MakeError(operation, EINVAL, "src and dst are of different address families");
  if (min_spi < 0x100) min_spi = 0x100;
  if (min_spi > max_spi) return MakeError(operation, EINVAL, "SPI range is empty or entirely reserved (< 256)");
  const uint64_t range = uint64_t{max_spi} - min_spi + 1;
  // Random probes first, then a linear sweep so a nearly full range still
  // finds its last free value, as the kernel does.
  for (int attempt = 0; attempt < 64; ++attempt) {
    SaId id{dst, static_cast<uint32_t>(min_spi + NextRandom() % range), kIpProtoEsp, std::nullopt};
    if (sas_.count(SaKey(id)) == 0) {
      StoredSa larval;
      larval.params.id = id;
      larval.params.src = src;
      larval.params.reqid = reqid;
      larval.larval = true;
      sas_[SaKey(id)] = larval;
      return id.spi;
    }
  }
  for (uint64_t offset = 0; offset < range && offset < (1u << 20); ++offset) {
    SaId id{dst, static_cast<uint32_t>(min_spi + offset), kIpProtoEsp, std::nullopt};
    if (sas_.count(SaKey(id)) == 0) {
      StoredSa larval;
      larval.params.id = id;
      larval.params.src = src;
      larval.params.reqid = reqid;
      larval.larval = true;
      sas_[SaKey(id)] = larval;
      return id.spi;
    }
  }
  return MakeError(operation, ENOENT, "no free SPI in the range");
}

Status XfrmInMemory::AddSa(const SaParams& sa) {
  const std::string operation = "add SA " + sa.id.ToString();
  if (Status valid = ValidateSa(sa, ownership_); !valid.ok()) return valid;
  if (Status failure = TakeInjectedFailure(operation); !failure.ok()) return failure;
  const std::string key = SaKey(sa.id);
  // A larval SA from AllocateSpi occupies its SPI too: fill it with UpdateSa.
  if (sas_.count(key) != 0) return MakeError(operation, EEXIST, "SA exists");
  StoredSa stored;
  stored.params = sa;
  if (sa.counters) stored.counters = *sa.counters;
  sas_[key] = stored;
  return Status::Ok();
}

Status XfrmInMemory::UpdateSa(const SaParams& sa) {
  const std::string operation = "update SA " + sa.id.ToString();
  if (Status valid = ValidateSa(sa, ownership_); !valid.ok()) return valid;
  if (Status failure = TakeInjectedFailure(operation); !failure.ok()) return failure;
  auto existing = sas_.find(SaKey(sa.id));
  if (existing == sas_.end()) return MakeError(operation, ESRCH, "no such SA");
  existing->second.params = sa;
  existing->second.larval = false;
  return Status::Ok();
}

Status XfrmInMemory::DeleteSa(const SaId& id) {
  const std::string operation = "delete SA " + id.ToString();
  if (Status failure = TakeInjectedFailure(operation); !failure.ok()) return failure;
  if (sas_.erase(SaKey(id)) == 0) return MakeError(operation, ESRCH, "no such SA");
  return Status::Ok();
}

SaInfo XfrmInMemory::Describe(const StoredSa& stored) const {
  const SaParams& sa = stored.params;
  SaInfo info;
  info.id = sa.id;
  info.src = sa.src;
  info.mode = sa.mode;
  info.reqid = sa.reqid;
  if (!stored.larval) {
    info.algorithm = CipherKernelName(sa.cipher);
    if (!IsAead(sa.cipher))
      info.algorithm += std::string("+") + IntegrityKernelName(sa.integrity) + "/" +
                        std::to_string(IcvBits(sa.cipher, sa.integrity));
  }
  info.extended_sequence_numbers = sa.extended_sequence_numbers;
  info.replay_window = sa.replay_window;
  info.lifetime = sa.lifetime;
  info.encap = sa.encap;
  info.counters = stored.counters;
  if (sa.replay) info.replay = *sa.replay;
  return info;
}

Result<SaInfo> XfrmInMemory::QuerySa(const SaId& id) {
  const std::string operation = "query SA " + id.ToString();
  if (Status failure = TakeInjectedFailure(operation); !failure.ok()) return failure.error();
  auto existing = sas_.find(SaKey(id));
  if (existing == sas_.end()) return MakeError(operation, ESRCH, "no such SA");
  return Describe(existing->second);
}

Status XfrmInMemory::AddPolicy(const PolicyParams& policy) {
  const std::string operation = "add policy " + policy.id.ToString();
  if (Status valid = ValidatePolicy(policy, ownership_); !valid.ok()) return valid;
  if (Status failure = TakeInjectedFailure(operation); !failure.ok()) return failure;
  const std::string key = PolicyKey(policy.id);
  auto existing = policies_.find(key);
  if (existing != policies_.end()) {
    if (existing->second.users == 0 || !(existing->second.params == policy))
      return MakeError(operation, EEXIST, "a different policy exists under this selector");
    ++existing->second.users;
    return Status::Ok();
  }
  policies_[key] = StoredPolicy{policy, next_policy_index_, 1};
  next_policy_index_ += 8;
  return Status::Ok();
}

Status XfrmInMemory::UpdatePolicy(const PolicyParams& policy) {
  const std::string operation = "update policy " + policy.id.ToString();
  if (Status valid = ValidatePolicy(policy, ownership_); !valid.ok()) return valid;
  if (Status failure = TakeInjectedFailure(operation); !failure.ok()) return failure;
  const std::string key = PolicyKey(policy.id);
  auto existing = policies_.find(key);
  if (existing == policies_.end()) {
    policies_[key] = StoredPolicy{policy, next_policy_index_, 1};
    next_policy_index_ += 8;
    return Status::Ok();
  }
  existing->second.params = policy;
  if (existing->second.users == 0) existing->second.users = 1;
  return Status::Ok();
}

Status XfrmInMemory::DeletePolicy(const PolicyId& id) {
  const std::string operation = "delete policy " + id.ToString();
  if (Status failure = TakeInjectedFailure(operation); !failure.ok()) return failure;
  auto existing = policies_.find(PolicyKey(id));
  if (existing == policies_.end()) return MakeError(operation, ENOENT, "no such policy");
  if (existing->second.users > 1) {
    --existing->second.users;
    return Status::Ok();
  }
  policies_.erase(existing);
  return Status::Ok();
}

int XfrmInMemory::PolicyUsers(const PolicyId& id) const {
  auto existing = policies_.find(PolicyKey(id));
  return existing == policies_.end() ? 0 : existing->second.users;
}

bool XfrmInMemory::HasSa(const SaId& id) const { return sas_.count(SaKey(id)) != 0; }

Result<OwnedState> XfrmInMemory::ListOwned() {
  if (Status failure = TakeInjectedFailure("list owned state"); !failure.ok()) return failure.error();
  OwnedState state;
  for (const auto& [key, sa] : sas_)
    if (ownership_.OwnsReqid(sa.params.reqid)) state.sas.push_back(Describe(sa));
  for (const auto& [key, policy] : policies_)
    if (ownership_.OwnsPriority(policy.params.priority))
      state.policies.push_back(PolicyInfo{policy.params, policy.index});
  return state;
}

Status XfrmInMemory::FlushOwned() {
  if (Status failure = TakeInjectedFailure("flush owned state"); !failure.ok()) return failure;
  for (auto it = sas_.begin(); it != sas_.end();)
    it = ownership_.OwnsReqid(it->second.params.reqid) ? sas_.erase(it) : std::next(it);
  for (auto it = policies_.begin(); it != policies_.end();)
    it = ownership_.OwnsPriority(it->second.params.priority) ? policies_.erase(it) : std::next(it);
  return Status::Ok();
}

Result<std::vector<KernelEvent>> XfrmInMemory::ProcessEvents() {
  std::vector<KernelEvent> events(events_.begin(), events_.end());
  events_.clear();
  return events;
}

Status XfrmInMemory::SetSocketPolicy(int fd, const SocketPolicy& policy) {
  if (Status valid = ValidateSocketPolicy(policy); !valid.ok()) return valid;
  const std::string operation = "set socket policy on fd " + std::to_string(fd);
  if (Status failure = TakeInjectedFailure(operation); !failure.ok()) return failure;
  if (fd < 0) return MakeError(operation, EBADF, "not a descriptor");
  socket_policies_[fd].push_back(policy);
  return Status::Ok();
}

Status XfrmInMemory::SetSocketBypass(int fd) {
  for (Direction direction : {Direction::kIn, Direction::kOut}) {
    SocketPolicy bypass;
    bypass.direction = direction;
    bypass.action = PolicyAction::kBypass;
    if (Status status = SetSocketPolicy(fd, bypass); !status.ok()) return status;
  }
  return Status::Ok();
}

Status XfrmInMemory::EnableUdpEncap(int fd) {
  const std::string operation = "enable UDP encapsulation on fd " + std::to_string(fd);
  if (Status failure = TakeInjectedFailure(operation); !failure.ok()) return failure;
  if (fd < 0) return MakeError(operation, EBADF, "not a descriptor");
  udp_encap_[fd] = true;
  return Status::Ok();
}

std::vector<SocketPolicy> XfrmInMemory::SocketPolicies(int fd) const {
  auto existing = socket_policies_.find(fd);
  return existing == socket_policies_.end() ? std::vector<SocketPolicy>{} : existing->second;
}

bool XfrmInMemory::UdpEncapEnabled(int fd) const { return udp_encap_.count(fd) != 0; }

void XfrmInMemory::AddForeignSa(const SaParams& sa) {
  StoredSa stored;
  stored.params = sa;
  sas_[SaKey(sa.id)] = stored;
}

void XfrmInMemory::AddForeignPolicy(const PolicyParams& policy) {
  policies_[PolicyKey(policy.id)] = StoredPolicy{policy, next_policy_index_, 1};
  next_policy_index_ += 8;
}

namespace {

bool Crossed(uint64_t limit, uint64_t value) { return limit != 0 && value >= limit; }

}  // namespace

Status XfrmInMemory::AddTraffic(const SaId& id, uint64_t bytes, uint64_t packets) {
  auto existing = sas_.find(SaKey(id));
  if (existing == sas_.end())
    return MakeError("count traffic on SA " + id.ToString(), ESRCH, "no such SA");
  StoredSa& sa = existing->second;
  sa.counters.bytes += bytes;
  sa.counters.packets += packets;
  const Lifetime& limits = sa.params.lifetime;
  if (Crossed(limits.hard_bytes, sa.counters.bytes) ||
      Crossed(limits.hard_packets, sa.counters.packets)) {
    events_.push_back(ExpireEvent{id, sa.params.reqid, /*hard=*/true});
    sas_.erase(existing);
    return Status::Ok();
  }
  if (!sa.soft_expired && (Crossed(limits.soft_bytes, sa.counters.bytes) ||
                           Crossed(limits.soft_packets, sa.counters.packets))) {
    sa.soft_expired = true;
    events_.push_back(ExpireEvent{id, sa.params.reqid, /*hard=*/false});
  }
  return Status::Ok();
}

void XfrmInMemory::InjectEvent(const KernelEvent& event) { events_.push_back(event); }

}  // namespace kernel_glue
