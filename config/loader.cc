#include "config/loader.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <botan/hash.h>
#include <botan/x509_dn.h>
#include <botan/x509cert.h>
#include <botan/x509_key.h>
#include <charconv>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <yaml-cpp/yaml.h>

namespace btnsd::config {
namespace {

namespace fs = std::filesystem;
using namespace ike::policy;  // NOLINT: the loader builds policy types only

// A YAML node together with the file it came from.
struct Src {
  YAML::Node node;
  std::string file;
  std::string path;  // field path of `node`, e.g. "pad[1]"
  int key_line = 0;  // for sections: line of the key that introduced it
};

std::string Join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}
std::string Index(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

thread_local AcceptedKeys* accepted_keys_recorder = nullptr;

std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

std::string Suggest(std::string_view key,
                    const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = SIZE_MAX;
  for (const auto& c : candidates) {
    size_t d = EditDistance(key, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  // Close enough to be a typo: at most 2 edits, and fewer than the length.
  if (best_distance <= 2 && best_distance < key.size())
    return "; did you mean " + Quote(best) + "?";
  std::string all;
  for (const auto& c : candidates) all += (all.empty() ? "" : ", ") + c;
  return "; expected one of: " + all;
}

class Loader {
 public:
  explicit Loader(const LoadOptions& options) : options_(options) {}
  LoadResult Run(const std::string& path);

 private:
  // --- diagnostics ---
  void Error(const std::string& file, const YAML::Mark& mark,
             const std::string& field, const std::string& message) {
    errors_.push_back({file, mark.is_null() ? 0 : mark.line + 1,
                       mark.is_null() ? 0 : mark.column + 1, field, message});
  }
  void Error(const Src& s, const std::string& message) {
    Error(s.file, s.node.Mark(), s.path, message);
  }

  // --- file reading ---
  void ReadFile(const std::string& display, const fs::path& real,
                std::vector<std::string>* chain);
  void Collect(const YAML::Node& root, const std::string& file,
               const fs::path& dir, std::vector<std::string>* chain);

  // --- generic checks ---
  bool CheckMap(const Src& s, const std::vector<std::string>& allowed);
  Src Child(const Src& parent, const std::string& key) const {
    return {parent.node[key], parent.file, Join(parent.path, key)};
  }
  std::optional<std::string> String(const Src& s);
  std::optional<bool> Bool(const Src& s);
  std::optional<uint64_t> Uint(const Src& s, uint64_t min, uint64_t max);
  std::optional<uint64_t> Duration(const Src& s);
  std::optional<uint64_t> Bytes(const Src& s);
  std::vector<Src> List(const Src& s);  // scalar or sequence -> items
  std::optional<std::string> ExistingFile(const Src& s);
  std::optional<Sha256> KeyFingerprint(const Src& s);
  std::string Resolve(const Src& s, const std::string& relative) const;
  bool Required(const Src& parent, const std::string& key);

  // --- sections ---
  void ParseSecrets();
  void ParseProposals();
  void ParseIdentities();
  void ParsePad();
  void ParseSpd();
  void ParseApi();
  void ParseDaemon();
  void CheckBtnsRules();
  std::optional<Identity> ParseIdentity(const Src& s);
  std::optional<IdMatcher> ParseMatcher(const Src& s);
  std::vector<TrafficSelector> ParseSelectorList(const Src& s);
  std::optional<PortRange> ParsePorts(const Src& s);
  std::optional<Lifetime> ParseLifetime(const Src& s, Lifetime defaults);
  std::optional<uint32_t> ResolveId(const Src& s, bool group);

  LoadOptions options_;
  std::vector<ConfigError> errors_;
  std::set<std::string> seen_files_;
  std::optional<Src> daemon_, secrets_, api_;
  // The secrets file was configured but could not be used: references to
  // it are not reported again, one error is enough.
  bool secrets_failed_ = false;
  std::vector<Src> identity_maps_, proposal_maps_, pad_items_, spd_items_;
  std::map<std::string, fs::path> file_dirs_;

  PolicySnapshot out_;
  std::vector<PadEntry> pad_;
  std::vector<Src> pad_src_;
  std::vector<SpdEntry> spd_;
  std::map<std::string, std::string> pad_defined_at_;
};

// ---------------------------------------------------------------- reading

void Loader::ReadFile(const std::string& display, const fs::path& real,
                      std::vector<std::string>* chain) {
  std::error_code ec;
  fs::path canonical = fs::weakly_canonical(real, ec);
  std::string key = ec ? real.string() : canonical.string();
  if (std::find(chain->begin(), chain->end(), key) != chain->end()) {
    std::string cycle;
    for (const auto& c : *chain) cycle += c + " -> ";
    errors_.push_back({display, 0, 0, "include",
                       "include cycle: " + cycle + key});
    return;
  }
  if (!seen_files_.insert(key).second) {
    errors_.push_back({display, 0, 0, "include",
                       "file is included more than once"});
    return;
  }
  YAML::Node root;
  try {
    if (!fs::is_regular_file(real, ec)) {
      errors_.push_back({display, 0, 0, "",
                         "cannot read file: no such regular file"});
      return;
    }
    root = YAML::LoadFile(real.string());
  } catch (const YAML::ParserException& e) {
    errors_.push_back({display, e.mark.line + 1, e.mark.column + 1, "",
                       "YAML syntax error: " + e.msg});
    return;
  } catch (const std::exception& e) {
    errors_.push_back({display, 0, 0, "", std::string("cannot read file: ") +
                                              e.what()});
    return;
  }
  file_dirs_[display] = real.parent_path();
  chain->push_back(key);
  Collect(root, display, real.parent_path(), chain);
  chain->pop_back();
}

void Loader::Collect(const YAML::Node& root, const std::string& file,
                     const fs::path& dir, std::vector<std::string>* chain) {
  if (root.IsNull()) return;  // an empty file is a valid, empty policy
  Src top{root, file, ""};
  if (!root.IsMap()) {
    Error(top, "expected a mapping of sections (daemon, identities, pad, "
               "spd, proposals, api, secrets, include)");
    return;
  }
  CheckMap(top, {"include", "daemon", "secrets", "identities", "pad", "spd",
                 "proposals", "api"});
  // Included files come first, so the including file's PAD and SPD
  // entries (typically a BTNS catch-all) follow theirs.
  if (root["include"]) {
    for (const Src& item : List(Child(top, "include"))) {
      auto rel = String(item);
      if (!rel) continue;
      fs::path p = fs::path(*rel).is_absolute() ? fs::path(*rel) : dir / *rel;
      fs::path shown = fs::path(*rel).is_absolute()
                           ? fs::path(*rel)
                           : fs::path(file).parent_path() / *rel;
      std::error_code ec;
      if (!fs::is_regular_file(p, ec)) {
        Error(item, "included file " + shown.lexically_normal().string() +
                        " does not exist");
        continue;
      }
      size_t before = errors_.size();
      ReadFile(shown.lexically_normal().string(), p, chain);
      // Errors about the include itself point at the include line.
      for (size_t i = before; i < errors_.size(); ++i)
        if (errors_[i].field == "include" && errors_[i].line == 0) {
          errors_[i].file = file;
          errors_[i].line = item.node.Mark().line + 1;
          errors_[i].column = item.node.Mark().column + 1;
          errors_[i].field = item.path;
        }
    }
  }
  auto key_line = [](const YAML::Node& map, const std::string& key) {
    for (auto it = map.begin(); it != map.end(); ++it)
      if (it->first.IsScalar() && it->first.Scalar() == key)
        return it->first.Mark();
    return YAML::Mark::null_mark();
  };
  auto single = [&](const char* name, std::optional<Src>* slot) {
    if (!root[name]) return;
    Src s = Child(top, name);
    if (*slot) {
      Error(file, key_line(root, name), name,
            std::string("section '") + name + "' is already defined in " +
                (*slot)->file + ":" +
                std::to_string((*slot)->key_line) +
                "; it may appear only once");
      return;
    }
    s.key_line = key_line(root, name).line + 1;
    *slot = s;
  };
  single("daemon", &daemon_);
  single("secrets", &secrets_);
  single("api", &api_);
  if (root["identities"]) identity_maps_.push_back(Child(top, "identities"));
  if (root["proposals"]) proposal_maps_.push_back(Child(top, "proposals"));
  for (const char* name : {"pad", "spd"}) {
    if (!root[name]) continue;
    Src list = Child(top, name);
    if (list.node.IsNull()) continue;  // every entry commented out
    if (!list.node.IsSequence()) {
      Error(list, "expected a list of entries (each starting with '- name:')");
      continue;
    }
    for (size_t i = 0; i < list.node.size(); ++i)
      (name[0] == 'p' ? pad_items_ : spd_items_)
          .push_back({list.node[i], file, Index(name, i)});
  }
}

// ---------------------------------------------------------------- helpers

bool Loader::CheckMap(const Src& s, const std::vector<std::string>& allowed) {
  if (accepted_keys_recorder != nullptr)
    (*accepted_keys_recorder)[s.path].insert(allowed.begin(), allowed.end());
  if (!s.node.IsMap()) {
    Error(s, "expected a mapping with keys: " + [&] {
      std::string all;
      for (const auto& a : allowed) all += (all.empty() ? "" : ", ") + a;
      return all;
    }());
    return false;
  }
  std::map<std::string, int> seen;
  for (auto it = s.node.begin(); it != s.node.end(); ++it) {
    const YAML::Node& k = it->first;
    if (!k.IsScalar()) {
      Error(s.file, k.Mark(), s.path, "keys must be plain strings");
      continue;
    }
    std::string key = k.Scalar();
    std::string field = Join(s.path, key);
    if (auto prev = seen.find(key); prev != seen.end()) {
      Error(s.file, k.Mark(), field,
            "duplicate key (first at line " + std::to_string(prev->second) +
                ")");
      continue;
    }
    seen[key] = k.Mark().line + 1;
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
      Error(s.file, k.Mark(), field,
            "unknown key " + Quote(key) + Suggest(key, allowed));
  }
  return true;
}

bool Loader::Required(const Src& parent, const std::string& key) {
  if (parent.node.IsMap() && parent.node[key]) return true;
  Error(parent.file, parent.node.Mark(), Join(parent.path, key),
        "required field is missing");
  return false;
}

std::optional<std::string> Loader::String(const Src& s) {
  if (!s.node.IsScalar()) {
    Error(s, "expected a string");
    return std::nullopt;
  }
  return s.node.Scalar();
}

std::optional<bool> Loader::Bool(const Src& s) {
  if (s.node.IsScalar()) {
    const std::string& v = s.node.Scalar();
    if (v == "true" || v == "yes" || v == "on") return true;
    if (v == "false" || v == "no" || v == "off") return false;
  }
  Error(s, "expected true or false");
  return std::nullopt;
}

std::optional<uint64_t> Loader::Uint(const Src& s, uint64_t min,
                                     uint64_t max) {
  std::string range =
      "an integer from " + std::to_string(min) + " to " + std::to_string(max);
  if (!s.node.IsScalar()) {
    Error(s, "expected " + range);
    return std::nullopt;
  }
  std::string_view text = s.node.Scalar();
  int base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
    text.remove_prefix(2);
  }
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v,
                                 base);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size() ||
      v < min || v > max) {
    Error(s, "expected " + range + ", got " + Quote(s.node.Scalar()));
    return std::nullopt;
  }
  return v;
}

namespace {
// "90", "90s", "30m", "4h", "1d" -> seconds; "1000", "10K", "5M", "2G"
// -> bytes (powers of 1024).
std::optional<uint64_t> ScaledNumber(
    std::string_view text, const std::vector<std::pair<char, uint64_t>>& units) {
  if (text.empty()) return std::nullopt;
  uint64_t scale = 1;
  for (const auto& [suffix, factor] : units)
    if (text.back() == suffix) {
      scale = factor;
      text.remove_suffix(1);
      break;
    }
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size())
    return std::nullopt;
  if (v > UINT64_MAX / scale) return std::nullopt;
  return v * scale;
}
}  // namespace

