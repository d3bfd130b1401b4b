#include "registry/dns/dns_lookup.h"

#include <arpa/nameser.h>

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "registry/dns/dns_message.h"

namespace disco::dns {
namespace {

constexpr std::uint32_t kNoTtl = std::numeric_limits<std::uint32_t>::max();

struct LookupState {
  AresLoop* loop;
  std::shared_ptr<const DnsConfig> config;
  std::string service, name;
  LookupCallback done;

  int pending = 0;
  int nxdomain = 0, queries = 0;
  std::optional<Error> error;  // the first failure; the lookup then fails as a whole
  std::vector<SrvRecord> srv;
  std::map<std::string, std::set<std::string>> addresses;  // by canonical owner name
  std::map<std::string, std::uint32_t> address_ttl;        // smallest per owner
  std::uint32_t ttl = kNoTtl;
  std::vector<std::pair<std::string, int>> to_query;  // target follow-ups not sent yet

  // Addresses kept over all owners. A server answering each target with
  // thousands of records must not make us hold them all: at most max_records
  // per owner (each may become an instance, and only max_records are kept)
  // and 16 × max_records in all; only the kept SRV targets' count.
  std::size_t address_count = 0;

  // `wanted`: the owners to keep addresses of (nullptr: all).
  void AddAddresses(const DnsMessage& message, const std::string* as_owner,
                    const std::set<std::string>* wanted = nullptr) {
    for (const auto& record : message.addresses) {
      if (address_count >= 16 * config->max_records) return;
      // A CNAME'd answer names the alias's target: file it under the name asked for.
      const std::string& owner = as_owner ? *as_owner : record.owner;
      if (wanted && !wanted->contains(owner)) continue;
      auto& kept = addresses[owner];
      if (kept.contains(record.address)) continue;
      if (kept.size() >= config->max_records) {
        // Full: the lowest addresses are kept, whatever order they came in.
        if (record.address >= *kept.rbegin()) continue;
        kept.erase(std::prev(kept.end()));
        --address_count;
      }
      kept.insert(record.address);
      ++address_count;
      auto [it, fresh] = address_ttl.emplace(owner, record.ttl);
      if (!fresh) it->second = std::min(it->second, record.ttl);
    }
  }

