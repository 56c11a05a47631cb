#include "tests/sa/sim.h"

#include <algorithm>

namespace ike::sa::testing {

Node& Simulation::AddNode(const std::string& name, const std::string& address,
                          policy::PolicySnapshotPtr policy,
                          CredentialStore creds, EngineSettings settings) {
  auto n = std::make_unique<Node>();
  n->name = name;
  n->address = *policy::IpAddress::Parse(address);
  std::vector<uint8_t> seed(name.begin(), name.end());
  seed.push_back(uint8_t(rng_()));
  n->random = std::make_unique<crypto::DeterministicRandomSource>(seed);
  n->spis = std::make_unique<CountingSpiAllocator>(
      0xc0000000u + uint32_t(nodes_.size()) * 0x100000u);
  n->manager = std::make_unique<SaManager>(settings, std::move(policy),
                                           std::move(creds), *n->random,
                                           *n->spis);
  Node& ref = *n;
  nodes_[name] = std::move(n);
  return ref;
}

void Simulation::Feed(Node& n, const Event& e) {
  Actions actions = n.manager->Handle(e, now_);
  Execute(n, actions);
  ++events_;
  CheckContinuity();
}

void Simulation::CheckContinuity() {
  for (auto& [name, n] : nodes_) {
    std::set<uint32_t> reqids;
    for (const auto& p : n->spd) reqids.insert(p.reqid);
    for (uint32_t reqid : reqids) {
      bool in = false, out = false;
      for (const auto& [k, sa] : n->sad)
        if (sa.reqid == reqid)
          (sa.direction == SaDirection::kInbound ? in : out) = true;
      if (!in || !out)
        n->continuity_gaps.push_back(
            "event " + std::to_string(events_) + ": " + name + " reqid " +
            std::to_string(reqid) + " has policies but no " +
            (in ? "outbound" : "inbound") + " SA");
    }
    // The newest outbound SA of each reqid is what the kernel uses.
    std::map<uint32_t, std::pair<uint64_t, const InstallChildSa*>> newest;
    for (const auto& [k, sa] : n->sad) {
      if (sa.direction != SaDirection::kOutbound) continue;
      uint64_t order = n->install_order[k];
      auto& slot = newest[sa.reqid];
      if (!slot.second || order > slot.first) slot = {order, &sa};
    }
    std::map<uint32_t, size_t> outbound_count;
    for (const auto& [k, sa] : n->sad)
      if (sa.direction == SaDirection::kOutbound) ++outbound_count[sa.reqid];
    for (const auto& [reqid, slot] : newest) {
      for (auto& [peer_name, peer] : nodes_) {
        if (peer->address != slot.second->destination) continue;
        if (peer->retired_inbound.count(slot.second->spi))
          n->continuity_gaps.push_back(
              "event " + std::to_string(events_) + ": " + name +
              " sends on outbound spi " + std::to_string(slot.second->spi) +
              " which " + peer_name + " removed as rekeyed");
        // A rekey: an older outbound SA exists, yet the kernel picks the
        // new one before the peer can receive on it (RFC 7296 2.8).
        if (outbound_count[reqid] >= 2 &&
            !peer->sad.count({slot.second->destination.value,
                              slot.second->spi}))
          n->continuity_gaps.push_back(
              "event " + std::to_string(events_) + ": " + name +
              " sends on new outbound spi " +
              std::to_string(slot.second->spi) + " which " + peer_name +
              " has not installed yet");
      }
    }
  }
}

void Simulation::Execute(Node& n, Actions& actions) {
  auto bad = [&](std::string text) {
    ++n.errors;
    n.error_texts.push_back(std::move(text));
  };
  for (auto& a : actions) {
    if (auto* s = std::get_if<SendDatagram>(&a)) {
      n.sent.push_back(*s);
      Node* target = nullptr;
      Endpoint arrives_at = s->remote;
      if (nat && s->remote.address == nat->public_address &&
          nodes_.count(nat->inside)) {
        // Into the NAT: only its mappings lead inside.
        const uint16_t port = s->remote.port == nat->port_500    ? 500
                              : s->remote.port == nat->port_4500 ? 4500
                                                                 : 0;
        if (port == 0) {
          ++dropped;
          continue;
        }
        target = nodes_.at(nat->inside).get();
        arrives_at = Endpoint{target->address, port};
      } else {
        for (auto& [name, other] : nodes_)
          if (other->address == s->remote.address) target = other.get();
      }
      if (!target) continue;
      const bool leaves_nat = nat && n.name == nat->inside && target != &n;
      std::uniform_real_distribution<double> u(0, 1);
      int copies = 1;
      if (u(rng_) < faults.loss) copies = 0;
      if (copies && u(rng_) < faults.duplicate) copies = 2;
      for (int i = 0; i < copies; ++i) {
        Datagram d;
        auto span = (faults.max_delay - faults.min_delay).count();
        d.deliver_at = now_ + faults.min_delay +
                       Duration(span > 0 ? int64_t(rng_() % (span + 1)) : 0);
        d.sequence = sequence_++;
        d.from = n.name;
        d.to = target->name;
        d.event.local = arrives_at;
        d.event.remote = s->local;
        if (d.event.remote.address.value == 0)
          d.event.remote.address = n.address;
        if (leaves_nat)
          d.event.remote = Endpoint{
              nat->public_address,
              s->local.port == 500 ? nat->port_500 : nat->port_4500};
        d.event.bytes = s->bytes;
        if (drop_if && drop_if(d)) {
          ++dropped;
          continue;
        }
        in_flight_.push_back(std::move(d));
      }
      if (copies == 0) ++dropped;
    } else if (auto* t = std::get_if<ArmTimer>(&a)) {
      n.armed.push_back(*t);
      n.timers[t->timer] = now_ + t->delay;
    } else if (auto* c = std::get_if<CancelTimer>(&a)) {
      n.timers.erase(c->timer);
    } else if (auto* i = std::get_if<InstallChildSa>(&a)) {
      SadKey key{i->destination.value, i->spi};
      if (n.sad.count(key)) bad("SA installed twice: spi " + std::to_string(i->spi));
      if (i->direction == SaDirection::kInbound) n.spis->Consumed(i->spi);
      n.sad[key] = *i;
      n.install_order[key] = install_sequence_++;
      n.sad_trace.push_back(
          std::string(i->direction == SaDirection::kInbound ? "+in " : "+out ") +
          std::to_string(i->spi) + " reqid " + std::to_string(i->reqid));
    } else if (auto* e = std::get_if<UpdateChildSaEncapsulation>(&a)) {
      auto it = n.sad.find({e->destination.value, e->spi});
      if (it == n.sad.end() || !it->second.encapsulation) {
        bad("encapsulation update of unknown or unencapsulated SA spi " +
            std::to_string(e->spi));
      } else {
        it->second.encapsulation = e->encapsulation;
      }
    } else if (auto* m = std::get_if<MoveChildSa>(&a)) {
      SadKey old_key{m->old_destination.value, m->spi};
      auto it = n.sad.find(old_key);
      if (it == n.sad.end() || it->second.direction != m->direction) {
        bad("moving unknown SA spi " + std::to_string(m->spi));
        continue;
      }
      InstallChildSa moved = it->second;
      moved.source = m->source;
      moved.destination = m->destination;
      moved.encapsulation = m->encapsulation;
      moved.source_ts = m->source_ts;
      moved.destination_ts = m->destination_ts;
      SadKey key{m->destination.value, m->spi};
      if (!(key == old_key) && n.sad.count(key))
        bad("SA moved onto an existing one: spi " + std::to_string(m->spi));
      const uint64_t order = n.install_order[old_key];
      n.sad[key] = moved;
      n.install_order[key] = order;  // the same SA: its age is kept
      n.sad_trace.push_back(
          std::string(m->direction == SaDirection::kInbound ? "~in " : "~out ") +
          std::to_string(m->spi) + " to " + m->destination.ToString());
    } else if (auto* d = std::get_if<DeleteChildSa>(&a)) {
      if (!n.sad.erase({d->destination.value, d->spi}))
        bad("deleting unknown SA spi " + std::to_string(d->spi));
      n.install_order.erase({d->destination.value, d->spi});
      n.sad_trace.push_back(
          std::string(d->direction == SaDirection::kInbound ? "-in " : "-out ") +
          std::to_string(d->spi));
      if (d->direction == SaDirection::kInbound) {
        // Rekeyed or not is told by the ChildSaDown of the same batch.
        for (auto& later : actions)
          if (auto* cd = std::get_if<ChildSaDown>(&later))
            if (cd->child_sa == d->child_sa &&
                cd->reason == FailureReason::kRekeyed)
              n.retired_inbound.insert(d->spi);
      }
    } else if (auto* p = std::get_if<InstallPolicy>(&a)) {
      n.spd.push_back(*p);
    } else if (auto* r = std::get_if<RemovePolicy>(&a)) {
      auto it = std::find_if(n.spd.begin(), n.spd.end(), [&](const auto& x) {
        return x.child_sa == r->child_sa && x.direction == r->direction &&
               x.source == r->source && x.destination == r->destination;
      });
      if (it == n.spd.end()) {
        // Policies move to the replacement on rekey; match by selectors.
        it = std::find_if(n.spd.begin(), n.spd.end(), [&](const auto& x) {
          return x.direction == r->direction && x.source == r->source &&
                 x.destination == r->destination;
        });
      }
      if (it == n.spd.end()) {
        bad("removing unknown policy");
      } else {
        n.spd.erase(it);
      }
    } else if (auto* u = std::get_if<IkeSaUp>(&a)) {
      n.ike_up.push_back(*u);
    } else if (auto* dn = std::get_if<IkeSaDown>(&a)) {
      n.ike_down.push_back(*dn);
    } else if (auto* cu = std::get_if<ChildSaUp>(&a)) {
      n.child_up.push_back(*cu);
    } else if (auto* cd = std::get_if<ChildSaDown>(&a)) {
      n.child_down.push_back(*cd);
    } else if (auto* l = std::get_if<Log>(&a)) {
      n.logs.push_back(*l);
    } else if (auto* sr = std::get_if<SignRequest>(&a)) {
      n.sign_requests.push_back(*sr);
    }
  }
}

bool Simulation::NextEvent(Instant limit) {
  // Earliest datagram (ties by send order), then the earliest timer.
  int packet = -1;
  for (size_t i = 0; i < in_flight_.size(); ++i) {
    const auto& d = in_flight_[i];
    if (d.deliver_at > limit) continue;
    if (packet < 0 || d.deliver_at < in_flight_[packet].deliver_at ||
        (d.deliver_at == in_flight_[packet].deliver_at &&
         d.sequence < in_flight_[packet].sequence))
      packet = int(i);
  }
  Node* timer_node = nullptr;
  TimerId timer = 0;
  Instant timer_at = limit;
  for (auto& [name, n] : nodes_)
    for (auto& [id, when] : n->timers)
      if (when <= timer_at && (!timer_node || when < timer_at)) {
        timer_at = when;
        timer_node = n.get();
        timer = id;
      }
  bool use_packet =
      packet >= 0 && (!timer_node || in_flight_[packet].deliver_at <= timer_at);
  if (!use_packet && !timer_node) return false;
  if (use_packet) {
    Datagram d = std::move(in_flight_[packet]);
    in_flight_.erase(in_flight_.begin() + packet);
    if (d.deliver_at > now_) now_ = d.deliver_at;
    if (tamper) tamper(d);
    ++delivered;
    Feed(*nodes_.at(d.to), d.event);
  } else {
    if (timer_at > now_) now_ = timer_at;
    timer_node->timers.erase(timer);
    Feed(*timer_node, TimerFired{timer});
  }
  return true;
}

void Simulation::RunFor(Duration d) {
  Instant limit = now_ + d;
  for (int guard = 0; guard < 1000000 && NextEvent(limit); ++guard) {
  }
  now_ = std::max(now_, limit);
}

std::string CheckPairConsistent(const Node& a, const Node& b) {
  auto check = [](const Node& x, const Node& y) -> std::string {
    for (const auto& [k, sa] : x.sad) {
      if (sa.direction != SaDirection::kOutbound) continue;
      if (sa.destination != y.address) continue;
      auto it = y.sad.find(k);
      if (it == y.sad.end())
        return x.name + " outbound spi " + std::to_string(sa.spi) +
               " has no inbound SA at " + y.name;
      if (it->second.direction != SaDirection::kInbound ||
          it->second.encryption_key != sa.encryption_key ||
          it->second.integrity_key != sa.integrity_key ||
          it->second.transform.kernel_encryption !=
              sa.transform.kernel_encryption)
        return x.name + " outbound spi " + std::to_string(sa.spi) +
               " differs from " + y.name + "'s inbound SA";
    }
    return "";
  };
  std::string r = check(a, b);
  return r.empty() ? check(b, a) : r;
}

}  // namespace ike::sa::testing