std::optional<uint64_t> Loader::Duration(const Src& s) {
  std::optional<uint64_t> v;
  if (s.node.IsScalar())
    v = ScaledNumber(s.node.Scalar(),
                     {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}});
  if (!v) Error(s, "expected a duration such as 3600, 90s, 30m, 8h or 1d");
  return v;
}

std::optional<uint64_t> Loader::Bytes(const Src& s) {
  std::optional<uint64_t> v;
  if (s.node.IsScalar())
    v = ScaledNumber(s.node.Scalar(), {{'K', 1ull << 10},
                                       {'M', 1ull << 20},
                                       {'G', 1ull << 30},
                                       {'T', 1ull << 40}});
  if (!v) Error(s, "expected a byte count such as 1000000, 512M or 4G");
  return v;
}

std::vector<Src> Loader::List(const Src& s) {
  std::vector<Src> out;
  if (s.node.IsScalar()) {
    out.push_back(s);
  } else if (s.node.IsSequence()) {
    for (size_t i = 0; i < s.node.size(); ++i)
      out.push_back({s.node[i], s.file, Index(s.path, i)});
  } else {
    Error(s, "expected a value or a list of values");
  }
  return out;
}

std::string Loader::Resolve(const Src& s, const std::string& relative) const {
  fs::path p(relative);
  if (p.is_absolute()) return p.string();
  auto dir = file_dirs_.find(s.file);
  return ((dir == file_dirs_.end() ? fs::path() : dir->second) / p)
      .lexically_normal()
      .string();
}

std::optional<std::string> Loader::ExistingFile(const Src& s) {
  auto rel = String(s);
  if (!rel) return std::nullopt;
  std::string path = Resolve(s, *rel);
  if (options_.check_files) {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
      Error(s, "file " + Quote(*rel) + " not found (looked for " + path + ")");
      return std::nullopt;
    }
  }
  return path;
}

// SHA-256 of the DER SubjectPublicKeyInfo of a public key or certificate
// file (PEM or DER), or a literal "sha256:<hex>" fingerprint.
std::optional<Sha256> Loader::KeyFingerprint(const Src& s) {
  auto text = String(s);
  if (!text) return std::nullopt;
  if (text->rfind("sha256:", 0) == 0) {
    auto fp = ParseFingerprint(*text);
    if (!fp) Error(s, "expected sha256: followed by 64 hex digits");
    return fp;
  }
  auto path = ExistingFile(s);
  if (!path) return std::nullopt;
  if (!options_.check_files) return Sha256{};
  std::vector<uint8_t> spki;
  try {
    Botan::X509_Certificate cert(*path);
    spki = cert.subject_public_key_info();
  } catch (const std::exception&) {
    try {
      std::unique_ptr<Botan::Public_Key> key(Botan::X509::load_key(*path));
      spki = key->subject_public_key();
    } catch (const std::exception&) {
      Error(s, "file " + Quote(*text) +
                   " is neither a PEM/DER public key (SubjectPublicKeyInfo) "
                   "nor a certificate");
      return std::nullopt;
    }
  }
  auto hash = Botan::HashFunction::create_or_throw("SHA-256");
  auto digest = hash->process(spki);
  Sha256 out{};
  std::copy(digest.begin(), digest.end(), out.begin());
  return out;
}

// ---------------------------------------------------------------- secrets