  // Loop thread: a query ended. Failures other than "no such name/record"
  // fail the lookup: a set missing a target that timed out would be reported
  // as a change that did not happen.
  bool Absorb(int status, const std::string& asked) {
    ++queries;
    if (status == ARES_SUCCESS) return true;
    if (status == ARES_ENOTFOUND) ++nxdomain;
    if (status != ARES_ENODATA && status != ARES_ENOTFOUND && !error)
      error = AresError(status, asked);
    return false;
  }
};

void Finish(const std::shared_ptr<LookupState>& lookup) {
  auto& l = *lookup;
  if (l.error) return l.done(std::unexpected(*l.error));
  if (l.queries > 0 && l.nxdomain == l.queries && !l.config->nxdomain_is_empty && l.srv.empty())
    return l.done(std::unexpected(AresError(ARES_ENOTFOUND, l.name)));

  struct Candidate {
    ServiceInstance instance;
    std::uint16_t priority = 0;
    bool resolved = true;
  };
  std::map<std::string, Candidate> by_id;  // one per address:port, the best record wins
  auto consider = [&](Candidate candidate) {
    auto [it, fresh] = by_id.emplace(candidate.instance.id, candidate);
    if (fresh) return;
    auto& kept = it->second;
    if (std::tie(candidate.priority, kept.instance.weight) <
        std::tie(kept.priority, candidate.instance.weight))
      kept = std::move(candidate);
  };
  std::uint32_t ttl = l.ttl;
  if (l.config->mode == RecordMode::kAddress) {
    for (const auto& [owner, set] : l.addresses) {
      ttl = std::min(ttl, l.address_ttl[owner]);
      for (const auto& address : set) {
        Candidate c;
        c.instance.service = l.service;
        c.instance.host = address;
        c.instance.port = l.config->port;
        c.instance.id = HostPort{address, l.config->port}.ToString();
        consider(std::move(c));
      }
    }
  } else {
    for (const auto& srv : l.srv) {
      Candidate c;
      c.priority = srv.priority;
      c.instance.service = l.service;
      c.instance.port = srv.port;
      // RFC 2782 weight 0 means "rarely": the smallest weight disco has.
      c.instance.weight = std::clamp<std::uint32_t>(srv.weight, 1, 10000);
      c.instance.metadata = {{"dns_target", srv.target},
                             {"dns_priority", std::to_string(srv.priority)},
                             {"dns_weight", std::to_string(srv.weight)}};
      auto found = l.addresses.find(srv.target);
      if (found == l.addresses.end() || found->second.empty()) {
        c.resolved = false;  // listed (with --all) so that the broken record shows
        c.instance.host = srv.target;
        c.instance.id = HostPort{srv.target, srv.port}.ToString();
        consider(std::move(c));
        continue;
      }
      ttl = std::min(ttl, l.address_ttl[srv.target]);
      for (const auto& address : found->second) {
        Candidate one = c;
        one.instance.host = address;
        one.instance.id = HostPort{address, srv.port}.ToString();
        consider(std::move(one));
      }
    }
  }

  // Bounded whatever the server sends: max_records kept, the best first
  // (resolved, lowest priority, highest weight, then target, port and
  // address), never the answer's order or the ids' (a cut by id could keep
  // only standbys and leave nothing active). Then sorted by id again.
  std::vector<Candidate> kept;
  kept.reserve(by_id.size());
  for (auto& [id, c] : by_id) kept.push_back(std::move(c));
  auto better = [](const Candidate& a, const Candidate& b) {
    const std::uint32_t wa = a.instance.weight, wb = b.instance.weight;  // higher first
    return std::forward_as_tuple(!a.resolved, a.priority, wb, a.instance.metadata.at("dns_target"),
                                 a.instance.port, a.instance.host) <
           std::forward_as_tuple(!b.resolved, b.priority, wa, b.instance.metadata.at("dns_target"),
                                 b.instance.port, b.instance.host);
  };
  if (kept.size() > l.config->max_records) {
    if (l.config->mode == RecordMode::kSrv) {
      std::sort(kept.begin(), kept.end(), better);
    }
    kept.resize(l.config->max_records);
    std::sort(kept.begin(), kept.end(), [](const Candidate& a, const Candidate& b) {
      return a.instance.id < b.instance.id;
    });
  }
  std::optional<std::uint16_t> best;
  for (const auto& c : kept)
    if (c.resolved && (!best || c.priority < *best)) best = c.priority;
  LookupResult result;
  for (auto& c : kept) {
    InstanceStatus status{c.instance, HealthState::kPassing, {}};
    if (!c.resolved) {
      status.health = HealthState::kCritical;
      status.detail = "SRV target " + c.instance.host + " has no A/AAAA record";
    } else if (c.priority != *best) {
      status.health = HealthState::kWarning;
      status.detail = "standby: SRV priority " + std::to_string(c.priority) +
                      ", used when no priority " + std::to_string(*best) + " instance is left";
    } else {
      result.active.push_back(c.instance);
    }
    result.all.push_back(std::move(status));
  }
  result.ttl = std::chrono::seconds(ttl == kNoTtl ? 0 : ttl);
  l.done(std::move(result));
}

// At most this many target queries in flight per lookup: a burst of a
// thousand UDP queries overflows socket buffers (the server's or ours) and
// turns into timeouts; a window keeps the pace at what the server answers.
constexpr std::size_t kTargetWindow = 32;

void NextTargetQuery(const std::shared_ptr<LookupState>& lookup);

void OnTargetAnswer(const std::shared_ptr<LookupState>& lookup, const std::string& target,
                    int status, std::span<const unsigned char> answer) {
  auto& l = *lookup;
  if (status == ARES_SUCCESS) {
    if (auto message = ParseDnsMessage(answer))
      l.AddAddresses(*message, &target);
    else if (!l.error)
      l.error = message.error();
  } else if (status != ARES_ENODATA && status != ARES_ENOTFOUND && !l.error) {
    // A target with no address is the record's problem, shown per
    // instance; a failing server is the lookup's.
    l.error = AresError(status, target);
  }
  --l.pending;
  if (!l.error && status != ARES_EDESTRUCTION) NextTargetQuery(lookup);
  if (l.pending == 0) Finish(lookup);
}

void NextTargetQuery(const std::shared_ptr<LookupState>& lookup) {
  auto& l = *lookup;
  while (l.pending < static_cast<int>(kTargetWindow) && !l.to_query.empty()) {
    auto [target, type] = std::move(l.to_query.back());
    l.to_query.pop_back();
    ++l.pending;
    l.loop->Query(target, type, /*absolute=*/true,
                  [lookup, target](int status, std::span<const unsigned char> answer) {
                    OnTargetAnswer(lookup, target, status, answer);
                  });
  }
}

void QueryTargets(const std::shared_ptr<LookupState>& lookup) {
  auto& l = *lookup;
  std::set<std::string> missing;
  for (const auto& srv : l.srv)
    if (!l.addresses.contains(srv.target)) missing.insert(srv.target);
  if (missing.empty()) return Finish(lookup);
  for (const auto& target : missing) {
    if (l.config->ipv4) l.to_query.emplace_back(target, ns_t_a);
    if (l.config->ipv6) l.to_query.emplace_back(target, ns_t_aaaa);
  }
  NextTargetQuery(lookup);
}

void OnSrv(const std::shared_ptr<LookupState>& lookup, int status,
           std::span<const unsigned char> answer) {
  auto& l = *lookup;
  if (!l.Absorb(status, l.name)) return Finish(lookup);
  auto message = ParseDnsMessage(answer);
  if (!message) {
    l.error = message.error();
    return Finish(lookup);
  }
  for (auto& srv : message->srv) {
    if (srv.target.empty() || srv.port == 0)
      continue;  // "." means no service; port 0 serves nothing
    l.ttl = std::min(l.ttl, srv.ttl);
    l.srv.push_back(std::move(srv));
  }
  // Bounded before any follow-up query: the best records first.
  std::sort(l.srv.begin(), l.srv.end(), [](const SrvRecord& a, const SrvRecord& b) {
    return std::tie(a.priority, b.weight, a.target, a.port) <
           std::tie(b.priority, a.weight, b.target, b.port);
  });
  if (l.srv.size() > l.config->max_records) l.srv.resize(l.config->max_records);
  // Only the kept targets' addresses: those of the records cut must not
  // use up the bound on addresses.
  std::set<std::string> targets;
  for (const auto& srv : l.srv) targets.insert(srv.target);
  l.AddAddresses(*message, nullptr, &targets);
  QueryTargets(lookup);
}

}  // namespace

void Lookup(AresLoop& loop, std::shared_ptr<const DnsConfig> config, std::string service,
            LookupCallback done) {
  auto name = DnsName(*config, service);
  if (!name) return done(std::unexpected(name.error()));
  auto lookup = std::make_shared<LookupState>();
  lookup->loop = &loop;
  lookup->config = std::move(config);
  lookup->service = std::move(service);
  lookup->name = std::move(*name);
  lookup->done = std::move(done);
  auto& l = *lookup;
  if (l.config->mode == RecordMode::kSrv) {
    loop.Query(l.name, ns_t_srv, /*absolute=*/false,
               [lookup](int status, std::span<const unsigned char> answer) {
                 OnSrv(lookup, status, answer);
               });
    return;
  }
  std::vector<int> types;
  if (l.config->ipv4) types.push_back(ns_t_a);
  if (l.config->ipv6) types.push_back(ns_t_aaaa);
  l.pending = static_cast<int>(types.size());
  for (int type : types) {
    loop.Query(l.name, type, /*absolute=*/false,
               [lookup](int status, std::span<const unsigned char> answer) {
                 auto& l = *lookup;
                 if (l.Absorb(status, l.name)) {
                   if (auto message = ParseDnsMessage(answer))
                     l.AddAddresses(*message, &l.name);
                   else if (!l.error)
                     l.error = message.error();
                 }
                 if (--l.pending == 0) Finish(lookup);
               });
  }
}

}  // namespace disco::dns
