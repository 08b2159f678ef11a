#include "redundancy.hpp"

#include <map>
#include <vector>

namespace ringtgt::lun {

namespace {

std::string copies_word(std::size_t n) {
  return std::to_string(n) + (n == 1 ? " copy" : " copies");
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

Redundancy redundancy_of(const config::Lun& l) {
  const std::size_t copies = l.copies.size() + 1;
  // Writes go on while ack_quorum copies are in sync: this many may be lost.
  const std::size_t slack = copies - l.quorum();
  std::map<std::string, std::vector<std::string>> domains;  // known domains only
  std::size_t unknown = 0;
  auto add = [&](const std::string& domain, const std::string& name) {
    if (domain.empty()) {
      ++unknown;
    } else {
      domains[domain].push_back(name);
    }
  };
  add(l.failure_domain, "primary");
  for (const auto& c : l.copies) add(c.failure_domain, c.name);

  Redundancy r;
  if (unknown == 0 && domains.size() == 1) {
    r.warn = true;
    r.text = "survives nothing: every copy is on " + domains.begin()->first;
    return r;
  }
  std::string shared;  // "copies a, b share disk:x; "
  std::string worst_domain;
  std::size_t worst = 1;
  for (const auto& [domain, names] : domains) {
    if (names.size() < 2) continue;
    shared += "copies " + joined(names) + " share failure domain " + domain + "; ";
    if (names.size() > worst) {
      worst = names.size();
      worst_domain = domain;
    }
  }
  r.warn = !shared.empty();
  if (slack == 0) {
    r.text = shared + "survives nothing without refusing writes: ack_quorum " +
             std::to_string(l.quorum()) + " needs every one of its " + copies_word(copies);
  } else if (worst > slack) {
    r.text = shared + "survives the loss of " + copies_word(slack) + ", but not of " +
             worst_domain + " (" + copies_word(worst) + " there, ack_quorum " +
             std::to_string(l.quorum()) + ")";
  } else {
    r.text = shared + "survives the loss of " + copies_word(slack);
  }
  if (unknown > 0 && copies > 1) r.text += " (copies without failure_domain counted as apart)";
  return r;
}

}  // namespace ringtgt::lun