void Loader::ParseSecrets() {
  if (!secrets_) return;
  secrets_failed_ = true;
  auto rel = String(*secrets_);
  if (!rel) return;
  std::string path = Resolve(*secrets_, *rel);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    Error(*secrets_, "secrets file " + Quote(*rel) + " not found (looked for " +
                         path + ")");
    return;
  }
  if (options_.check_secrets_mode && (st.st_mode & 077)) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
    Error(*secrets_, "secrets file " + path + " has mode " + mode +
                         " and is accessible by group or others; expected "
                         "0600 or stricter (chmod 600 " + path + ")");
    return;
  }
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::ParserException& e) {
    errors_.push_back({path, e.mark.line + 1, e.mark.column + 1, "",
                       "YAML syntax error: " + e.msg});
    return;
  } catch (const std::exception& e) {
    Error(*secrets_, std::string("cannot read secrets file: ") + e.what());
    return;
  }
  secrets_failed_ = false;
  if (root.IsNull()) return;
  if (!root.IsMap()) {
    Error(path, root.Mark(), "", "expected a mapping of secret name to value");
    secrets_failed_ = true;
    return;
  }
  for (auto it = root.begin(); it != root.end(); ++it) {
    std::string name = it->first.Scalar();
    Src v{it->second, path, name};
    auto text = String(v);
    if (!text) continue;
    Secret secret{name, {}};
    if (text->rfind("0x", 0) == 0) {
      std::string_view hex = std::string_view(*text).substr(2);
      bool ok = !hex.empty() && hex.size() % 2 == 0;
      for (size_t i = 0; ok && i < hex.size(); i += 2) {
        unsigned byte = 0;
        auto [p, ec] = std::from_chars(hex.data() + i, hex.data() + i + 2,
                                       byte, 16);
        ok = ec == std::errc() && p == hex.data() + i + 2;
        secret.value.push_back(static_cast<uint8_t>(byte));
      }
      if (!ok) {
        Error(v, "expected 0x followed by an even number of hex digits");
        continue;
      }
    } else {
      secret.value.assign(text->begin(), text->end());
    }
    if (secret.value.empty()) {
      Error(v, "a shared key must not be empty");
      continue;
    }
    out_.secrets.push_back(std::move(secret));
  }
}

// ---------------------------------------------------------------- proposals

void Loader::ParseProposals() {
  out_.proposals = {DefaultIkeProposals(), DefaultEspProposals()};
  const std::vector<std::pair<std::string, TransformType>> kTypes = {
      {"encryption", TransformType::kEncr},
      {"integrity", TransformType::kInteg},
      {"prf", TransformType::kPrf},
      {"ke", TransformType::kKe},
      {"esn", TransformType::kEsn}};
  std::set<std::string> defined;
  for (const Src& map : proposal_maps_) {
    if (map.node.IsNull()) continue;
    if (!map.node.IsMap()) {
      Error(map, "expected a mapping of proposal set name to set");
      continue;
    }
    for (auto it = map.node.begin(); it != map.node.end(); ++it) {
      std::string name = it->first.Scalar();
      Src set{it->second, map.file, Join(map.path, name)};
      if (!defined.insert(name).second) {
        Error(map.file, it->first.Mark(), set.path,
              "proposal set " + Quote(name) + " is defined twice");
        continue;
      }
      if (!CheckMap(set, {"allow_deprecated", "proposals"})) continue;
      ProposalSet ps{name, {}, false};
      if (set.node["allow_deprecated"])
        ps.allow_deprecated =
            Bool(Child(set, "allow_deprecated")).value_or(false);
      if (!Required(set, "proposals")) continue;
      Src list = Child(set, "proposals");
      if (!list.node.IsSequence() || list.node.size() == 0) {
        Error(list, "expected a non-empty list of proposals");
        continue;
      }
      bool set_ok = true;
      for (size_t i = 0; i < list.node.size(); ++i) {
        Src ps_src{list.node[i], set.file, Index(list.path, i)};
        std::vector<std::string> keys;
        for (const auto& [k, t] : kTypes) keys.push_back(k);
        if (!CheckMap(ps_src, keys)) { set_ok = false; continue; }
        Proposal p;
        bool any_aead = false, any_plain = false;
        for (const auto& [key, type] : kTypes) {
          if (!ps_src.node[key]) continue;
          for (const Src& alg : List(Child(ps_src, key))) {
            auto text = String(alg);
            if (!text) { set_ok = false; continue; }
            auto found = FindAlgorithm(type, *text);
            if (!found) {
              std::vector<std::string> names;
              for (const auto& a : AllAlgorithmNames())
                if (a.type == type) names.emplace_back(a.name);
              Error(alg, "unknown algorithm " + Quote(*text) +
                             Suggest(*text, names));
              set_ok = false;
              continue;
            }
            if (found->deprecated && !ps.allow_deprecated) {
              Error(alg, Quote(*text) +
                             " is deprecated (RFC 8247); set "
                             "allow_deprecated: true on proposal set " +
                             Quote(name) + " to use it anyway");
              set_ok = false;
              continue;
            }
            switch (type) {
              case TransformType::kEncr:
                p.encryption.push_back(
                    {static_cast<EncrId>(found->id), found->key_bits});
                (found->aead ? any_aead : any_plain) = true;
                break;
              case TransformType::kInteg:
                p.integrity.push_back(static_cast<IntegId>(found->id));
                break;
              case TransformType::kPrf:
                p.prf.push_back(static_cast<PrfId>(found->id));
                break;
              case TransformType::kKe:
                p.ke.push_back(static_cast<KeGroup>(found->id));
                break;
              case TransformType::kEsn:
                p.esn.push_back(static_cast<EsnId>(found->id));
                break;
            }
          }
        }
        if (!ps_src.node.IsMap()) continue;
        if (!ps_src.node["encryption"]) {
          Error(ps_src.file, ps_src.node.Mark(), Join(ps_src.path, "encryption"),
                "required field is missing");
          set_ok = false;
        }
        // RFC 7296 3.3: a proposal is either all AEAD (no integrity) or
        // all classic ciphers with an integrity algorithm.
        if (any_aead && any_plain) {
          Error(Child(ps_src, "encryption"),
                "AEAD and non-AEAD ciphers cannot share a proposal; put them "
                "in separate proposals");
          set_ok = false;
        } else if (any_aead && !p.integrity.empty()) {
          Error(Child(ps_src, "integrity"),
                "AEAD ciphers carry their own integrity; remove 'integrity'");
          set_ok = false;
        } else if (any_plain && p.integrity.empty()) {
          Error(Child(ps_src, "encryption"),
                "a non-AEAD cipher needs an 'integrity' algorithm");
          set_ok = false;
        }
        ps.proposals.push_back(std::move(p));
      }
      if (!set_ok) continue;
      auto existing = std::find_if(
          out_.proposals.begin(), out_.proposals.end(),
          [&](const ProposalSet& x) { return x.name == name; });
      if (existing != out_.proposals.end()) *existing = std::move(ps);
      else out_.proposals.push_back(std::move(ps));
    }
  }
}

// ---------------------------------------------------------------- identities

std::optional<Identity> Loader::ParseIdentity(const Src& s) {
  // `id: null` is YAML's null, which is exactly what it means here.
  if (s.node.IsNull()) return Identity::Null();
  auto text = String(s);
  if (!text) return std::nullopt;
  if (text->rfind("dn:", 0) == 0) {
    std::string dn_text = text->substr(3);
    try {
      Botan::X509_DN dn;
      std::istringstream in(dn_text);
      in >> dn;
      if (dn.empty()) throw std::invalid_argument("empty");
      return Identity::DerDn(dn.BER_encode(), dn_text);
    } catch (const std::exception&) {
      Error(s, "expected a distinguished name such as "
               "'dn:CN=host.example.com,O=Example'");
      return std::nullopt;
    }
  }
  std::string why;
  auto id = ParseSimpleIdentity(*text, &why);
  if (!id) Error(s, why);
  return id;
}

