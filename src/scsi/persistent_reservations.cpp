// The PERSISTENT RESERVE IN/OUT state machine (SPC-4 5.12, 6.15, 6.16).
#include "ringtgt/scsi/persistent_reservations.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "command_table.hpp"
#include "ringtgt/scsi/cdb.hpp"

namespace ringtgt::scsi {

namespace {

namespace sa {
constexpr std::uint8_t register_key = 0;
constexpr std::uint8_t reserve = 1;
constexpr std::uint8_t release = 2;
constexpr std::uint8_t clear = 3;
constexpr std::uint8_t preempt = 4;
constexpr std::uint8_t preempt_and_abort = 5;
constexpr std::uint8_t register_and_ignore = 6;
constexpr std::uint8_t register_and_move = 7;
}  // namespace sa

constexpr std::uint16_t kRelativeTargetPort = 1;  // one target port per target

PrOutcome conflict() {
  PrOutcome o;
  o.status = Status::reservation_conflict;
  return o;
}

PrOutcome check(SenseCode code) {
  PrOutcome o;
  o.status = Status::check_condition;
  o.sense = code;
  return o;
}

PrOutcome cdb_field(int byte) {
  PrOutcome o = check(sense::invalid_field_in_cdb);
  o.cdb_field = byte;
  return o;
}

PrOutcome changed() {
  PrOutcome o;
  o.changed = true;
  return o;
}

bool is_registrants_only(PrType t) {
  return t == PrType::write_exclusive_registrants_only ||
         t == PrType::exclusive_access_registrants_only;
}

bool is_all_registrants(PrType t) {
  return t == PrType::write_exclusive_all_registrants ||
         t == PrType::exclusive_access_all_registrants;
}

bool is_exclusive_access(PrType t) {
  return t == PrType::exclusive_access || t == PrType::exclusive_access_registrants_only ||
         t == PrType::exclusive_access_all_registrants;
}

// The iSCSI TransportID (format 01b) of a port name, padded to a multiple
// of four and at least 24 bytes long (SPC-4 7.6.4.6).
std::vector<std::uint8_t> transport_id(const std::string& port) {
  std::size_t n = (port.size() + 1 + 3) / 4 * 4;
  n = std::max<std::size_t>(n, 20);
  std::vector<std::uint8_t> out(4 + n, 0);
  out[0] = 0x40 | 0x05;  // FORMAT CODE 01b, PROTOCOL IDENTIFIER iSCSI
  put_be16(&out[2], static_cast<std::uint16_t>(n));
  std::memcpy(&out[4], port.data(), port.size());
  return out;
}

}  // namespace

bool valid_pr_type(std::uint8_t type) {
  switch (type) {
    case 1:
    case 3:
    case 5:
    case 6:
    case 7:
    case 8:
      return true;
    default:
      return false;
  }
}

PrAccess pr_access_of(const std::array<std::uint8_t, 16>& c) {
  const detail::Command* command = detail::find_command(c);
  if (command == nullptr) return PrAccess::write;  // what we do not know may change the medium
  switch (command->pr) {
    case detail::PrClass::unrestricted:
      return PrAccess::unrestricted;
    case detail::PrClass::read:
      return PrAccess::read;
    case detail::PrClass::write:
      return PrAccess::write;
    case detail::PrClass::medium_removal:  // ALLOW is harmless, PREVENT is not
      return (c[4] & 0x03) == 0 ? PrAccess::unrestricted : PrAccess::write;
  }
  return PrAccess::write;
}

bool pr_conflicts(PrAccess access, const PrStanding& s) {
  if (s.type == PrType::none || s.holder || access == PrAccess::unrestricted) return false;
  if ((is_registrants_only(s.type) || is_all_registrants(s.type)) && s.registered) return false;
  if (access == PrAccess::read) return is_exclusive_access(s.type);
  return true;
}

const PrRegistration* PersistentReservations::find(const std::string& port) const {
  for (const auto& r : registrations_) {
    if (r.initiator_port == port) return &r;
  }
  return nullptr;
}

PrRegistration* PersistentReservations::find(const std::string& port) {
  for (auto& r : registrations_) {
    if (r.initiator_port == port) return &r;
  }
  return nullptr;
}

bool PersistentReservations::all_registrants() const {
  return is_all_registrants(type_);
}

bool PersistentReservations::is_holder(const std::string& port) const {
  if (type_ == PrType::none) return false;
  if (all_registrants()) return find(port) != nullptr;
  return holder_ == port;
}

PrStanding PersistentReservations::standing(const std::string& port) const {
  PrStanding s;
  s.type = type_;
  s.registered = find(port) != nullptr;
  s.holder = is_holder(port);
  return s;
}

void PersistentReservations::unregister(const std::string& port, PrOutcome& o) {
  const bool was_holder = is_holder(port);
  std::erase_if(registrations_, [&](const PrRegistration& r) { return r.initiator_port == port; });
  if (!was_holder) return;
  if (all_registrants()) {
    // The reservation lasts while any registrant does.
    if (registrations_.empty()) release_reservation();
    return;
  }
  const PrType was = type_;
  release_reservation();
  if (is_registrants_only(was)) {
    for (const auto& r : registrations_)
      o.unit_attentions.push_back({r.initiator_port, 0x2a, 0x04});
  }
}

PrOutcome PersistentReservations::out(const std::string& port, const std::uint8_t* cdb,
                                      const std::uint8_t* p, std::size_t len) {
  const std::uint8_t action = cdb[1] & 0x1f;
  const std::uint8_t scope = cdb[2] >> 4;
  const std::uint8_t type = cdb[2] & 0x0f;
  if (action > sa::register_and_move) return cdb_field(1);
  if (len < 24 || p == nullptr) return check(sense::parameter_list_length_error);
  const bool typed = action == sa::reserve || action == sa::release || action == sa::preempt ||
                     action == sa::preempt_and_abort || action == sa::register_and_move;
  if (typed && (scope != 0 || !valid_pr_type(type))) return cdb_field(2);
  const auto pr_type = static_cast<PrType>(type);
  if (action == sa::register_and_move) return register_and_move(port, p, len, pr_type);

  const bool spec_i_pt = p[20] & 0x08;
  const bool all_tg_pt = p[20] & 0x04;
  const bool aptpl = p[20] & 0x01;
  // SPEC_I_PT (registering other initiator ports) is not supported (SIP_C 0).
  if (spec_i_pt) return check(sense::invalid_field_in_parameter_list);
  if (len != 24) return check(sense::parameter_list_length_error);
  const std::uint64_t key = get_be64(&p[0]);
  const std::uint64_t sark = get_be64(&p[8]);
  switch (action) {
    case sa::register_key:
      return do_register(port, p, false, aptpl, all_tg_pt);
    case sa::register_and_ignore:
      return do_register(port, p, true, aptpl, all_tg_pt);
    case sa::reserve:
      return reserve(port, key, pr_type);
    case sa::release:
      return release(port, key, pr_type);
    case sa::clear:
      return clear(port, key);
    default:
      return preempt(port, key, sark, pr_type, action == sa::preempt_and_abort);
  }
}

PrOutcome PersistentReservations::do_register(const std::string& port, const std::uint8_t* p,
                                              bool ignore_key, bool aptpl, bool all_tg_pt) {
  const std::uint64_t key = get_be64(&p[0]);
  const std::uint64_t sark = get_be64(&p[8]);
  PrRegistration* reg = find(port);
  if (reg == nullptr) {
    if (!ignore_key && key != 0) return conflict();
    if (sark == 0) return {};  // unregistering what is not registered: nothing to do
    registrations_.push_back({port, sark, all_tg_pt});
  } else {
    if (!ignore_key && key != reg->key) return conflict();
    PrOutcome o = changed();
    if (sark == 0) {
      unregister(port, o);
    } else {
      reg->key = sark;
    }
    ++generation_;
    aptpl_ = aptpl;
    return o;
  }
  ++generation_;
  aptpl_ = aptpl;
  return changed();
}

PrOutcome PersistentReservations::reserve(const std::string& port, std::uint64_t key, PrType type) {
  const PrRegistration* reg = find(port);
  if (reg == nullptr || reg->key != key) return conflict();
  if (type_ != PrType::none) {
    // The holder asking again for what it has: nothing changes.
    if (is_holder(port) && type_ == type) return {};
    return conflict();
  }
  type_ = type;
  holder_ = port;
  return changed();
}

PrOutcome PersistentReservations::release(const std::string& port, std::uint64_t key, PrType type) {
  const PrRegistration* reg = find(port);
  if (reg == nullptr || reg->key != key) return conflict();
  if (type_ == PrType::none || !is_holder(port)) return {};
  if (type != type_) return check(pr_sense::invalid_release);
  const PrType was = type_;
  release_reservation();
  PrOutcome o = changed();
  if (is_registrants_only(was) || is_all_registrants(was)) {
    for (const auto& r : registrations_) {
      if (r.initiator_port != port) o.unit_attentions.push_back({r.initiator_port, 0x2a, 0x04});
    }
  }
  return o;
}

PrOutcome PersistentReservations::clear(const std::string& port, std::uint64_t key) {
  const PrRegistration* reg = find(port);
  if (reg == nullptr || reg->key != key) return conflict();
  PrOutcome o = changed();
  for (const auto& r : registrations_) {
    if (r.initiator_port != port) o.unit_attentions.push_back({r.initiator_port, 0x2a, 0x03});
  }
  registrations_.clear();
  release_reservation();
  ++generation_;
  return o;
}

PrOutcome PersistentReservations::preempt(const std::string& port, std::uint64_t key,
                                          std::uint64_t sark, PrType type, bool abort) {
  const PrRegistration* reg = find(port);
  if (reg == nullptr || reg->key != key) return conflict();
  PrOutcome o = changed();
  // PREEMPT AND ABORT acts on every nexus registered with the key, whether
  // its registration goes or (the preempting one's) stays.
  std::vector<std::string> abort_set;
  if (abort) {
    const bool everyone = sark == 0 && all_registrants();
    for (const auto& r : registrations_) {
      if (everyone || r.key == sark) abort_set.push_back(r.initiator_port);
    }
  }
  // Removes the registrations other than the preempting one that match.
  auto remove = [&](auto&& match) {
    std::size_t n = 0;
    std::erase_if(registrations_, [&](const PrRegistration& r) {
      if (r.initiator_port == port || !match(r)) return false;
      o.unit_attentions.push_back({r.initiator_port, 0x2a, 0x05});
      ++n;
      return true;
    });
    return n;
  };
  const PrRegistration* holder = all_registrants() ? nullptr : find(holder_);
  if (all_registrants() && sark == 0) {
    // Every other registrant goes; the preempting nexus holds TYPE.
    remove([](const PrRegistration&) { return true; });
    type_ = type;
    holder_ = port;
  } else if (holder != nullptr && holder->key == sark) {
    // The holder's key: its registrations go and the reservation moves.
    const PrType was = type_;
    remove([&](const PrRegistration& r) { return r.key == sark; });
    type_ = type;
    holder_ = port;
    if (was != type) {
      for (const auto& r : registrations_) {
        if (r.initiator_port != port) o.unit_attentions.push_back({r.initiator_port, 0x2a, 0x04});
      }
    }
  } else {
    // No reservation, or SARK is not the holder's: registrations only.
    if (sark == 0) return check(sense::invalid_field_in_parameter_list);
    if (remove([&](const PrRegistration& r) { return r.key == sark; }) == 0) return conflict();
  }
  ++generation_;
  o.abort_tasks_of = std::move(abort_set);
  return o;
}

PrOutcome PersistentReservations::register_and_move(const std::string& port, const std::uint8_t* p,
                                                    std::size_t len, PrType type) {
  const std::uint64_t key = get_be64(&p[0]);
  const std::uint64_t sark = get_be64(&p[8]);
  const bool unreg = p[17] & 0x02;
  const bool aptpl = p[17] & 0x01;
  const std::uint32_t tid_len = get_be32(&p[20]);
  if (len - 24 < tid_len) return check(sense::parameter_list_length_error);
  const PrRegistration* reg = find(port);
  if (reg == nullptr || reg->key != key) return conflict();
  if (type_ == PrType::none || !is_holder(port) || all_registrants()) return conflict();
  if (sark == 0) return check(sense::invalid_field_in_parameter_list);
  std::size_t used = 0;
  auto dest = parse_iscsi_transport_id(&p[24], tid_len, used);
  if (!dest || *dest == port) return check(sense::invalid_field_in_parameter_list);
  if (PrRegistration* d = find(*dest)) {
    d->key = sark;
  } else {
    registrations_.push_back({*dest, sark, false});
  }
  type_ = type;
  holder_ = *dest;
  if (unreg) {
    std::erase_if(registrations_,
                  [&](const PrRegistration& r) { return r.initiator_port == port; });
  }
  aptpl_ = aptpl;
  ++generation_;
  return changed();
}

std::optional<std::vector<std::uint8_t>> PersistentReservations::in(std::uint8_t action) const {
  std::vector<std::uint8_t> out(8, 0);
  switch (action) {
    case 0:  // READ KEYS
      put_be32(&out[0], generation_);
      for (const auto& r : registrations_) {
        out.resize(out.size() + 8);
        put_be64(&out[out.size() - 8], r.key);
      }
      put_be32(&out[4], static_cast<std::uint32_t>(out.size() - 8));
      return out;
    case 1:  // READ RESERVATION
      put_be32(&out[0], generation_);
      if (type_ != PrType::none) {
        out.resize(24, 0);
        put_be32(&out[4], 16);
        // The all-registrants types have no one holder: the key reads zero.
        const PrRegistration* h = all_registrants() ? nullptr : find(holder_);
        put_be64(&out[8], h != nullptr ? h->key : 0);
        out[21] = static_cast<std::uint8_t>(type_);  // SCOPE 0 (LU_SCOPE)
      }
      return out;
    case 2:  // REPORT CAPABILITIES
      put_be16(&out[0], 8);
      out[2] = 0x10 | 0x04 | 0x01;                    // CRH, ATP_C, PTPL_C (SIP_C 0: no SPEC_I_PT)
      out[3] = 0x80 | 0x10 | (aptpl_ ? 0x01 : 0x00);  // TMV, ALLOW COMMANDS 001b, PTPL_A
      out[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02;      // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX
      out[5] = 0x01;                                  // EX_AC_AR
      return out;
    case 3:  // READ FULL STATUS
      put_be32(&out[0], generation_);
      for (const auto& r : registrations_) {
        const auto tid = transport_id(r.initiator_port);
        const std::size_t at = out.size();
        out.resize(at + 24 + tid.size(), 0);
        std::uint8_t* d = &out[at];
        put_be64(&d[0], r.key);
        const bool holder = is_holder(r.initiator_port);
        d[12] = static_cast<std::uint8_t>((r.all_tg_pt ? 0x02 : 0) | (holder ? 0x01 : 0));
        d[13] = holder ? static_cast<std::uint8_t>(type_) : 0;
        put_be16(&d[18], kRelativeTargetPort);
        put_be32(&d[20], static_cast<std::uint32_t>(tid.size()));
        std::memcpy(&d[24], tid.data(), tid.size());
      }
      put_be32(&out[4], static_cast<std::uint32_t>(out.size() - 8));
      return out;
    default:
      return std::nullopt;
  }
}

std::optional<std::string> parse_iscsi_transport_id(const std::uint8_t* p, std::size_t len,
                                                    std::size_t& used) {
  if (len < 4 || (p[0] & 0x0f) != 0x05 || (p[0] >> 6) != 0x01) return std::nullopt;
  const std::size_t n = get_be16(&p[2]);
  if (n > len - 4) return std::nullopt;
  used = 4 + n;
  const char* s = reinterpret_cast<const char*>(&p[4]);
  const std::string_view text(s, strnlen(s, n));
  std::size_t sep = std::string_view::npos;
  for (std::size_t i = 0; i + 5 <= text.size(); ++i) {
    std::string sub(text.substr(i, 5));
    std::transform(sub.begin(), sub.end(), sub.begin(), [](char c) { return std::tolower(c); });
    if (sub == ",i,0x") {
      sep = i;
      break;
    }
  }
  if (sep == std::string_view::npos || sep == 0) return std::nullopt;
  const std::string_view hex = text.substr(sep + 5);
  std::uint64_t isid = 0;
  if (hex.empty() || hex.size() > 12) return std::nullopt;
  auto [end, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), isid, 16);
  if (ec != std::errc{} || end != hex.data() + hex.size()) return std::nullopt;
  return fmt::format("{},i,0x{:012x}", text.substr(0, sep), isid);
}

// The APTPL file: a version line, then one line per fact.
//   ringtgt-pr 1
//   generation <n>
//   aptpl <0|1>
//   reservation <type> <holder port or ->
//   registration <key hex> <all_tg_pt 0|1> <port>
std::string PersistentReservations::serialize() const {
  std::string s = "ringtgt-pr 1\n";
  s += fmt::format("generation {}\naptpl {}\n", generation_, aptpl_ ? 1 : 0);
  s += fmt::format("reservation {} {}\n", static_cast<unsigned>(type_),
                   holder_.empty() ? "-" : holder_);
  for (const auto& r : registrations_) {
    s += fmt::format("registration {:016x} {} {}\n", r.key, r.all_tg_pt ? 1 : 0, r.initiator_port);
  }
  return s;
}

namespace {

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    std::size_t j = i;
    while (j < line.size() && line[j] != ' ') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

template <typename T>
bool number(std::string_view w, T& out, int base = 10) {
  auto [end, ec] = std::from_chars(w.data(), w.data() + w.size(), out, base);
  return ec == std::errc{} && end == w.data() + w.size();
}

}  // namespace

std::optional<PersistentReservations> PersistentReservations::parse(std::string_view text,
                                                                    std::string& error) {
  PersistentReservations pr;
  bool header = false, have_reservation = false;
  int line_no = 0;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    if (nl == std::string_view::npos) {
      error = fmt::format("line {}: truncated (no end of line)", line_no + 1);
      return std::nullopt;
    }
    const std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    ++line_no;
    const auto w = words(line);
    auto bad = [&](const char* why) {
      error = fmt::format("line {}: {}", line_no, why);
      return std::nullopt;
    };
    if (!header) {
      if (w.size() != 2 || w[0] != "ringtgt-pr" || w[1] != "1")
        return bad("not a ringtgt-pr 1 file");
      header = true;
    } else if (w.size() == 2 && w[0] == "generation") {
      if (!number(w[1], pr.generation_)) return bad("bad generation");
    } else if (w.size() == 2 && w[0] == "aptpl") {
      if (w[1] != "0" && w[1] != "1") return bad("bad aptpl");
      pr.aptpl_ = w[1] == "1";
    } else if (w.size() == 3 && w[0] == "reservation") {
      unsigned type = 0;
      if (!number(w[1], type) || (type != 0 && !valid_pr_type(static_cast<std::uint8_t>(type)))) {
        return bad("bad reservation type");
      }
      pr.type_ = static_cast<PrType>(type);
      pr.holder_ = w[2] == "-" ? std::string{} : std::string(w[2]);
      have_reservation = true;
    } else if (w.size() == 4 && w[0] == "registration") {
      PrRegistration r;
      if (!number(w[1], r.key, 16) || r.key == 0) return bad("bad reservation key");
      if (w[2] != "0" && w[2] != "1") return bad("bad all_tg_pt");
      r.all_tg_pt = w[2] == "1";
      r.initiator_port = std::string(w[3]);
      if (pr.find(r.initiator_port) != nullptr) return bad("initiator port registered twice");
      pr.registrations_.push_back(std::move(r));
    } else {
      return bad("unknown line");
    }
  }
  if (!header || !have_reservation) {
    error = "incomplete file";
    return std::nullopt;
  }
  const bool holder_known =
      pr.all_registrants() ? !pr.registrations_.empty() : pr.find(pr.holder_) != nullptr;
  if (pr.type_ != PrType::none && !holder_known) {
    error = "the reservation holder is not registered";
    return std::nullopt;
  }
  return pr;
}

}  // namespace ringtgt::scsi