void Loader::ParseIdentities() {
  for (const Src& map : identity_maps_) {
    if (map.node.IsNull()) continue;
    if (!map.node.IsMap()) {
      Error(map, "expected a mapping of identity name to identity");
      continue;
    }
    for (auto it = map.node.begin(); it != map.node.end(); ++it) {
      std::string name = it->first.Scalar();
      Src s{it->second, map.file, Join(map.path, name)};
      if (out_.FindIdentity(name)) {
        Error(map.file, it->first.Mark(), s.path,
              "identity " + Quote(name) + " is defined twice");
        continue;
      }
      if (!CheckMap(s, {"id", "private_key", "certificate", "raw_key", "psk"}))
        continue;
      LocalIdentity li;
      li.name = name;
      bool ok = Required(s, "id");
      if (ok) {
        auto id = ParseIdentity(Child(s, "id"));
        ok = id.has_value();
        if (id) li.id = *id;
      }
      if (s.node["certificate"] && s.node["raw_key"]) {
        Error(Child(s, "raw_key"),
              "use either 'certificate' or 'raw_key', not both");
        ok = false;
      }
      if (s.node["certificate"]) {
        li.credential = CredentialKind::kCertificate;
        auto f = ExistingFile(Child(s, "certificate"));
        ok = ok && f;
        li.certificate_file = f.value_or("");
      }
      if (s.node["raw_key"]) {
        li.credential = CredentialKind::kRawKey;
        auto f = ExistingFile(Child(s, "raw_key"));
        ok = ok && f;
        li.public_key_file = f.value_or("");
      }
      if (s.node["private_key"]) {
        auto f = ExistingFile(Child(s, "private_key"));
        ok = ok && f;
        li.private_key_file = f.value_or("");
      } else if (li.credential != CredentialKind::kNone) {
        Required(s, "private_key");
        ok = false;
      }
      if (s.node["psk"]) {
        Src psk = Child(s, "psk");
        auto ref = String(psk);
        if (ref && !secrets_failed_ && !out_.FindSecret(*ref)) {
          Error(psk, "no secret named " + Quote(*ref) +
                         (secrets_ ? " in the secrets file"
                                   : " (no 'secrets:' file is configured)"));
          ok = false;
        }
        li.psk_name = ref.value_or("");
      }
      // A broken identity is still registered by name, so references to it
      // do not raise a second, misleading "no identity named" error.
      if (ok) out_.identities.push_back(std::move(li));
      else out_.identities.push_back({name, {}, {}, {}, {}, {}, {}});
    }
  }
}

// ---------------------------------------------------------------- PAD

std::optional<IdMatcher> Loader::ParseMatcher(const Src& s) {
  auto text = String(s);
  if (!text) return std::nullopt;
  IdMatcher m;
  if (*text == "any") return m;
  std::string_view t = *text;
  if (t.rfind("fqdn:*.", 0) == 0) {
    m.kind = IdMatcher::Kind::kDomainSuffix;
    m.suffix = std::string(t.substr(7));
    std::transform(m.suffix.begin(), m.suffix.end(), m.suffix.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    return m;
  }
  if (t.rfind("email:*@", 0) == 0) {
    m.kind = IdMatcher::Kind::kEmailDomain;
    m.suffix = std::string(t.substr(8));
    std::transform(m.suffix.begin(), m.suffix.end(), m.suffix.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    return m;
  }
  if ((t.rfind("ipv4:", 0) == 0 || t.rfind("ipv6:", 0) == 0) &&
      (t.find('/') != std::string_view::npos ||
       t.find('-') != std::string_view::npos)) {
    std::string why;
    auto r = IpRange::Parse(t.substr(5), &why);
    if (!r || (r->family() == IpFamily::kV4) != (t[3] == '4')) {
      Error(s, r ? "address family does not match '" +
                       std::string(t.substr(0, 4)) + "'"
                 : why);
      return std::nullopt;
    }
    m.kind = IdMatcher::Kind::kSubnet;
    m.subnet = *r;
    return m;
  }
  auto id = ParseIdentity(s);
  if (!id) return std::nullopt;
  m.kind = IdMatcher::Kind::kExact;
  m.exact = *id;
  return m;
}

std::optional<PortRange> Loader::ParsePorts(const Src& s) {
  if (!s.node.IsScalar()) {
    Error(s, "expected a port (443) or a port range (1024-65535)");
    return std::nullopt;
  }
  std::string_view t = s.node.Scalar();
  if (t == "any") return PortRange{};
  size_t dash = t.find('-');
  unsigned lo = 0, hi = 0;
  auto parse = [](std::string_view x, unsigned* v) {
    auto [p, ec] = std::from_chars(x.data(), x.data() + x.size(), *v);
    return !x.empty() && ec == std::errc() && p == x.data() + x.size() &&
           *v <= 65535;
  };
  bool ok = dash == std::string_view::npos
                ? parse(t, &lo) && (hi = lo, true)
                : parse(t.substr(0, dash), &lo) && parse(t.substr(dash + 1), &hi);
  if (!ok || lo > hi) {
    Error(s, "expected a port (443) or a port range (1024-65535), got " +
                 Quote(t));
    return std::nullopt;
  }
  return PortRange{static_cast<uint16_t>(lo), static_cast<uint16_t>(hi)};
}

// "ADDRESSES [PROTOCOL [PORTS]]", ADDRESSES being a prefix, range, single
// address or "any" (both families).
std::vector<TrafficSelector> Loader::ParseSelectorList(const Src& s) {
  std::vector<TrafficSelector> out;
  for (const Src& item : List(s)) {
    auto text = String(item);
    if (!text) continue;
    std::istringstream words(*text);
    std::vector<std::string> w;
    for (std::string x; words >> x;) w.push_back(x);
    if (w.empty() || w.size() > 3) {
      Error(item, "expected 'ADDRESSES [PROTOCOL [PORTS]]', e.g. "
                  "'198.51.100.0/24' or '192.0.2.7 tcp 2049'");
      continue;
    }
    std::vector<IpRange> ranges;
    if (w[0] == "any") {
      ranges = {IpRange::All(IpFamily::kV4), IpRange::All(IpFamily::kV6)};
    } else {
      std::string why;
      auto r = IpRange::Parse(w[0], &why);
      if (!r) {
        Error(item, why);
        continue;
      }
      ranges = {*r};
    }
    uint8_t proto = kAnyProtocol;
    if (w.size() > 1) {
      auto p = ParseIpProtocol(w[1]);
      if (!p) {
        Error(item, "unknown protocol " + Quote(w[1]) +
                        "; expected tcp, udp, icmp, icmpv6, sctp, gre, any "
                        "or a number 0-255");
        continue;
      }
      proto = *p;
    }
    PortRange ports;
    if (w.size() > 2) {
      if (proto == kAnyProtocol) {
        Error(item, "ports need a protocol (tcp, udp, sctp ...)");
        continue;
      }
      auto p = ParsePorts({YAML::Node(w[2]), item.file, item.path});
      if (!p) {
        errors_.back().line = item.node.Mark().line + 1;
        errors_.back().column = item.node.Mark().column + 1;
        continue;
      }
      ports = *p;
    }
    for (const auto& r : ranges) out.push_back({r, proto, ports});
  }
  return out;
}

void Loader::ParsePad() {
  for (const Src& s : pad_items_) {
    if (!CheckMap(s, {"name", "peer", "auth", "psk", "ca", "pubkey", "btns",
                      "remote_ts", "local_identity"}))
      continue;
    PadEntry e;
    bool ok = Required(s, "name");
    if (ok) {
      Src n = Child(s, "name");
      auto name = String(n);
      if (name) {
        e.name = *name;
        auto prev = pad_defined_at_.find(e.name);
        if (prev != pad_defined_at_.end()) {
          Error(n, "PAD entry " + Quote(e.name) + " is already defined at " +
                       prev->second);
          ok = false;
        } else {
          pad_defined_at_[e.name] =
              s.file + ":" + std::to_string(n.node.Mark().line + 1);
        }
      } else {
        ok = false;
      }
    }
    if (!Required(s, "auth")) {
      ok = false;
    } else {
      Src a = Child(s, "auth");
      auto method = String(a);
      if (method == "psk") e.auth = PeerAuthMethod::kPsk;
      else if (method == "ca") e.auth = PeerAuthMethod::kCa;
      else if (method == "pubkey") e.auth = PeerAuthMethod::kPinnedKey;
      else if (method == "btns") e.auth = PeerAuthMethod::kBtns;
      else {
        if (method)
          Error(a, "unknown auth method " + Quote(*method) +
                       Suggest(*method, {"psk", "ca", "pubkey", "btns"}));
        ok = false;
        continue;
      }
    }
    // Keys that only make sense for one method.
    const std::vector<std::pair<std::string, PeerAuthMethod>> kOwnKeys = {
        {"psk", PeerAuthMethod::kPsk},
        {"ca", PeerAuthMethod::kCa},
        {"pubkey", PeerAuthMethod::kPinnedKey},
        {"btns", PeerAuthMethod::kBtns}};
    for (const auto& [key, method] : kOwnKeys) {
      if (s.node[key] && e.auth != method) {
        Error(Child(s, key), Quote(key) + " is only valid with auth: " +
                                 std::string(PeerAuthMethodName(method)));
        ok = false;
      }
    }
    if (s.node["peer"]) {
      Src p = Child(s, "peer");
      auto m = ParseMatcher(p);
      if (!m) ok = false;
      else e.peer_id = *m;
      // RFC 5386 section 2 / RFC 7619 section 3: a BTNS peer's asserted ID
      // carries no authority, so a BTNS entry cannot select by it.
      if (m && e.IsBtns() && m->kind != IdMatcher::Kind::kAny) {
        Error(p, "a BTNS entry matches unauthenticated peers by key, not by "
                 "ID; use peer: any (or omit it)");
        ok = false;
      }
    } else if (!e.IsBtns()) {
      Required(s, "peer");
      ok = false;
    }
    switch (e.auth) {
      case PeerAuthMethod::kPsk:
        if (Required(s, "psk")) {
          Src r = Child(s, "psk");
          auto name = String(r);
          if (name && !secrets_failed_ && !out_.FindSecret(*name)) {
            Error(r, "no secret named " + Quote(*name) +
                         (secrets_ ? " in the secrets file"
                                   : " (no 'secrets:' file is configured)"));
            ok = false;
          }
          e.psk_name = name.value_or("");
        } else {
          ok = false;
        }
        break;
      case PeerAuthMethod::kCa:
        if (Required(s, "ca")) {
          for (const Src& f : List(Child(s, "ca"))) {
            auto path = ExistingFile(f);
            if (path) e.ca_files.push_back(*path);
            else ok = false;
          }
        } else {
          ok = false;
        }
        break;
      case PeerAuthMethod::kPinnedKey:
        if (Required(s, "pubkey")) {
          for (const Src& k : List(Child(s, "pubkey"))) {
            auto fp = KeyFingerprint(k);
            if (!fp) { ok = false; continue; }
            e.pinned_keys.push_back(*fp);
            if (k.node.Scalar().rfind("sha256:", 0) != 0)
              e.pinned_key_files.push_back(Resolve(k, k.node.Scalar()));
          }
        } else {
          ok = false;
        }
        break;
      case PeerAuthMethod::kBtns:
        if (s.node["btns"]) {
          Src b = Child(s, "btns");
          if (CheckMap(b, {"accept_null", "accept_raw_key", "keys"})) {
            if (b.node["accept_null"])
              e.btns.accept_null = Bool(Child(b, "accept_null")).value_or(true);
            if (b.node["accept_raw_key"])
              e.btns.accept_raw_key =
                  Bool(Child(b, "accept_raw_key")).value_or(true);
            if (b.node["keys"])
              for (const Src& k : List(Child(b, "keys"))) {
                auto fp = KeyFingerprint(k);
                if (fp) e.btns.keys.push_back(*fp);
                else ok = false;
              }
            if (!e.btns.accept_null && !e.btns.accept_raw_key) {
              Error(b, "accept_null and accept_raw_key are both false; the "
                       "entry would match no peer");
              ok = false;
            }
            if (!e.btns.keys.empty() && !e.btns.accept_raw_key) {
              Error(Child(b, "keys"), "'keys' needs accept_raw_key: true");
              ok = false;
            }
          } else {
            ok = false;
          }
        }
        break;
    }
    if (s.node["remote_ts"]) {
      e.remote_ts = ParseSelectorList(Child(s, "remote_ts"));
      if (e.remote_ts.empty()) ok = false;
    } else if (!e.IsWildcardBtns()) {
      // RFC 4301 4.4.3.3: without explicit data the peer may claim any
      // address (the wildcard BTNS entry is computed in CheckBtnsRules).
      e.remote_ts = {{IpRange::All(IpFamily::kV4), kAnyProtocol, {}},
                     {IpRange::All(IpFamily::kV6), kAnyProtocol, {}}};
    }
    if (s.node["local_identity"]) {
      Src li = Child(s, "local_identity");
      auto name = String(li);
      if (name && !out_.FindIdentity(*name)) {
        std::vector<std::string> names;
        for (const auto& i : out_.identities) names.push_back(i.name);
        Error(li, "no identity named " + Quote(*name) +
                      (names.empty() ? " (the 'identities' section is empty)"
                                     : Suggest(*name, names)));
        ok = false;
      }
      e.local_identity = name.value_or("");
    } else if (out_.identities.size() == 1) {
      e.local_identity = out_.identities[0].name;
    } else {
      Error(s.file, s.node.Mark(), Join(s.path, "local_identity"),
            out_.identities.empty()
                ? "required: define an identity under 'identities'"
                : "required when more than one identity is defined");
      ok = false;
    }
    // Kept even when invalid (the load fails anyway) so that SPD entries
    // naming it are checked against it instead of reporting it missing.
    if (ok || !e.name.empty()) {
      pad_.push_back(std::move(e));
      pad_src_.push_back(s);
    }
  }
}

// RFC 5386 section 2: BTNS entries are logically after all non-BTNS
// entries; there is at most one wildcard BTNS entry, logically last; and
// the wildcard entry's child SA constraints must not overlap those of any
// other PAD entry.
void Loader::CheckBtnsRules() {
  const PadEntry* first_btns = nullptr;
  const PadEntry* wildcard = nullptr;
  for (size_t i = 0; i < pad_.size(); ++i) {
    PadEntry& e = pad_[i];
    const Src& s = pad_src_[i];
    if (wildcard) {
      Error(s, "PAD entry " + Quote(e.name) + " follows the wildcard BTNS "
               "entry " + Quote(wildcard->name) +
               " and could never match; RFC 5386 section 2 keeps the "
               "wildcard BTNS entry last");
    } else if (!e.IsBtns() && first_btns) {
      Error(s, "authenticated PAD entry " + Quote(e.name) +
                   " comes after BTNS entry " + Quote(first_btns->name) +
                   "; RFC 5386 section 2 orders every BTNS entry after all "
                   "non-BTNS entries - move it up");
    }
    if (e.IsBtns() && !first_btns) first_btns = &e;
    if (e.IsWildcardBtns() && !wildcard) wildcard = &e;
  }
  if (!wildcard) return;
  size_t wi = static_cast<size_t>(wildcard - pad_.data());
  PadEntry& w = pad_[wi];
  const Src& ws = pad_src_[wi];
  if (!ws.node["remote_ts"]) {
    // No explicit constraints: every address not claimed by another entry.
    std::vector<IpRange> taken;
    for (const auto& e : pad_)
      if (&e != &w)
        for (const auto& ts : e.remote_ts) taken.push_back(ts.addresses);
    w.remote_ts = SubtractAddresses(
        {{IpRange::All(IpFamily::kV4), kAnyProtocol, {}},
         {IpRange::All(IpFamily::kV6), kAnyProtocol, {}}},
        taken);
    if (w.remote_ts.empty())
      Error(ws.file, ws.node.Mark(), Join(ws.path, "remote_ts"),
            "every address is already authorised for other PAD entries, so "
            "the wildcard BTNS entry could match no child SA; give the "
            "other entries explicit remote_ts");
    return;
  }
  for (const Src& item : List(Child(ws, "remote_ts"))) {
    // One item can expand to two selectors ("any"), so re-parse per item.
    for (const auto& ts : ParseSelectorList(item))
      for (const auto& other : pad_) {
        if (&other == &w) continue;
        for (const auto& ots : other.remote_ts)
          if (ts.Overlaps(ots)) {
            Error(item, "wildcard BTNS selector " + ts.ToString() +
                            " overlaps " + ots.ToString() + " of PAD entry " +
                            Quote(other.name) +
                            "; RFC 5386 section 2 forbids overlap with any "
                            "other PAD entry's child SA constraints");
            goto next_item;
          }
      }
  next_item:;
  }
}

// ---------------------------------------------------------------- SPD

std::optional<Lifetime> Loader::ParseLifetime(const Src& s, Lifetime d) {
  if (!CheckMap(s, {"soft", "hard", "soft_bytes", "hard_bytes", "jitter"}))
    return std::nullopt;
  Lifetime l = d;
  bool ok = true;
  auto get = [&](const char* key, uint64_t* field, bool bytes) {
    if (!s.node[key]) return;
    auto v = bytes ? Bytes(Child(s, key)) : Duration(Child(s, key));
    if (v) *field = *v;
    else ok = false;
  };
  get("soft", &l.soft_seconds, false);
  get("hard", &l.hard_seconds, false);
  get("soft_bytes", &l.soft_bytes, true);
  get("hard_bytes", &l.hard_bytes, true);
  if (s.node["jitter"]) {
    Src j = Child(s, "jitter");
    std::string text = j.node.IsScalar() ? j.node.Scalar() : "";
    if (!text.empty() && text.back() == '%') text.pop_back();
    auto v = Uint({YAML::Node(text), s.file, j.path}, 0, 50);
    if (!v) {
      errors_.back().line = j.node.Mark().line + 1;
      errors_.back().column = j.node.Mark().column + 1;
      ok = false;
    } else {
      l.jitter_percent = static_cast<uint8_t>(*v);
    }
  }
  if (ok && l.hard_seconds && l.soft_seconds >= l.hard_seconds) {
    Error(s, "soft lifetime (" + std::to_string(l.soft_seconds) +
                 "s) must be shorter than hard lifetime (" +
                 std::to_string(l.hard_seconds) + "s)");
    ok = false;
  }
  if (ok && l.hard_bytes && l.soft_bytes >= l.hard_bytes) {
    Error(s, "soft_bytes must be smaller than hard_bytes");
    ok = false;
  }
  if (!ok) return std::nullopt;
  return l;
}

void Loader::ParseSpd() {
  std::map<std::string, std::string> defined_at;
  for (const Src& s : spd_items_) {
    if (!CheckMap(s, {"name", "local", "remote", "protocol", "local_ports",
                      "remote_ports", "action", "peer", "mode", "tunnel",
                      "esp_proposals", "ike_proposals", "lifetime",
                      "ike_lifetime", "start", "unauthenticated_ok"}))
      continue;
    SpdEntry e;
    bool ok = Required(s, "name");
    if (ok) {
      Src n = Child(s, "name");
      auto name = String(n);
      e.name = name.value_or("");
      if (name && defined_at.count(*name)) {
        Error(n, "SPD entry " + Quote(*name) + " is already defined at " +
                     defined_at[*name]);
        ok = false;
      } else if (name) {
        defined_at[*name] = s.file + ":" + std::to_string(n.node.Mark().line + 1);
      }
    }
    auto side = [&](const char* key, std::optional<IpRange>* out) {
      if (!s.node[key]) return;
      Src a = Child(s, key);
      auto text = String(a);
      if (!text) { ok = false; return; }
      if (*text == "any") return;
      std::string why;
      auto r = IpRange::Parse(*text, &why);
      if (!r) { Error(a, why); ok = false; return; }
      *out = r;
    };
    side("local", &e.selector.local);
    side("remote", &e.selector.remote);
    if (e.selector.local && e.selector.remote &&
        e.selector.local->family() != e.selector.remote->family()) {
      Error(Child(s, "remote"), "local and remote addresses must be of the "
                                "same family (both IPv4 or both IPv6)");
      ok = false;
    }
    if (s.node["protocol"]) {
      Src p = Child(s, "protocol");
      auto text = String(p);
      auto proto = text ? ParseIpProtocol(*text) : std::nullopt;
      if (!proto) {
        if (text)
          Error(p, "unknown protocol " + Quote(*text) +
                       "; expected tcp, udp, icmp, icmpv6, sctp, gre, any or "
                       "a number 0-255");
        ok = false;
      } else {
        e.selector.protocol = *proto;
      }
    }
    for (const char* key : {"local_ports", "remote_ports"}) {
      if (!s.node[key]) continue;
      auto ports = ParsePorts(Child(s, key));
      if (!ports) { ok = false; continue; }
      (key[0] == 'l' ? e.selector.local_ports : e.selector.remote_ports) =
          *ports;
      uint8_t p = e.selector.protocol;
      if (!ports->IsAny() && p != 6 && p != 17 && p != 132) {
        Error(Child(s, key), "ports need protocol: tcp, udp or sctp");
        ok = false;
      }
    }
    if (!Required(s, "action")) {
      spd_.push_back(e);
      continue;
    }
    Src a = Child(s, "action");
    auto action = String(a);
    if (action == "protect") e.action = SpdAction::kProtect;
    else if (action == "bypass") e.action = SpdAction::kBypass;
    else if (action == "discard") e.action = SpdAction::kDiscard;
    else {
      if (action)
        Error(a, "unknown action " + Quote(*action) +
                     Suggest(*action, {"protect", "bypass", "discard"}));
      spd_.push_back(e);
      continue;
    }
    if (e.action != SpdAction::kProtect) {
      for (const char* key : {"peer", "mode", "tunnel", "esp_proposals",
                              "ike_proposals", "lifetime", "ike_lifetime",
                              "start", "unauthenticated_ok"})
        if (s.node[key])
          Error(Child(s, key), Quote(key) + " is only valid with action: "
                                            "protect");
      spd_.push_back(e);
      continue;
    }
    ProtectParams& pp = e.protect;
    const PadEntry* peer = nullptr;
    if (Required(s, "peer")) {
      Src p = Child(s, "peer");
      auto name = String(p);
      if (name) {
        pp.peer = *name;
        for (const auto& pe : pad_)
          if (pe.name == *name) peer = &pe;
        if (!peer) {
          std::vector<std::string> names;
          for (const auto& pe : pad_) names.push_back(pe.name);
          Error(p, "no PAD entry named " + Quote(*name) +
                       (names.empty() ? " (the 'pad' section is empty)"
                                      : Suggest(*name, names)));
        }
      }
    }
    // A remote selector the peer may never claim could not be negotiated.
    if (peer && e.selector.remote && !peer->remote_ts.empty()) {
      bool reachable = false;
      for (const auto& ts : peer->remote_ts)
        if (ts.addresses.Overlaps(*e.selector.remote)) reachable = true;
      if (!reachable)
        Error(Child(s, "remote"),
              e.selector.remote->ToString() +
                  " is outside every remote_ts of PAD entry " +
                  Quote(peer->name) + "; no child SA could be negotiated");
    }
    if (s.node["mode"]) {
      Src m = Child(s, "mode");
      auto mode = String(m);
      if (mode == "transport") pp.mode = IpsecMode::kTransport;
      else if (mode == "tunnel") pp.mode = IpsecMode::kTunnel;
      else if (mode)
        Error(m, "unknown mode " + Quote(*mode) +
                     Suggest(*mode, {"transport", "tunnel"}));
    }
    if (pp.mode == IpsecMode::kTunnel) {
      if (Required(s, "tunnel")) {
        Src t = Child(s, "tunnel");
        if (CheckMap(t, {"local", "remote"})) {
          for (const char* key : {"local", "remote"}) {
            if (!Required(t, key)) continue;
            Src x = Child(t, key);
            auto text = String(x);
            auto addr = text ? IpAddress::Parse(*text) : std::nullopt;
            if (!addr) {
              if (text) Error(x, Quote(*text) + " is not an IP address");
              continue;
            }
            (key[0] == 'l' ? pp.tunnel_local : pp.tunnel_remote) = addr;
          }
          if (pp.tunnel_local && pp.tunnel_remote &&
              pp.tunnel_local->family != pp.tunnel_remote->family)
            Error(Child(t, "remote"), "tunnel endpoints must be of the same "
                                      "family");
        }
      }
    } else if (s.node["tunnel"]) {
      Error(Child(s, "tunnel"), "'tunnel' endpoints need mode: tunnel");
    }
    auto proposals = [&](const char* key, bool ike, std::string* out) {
      if (!s.node[key]) return;
      Src p = Child(s, key);
      auto name = String(p);
      if (!name) return;
      *out = *name;
      const ProposalSet* set = out_.FindProposals(*name);
      if (!set) {
        std::vector<std::string> names;
        for (const auto& ps : out_.proposals) names.push_back(ps.name);
        Error(p, "no proposal set named " + Quote(*name) +
                     Suggest(*name, names));
        return;
      }
      for (const auto& prop : set->proposals) {
        if (ike && prop.prf.empty()) {
          Error(p, "proposal set " + Quote(*name) +
                       " has a proposal without 'prf', which IKE needs");
          return;
        }
        if (!ike && (!prop.prf.empty())) {
          Error(p, "proposal set " + Quote(*name) +
                       " has 'prf', which ESP proposals must not have");
          return;
        }
        if (ike && !prop.esn.empty()) {
          Error(p, "proposal set " + Quote(*name) +
                       " has 'esn', which IKE proposals must not have");
          return;
        }
        if (ike && (prop.ke.empty() ||
                    std::find(prop.ke.begin(), prop.ke.end(), KeGroup::kNone) !=
                        prop.ke.end())) {
          Error(p, "proposal set " + Quote(*name) +
                       " needs a key exchange group ('ke') other than none "
                       "for IKE");
          return;
        }
      }
    };
    proposals("esp_proposals", false, &pp.esp_proposals);
    proposals("ike_proposals", true, &pp.ike_proposals);
    pp.child_lifetime = {50 * 60, 60 * 60, 0, 0, 10};
    pp.ike_lifetime = {3 * 3600 + 30 * 60, 4 * 3600, 0, 0, 10};
    if (s.node["lifetime"]) {
      auto l = ParseLifetime(Child(s, "lifetime"), pp.child_lifetime);
      if (l) pp.child_lifetime = *l;
    }
    if (s.node["ike_lifetime"]) {
      auto l = ParseLifetime(Child(s, "ike_lifetime"), pp.ike_lifetime);
      if (l) pp.ike_lifetime = *l;
    }
    if (s.node["start"]) {
      Src st = Child(s, "start");
      auto v = String(st);
      if (v == "trap") pp.start = StartAction::kTrap;
      else if (v == "start") pp.start = StartAction::kStart;
      else if (v == "none") pp.start = StartAction::kNone;
      else if (v)
        Error(st, "unknown start action " + Quote(*v) +
                      Suggest(*v, {"trap", "start", "none"}));
    }
    if (s.node["unauthenticated_ok"])
      pp.unauthenticated_ok =
          Bool(Child(s, "unauthenticated_ok")).value_or(false);
    // RFC 5386 (BTNS_OK) and RFC 7619 section 3: only flagged entries may
    // serve unauthenticated peers, and the flag is set on purpose.
    if (peer && peer->IsBtns() && !pp.unauthenticated_ok)
      Error(Child(s, "peer"),
            "PAD entry " + Quote(peer->name) +
                " is a BTNS entry; set unauthenticated_ok: true to let "
                "unauthenticated peers use this SPD entry");
    if (peer && !peer->IsBtns() && pp.unauthenticated_ok)
      Error(Child(s, "unauthenticated_ok"),
            "PAD entry " + Quote(peer->name) +
                " authenticates its peers; unauthenticated_ok is only for "
                "BTNS entries");
    spd_.push_back(e);
  }
}

// ---------------------------------------------------------------- API

std::optional<uint32_t> Loader::ResolveId(const Src& s, bool group) {
  auto text = String(s);
  if (!text) return std::nullopt;
  uint32_t v = 0;
  auto [p, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (!text->empty() && ec == std::errc() && p == text->data() + text->size())
    return v;
  std::vector<char> buf(16384);
  if (group) {
    struct group g {}, *res = nullptr;
    if (getgrnam_r(text->c_str(), &g, buf.data(), buf.size(), &res) == 0 && res)
      return res->gr_gid;
  } else {
    struct passwd pw {}, *res = nullptr;
    if (getpwnam_r(text->c_str(), &pw, buf.data(), buf.size(), &res) == 0 && res)
      return res->pw_uid;
  }
  Error(s, std::string("unknown ") + (group ? "group " : "user ") +
               Quote(*text) + "; expected a name known to this system or a "
               "numeric " + (group ? "gid" : "uid"));
  return std::nullopt;
}

void Loader::ParseApi() {
  if (!api_) return;
  if (!CheckMap(*api_, {"admin_group", "grants"})) return;
  if (api_->node["admin_group"]) {
    Src g = Child(*api_, "admin_group");
    out_.api.admin_gid = ResolveId(g, true);
    out_.api.admin_group = g.node.IsScalar() ? g.node.Scalar() : "";
  }
  if (!api_->node["grants"]) return;
  Src list = Child(*api_, "grants");
  if (!list.node.IsSequence()) {
    Error(list, "expected a list of grants");
    return;
  }
  std::set<std::string> names;
  for (size_t i = 0; i < list.node.size(); ++i) {
    Src s{list.node[i], list.file, Index(list.path, i)};
    if (!CheckMap(s, {"name", "users", "groups", "identities"})) continue;
    ApiGrant g;
    if (Required(s, "name")) {
      Src n = Child(s, "name");
      g.name = String(n).value_or("");
      if (!g.name.empty() && !names.insert(g.name).second)
        Error(n, "grant " + Quote(g.name) + " is defined twice");
    }
    if (s.node["users"])
      for (const Src& u : List(Child(s, "users")))
        if (auto id = ResolveId(u, false)) g.uids.push_back(*id);
    if (s.node["groups"])
      for (const Src& u : List(Child(s, "groups")))
        if (auto id = ResolveId(u, true)) g.gids.push_back(*id);
    if (!s.node["users"] && !s.node["groups"])
      Error(s, "a grant needs 'users' or 'groups'");
    if (Required(s, "identities")) {
      for (const Src& id : List(Child(s, "identities"))) {
        auto name = String(id);
        if (!name) continue;
        if (*name != "*" && !out_.FindIdentity(*name)) {
          std::vector<std::string> all;
          for (const auto& li : out_.identities) all.push_back(li.name);
          Error(id, "no identity named " + Quote(*name) +
                        (all.empty() ? std::string() : Suggest(*name, all)));
          continue;
        }
        g.identities.push_back(*name);
      }
    }
    out_.api.grants.push_back(std::move(g));
  }
}

// ---------------------------------------------------------------- daemon

void Loader::ParseDaemon() {
  DaemonSettings& d = out_.daemon;
  if (!daemon_) {
    d.listen = {{IpAddress{IpFamily::kV4, 0}, 500},
                {IpAddress{IpFamily::kV4, 0}, 4500},
                {IpAddress{IpFamily::kV6, 0}, 500},
                {IpAddress{IpFamily::kV6, 0}, 4500}};
    return;
  }
  const Src& s = *daemon_;
  if (!CheckMap(s, {"listen", "ike_port", "nat_port", "api_socket",
                    "api_group", "log_level", "ownership", "dpd_interval",
                    "retransmit", "threads", "cookie_threshold",
                    "half_open_limit", "init_rate_per_address"}))
    return;
  auto limit = [&](const char* key, uint32_t* field, uint64_t min,
                   uint64_t max) {
    if (!s.node[key]) return;
    if (auto v = Uint(Child(s, key), min, max))
      *field = static_cast<uint32_t>(*v);
  };
  limit("threads", &d.threads, 0, 64);
  limit("cookie_threshold", &d.cookie_threshold, 0, 1000000);
  limit("half_open_limit", &d.half_open_limit, 1, 1000000);
  limit("init_rate_per_address", &d.init_rate_per_address, 0, 1000000);
  if (s.node["ike_port"])
    d.ike_port = static_cast<uint16_t>(
        Uint(Child(s, "ike_port"), 1, 65535).value_or(500));
  if (s.node["nat_port"])
    d.nat_port = static_cast<uint16_t>(
        Uint(Child(s, "nat_port"), 1, 65535).value_or(4500));
  if (d.ike_port == d.nat_port)
    Error(Child(s, "nat_port"), "nat_port must differ from ike_port");
  std::vector<IpAddress> addresses;
  if (s.node["listen"]) {
    for (const Src& a : List(Child(s, "listen"))) {
      auto text = String(a);
      auto addr = text ? IpAddress::Parse(*text) : std::nullopt;
      if (!addr) {
        if (text) Error(a, Quote(*text) + " is not an IPv4 or IPv6 address");
        continue;
      }
      addresses.push_back(*addr);
    }
  } else {
    addresses = {IpAddress{IpFamily::kV4, 0}, IpAddress{IpFamily::kV6, 0}};
  }
  for (const auto& a : addresses) {
    d.listen.push_back({a, d.ike_port});
    d.listen.push_back({a, d.nat_port});
  }
  if (s.node["api_socket"]) {
    Src a = Child(s, "api_socket");
    auto path = String(a);
    if (path && (path->empty() || (*path)[0] != '/'))
      Error(a, "expected an absolute path such as /run/btnsd/api.sock");
    else if (path)
      d.api_socket = *path;
  }
  if (s.node["api_group"]) {
    Src g = Child(s, "api_group");
    if (ResolveId(g, true)) d.api_group = g.node.Scalar();
  }
  if (s.node["log_level"]) {
    Src l = Child(s, "log_level");
    auto v = String(l);
    const std::vector<std::string> names = {"error", "warning", "info",
                                            "debug", "trace"};
    auto it = v ? std::find(names.begin(), names.end(), *v) : names.end();
    if (it == names.end()) {
      if (v) Error(l, "unknown log level " + Quote(*v) + Suggest(*v, names));
    } else {
      d.log_level = static_cast<LogLevel>(it - names.begin());
    }
  }
  // Seconds in [min, max]; the field keeps its default on error.
  auto seconds = [&](const Src& v, uint32_t* field, uint64_t min, uint64_t max) {
    auto value = Duration(v);
    if (!value) return;
    if (*value < min || *value > max) {
      Error(v, "expected a duration from " + std::to_string(min) + "s to " +
                   std::to_string(max) + "s");
      return;
    }
    *field = static_cast<uint32_t>(*value);
  };
  if (s.node["dpd_interval"])
    seconds(Child(s, "dpd_interval"), &d.dpd_interval_seconds, 0, 86400);
  if (s.node["retransmit"]) {
    Src r = Child(s, "retransmit");
    if (CheckMap(r, {"initial", "max", "tries"})) {
      if (r.node["initial"])
        seconds(Child(r, "initial"), &d.retransmit_initial_seconds, 1, 600);
      if (r.node["max"])
        seconds(Child(r, "max"), &d.retransmit_max_seconds, 1, 3600);
      if (r.node["tries"]) {
        if (auto v = Uint(Child(r, "tries"), 0, 20))
          d.retransmit_tries = static_cast<uint32_t>(*v);
      }
      if (d.retransmit_max_seconds < d.retransmit_initial_seconds)
        Error(Child(r, r.node["max"] ? "max" : "initial"),
              "retransmit.max must not be below retransmit.initial");
    }
  }
  if (s.node["ownership"]) {
    Src o = Child(s, "ownership");
    if (CheckMap(o, {"priority_min", "priority_max", "reqid_min", "reqid_max",
                     "mark", "mark_mask"})) {
      KernelOwnership& k = d.ownership;
      auto get = [&](const char* key, uint32_t* field, uint64_t min) {
        if (!o.node[key]) return;
        if (auto v = Uint(Child(o, key), min, UINT32_MAX))
          *field = static_cast<uint32_t>(*v);
      };
      get("priority_min", &k.priority_min, 0);
      get("priority_max", &k.priority_max, 0);
      get("reqid_min", &k.reqid_min, 1);
      get("reqid_max", &k.reqid_max, 1);
      get("mark", &k.mark, 0);
      get("mark_mask", &k.mark_mask, 0);
      if (k.priority_min > k.priority_max)
        Error(Child(o, "priority_max"), "priority_max must not be below "
                                        "priority_min");
      if (k.reqid_min > k.reqid_max)
        Error(Child(o, "reqid_max"), "reqid_max must not be below reqid_min");
      if (k.mark && !k.mark_mask) k.mark_mask = 0xffffffff;
      if (k.mark & ~k.mark_mask)
        Error(Child(o, "mark"), "mark has bits outside mark_mask");
    }
  }
}

// ---------------------------------------------------------------- driver

LoadResult Loader::Run(const std::string& path) {
  std::vector<std::string> chain;
  ReadFile(path, path, &chain);
  if (errors_.empty()) {
    ParseSecrets();
    ParseProposals();
    ParseIdentities();
    ParsePad();
    CheckBtnsRules();
    ParseSpd();
    ParseApi();
    ParseDaemon();
  }
  LoadResult result;
  if (!errors_.empty()) {
    std::stable_sort(errors_.begin(), errors_.end(),
                     [](const ConfigError& a, const ConfigError& b) {
                       return std::tie(a.file, a.line, a.column) <
                              std::tie(b.file, b.line, b.column);
                     });
    result.errors = std::move(errors_);
    return result;
  }
  out_.source_file = path;
  out_.pad = Pad(std::move(pad_));
  out_.spd = Spd(std::move(spd_));
  result.snapshot = std::make_shared<const PolicySnapshot>(std::move(out_));
  return result;
}

}  // namespace

std::string ConfigError::ToString() const {
  std::string s = file;
  if (line > 0) s += ":" + std::to_string(line) + ":" + std::to_string(column);
  s += ": ";
  if (!field.empty()) s += field + ": ";
  return s + message;
}

void RecordAcceptedKeys(AcceptedKeys* recorder) {
  accepted_keys_recorder = recorder;
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1,
                         diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

LoadResult LoadConfigFile(const std::string& path, const LoadOptions& options) {
  try {
    return Loader(options).Run(path);
  } catch (const std::exception& e) {
    // yaml-cpp and Botan may throw on inputs we did not foresee; a load
    // must still end in a clear error, never an escaping exception.
    LoadResult r;
    r.errors.push_back({path, 0, 0, "", std::string("internal error while "
                                                    "loading: ") + e.what()});
    return r;
  }
}

}  // namespace btnsd::config
