// Persistent reservations (SPC-4 5.12, PERSISTENT RESERVE IN/OUT): the
// registrations of one logical unit, its reservation and the rules of both,
// as a plain value. No lock, no I/O: LogicalUnit holds one under its state
// mutex, stores it when APTPL asks, and turns outcomes into status and unit
// attentions.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ringtgt/scsi/task.hpp"

namespace ringtgt::scsi {

// TYPE of PERSISTENT RESERVE OUT (SPC-4 table 169).
enum class PrType : std::uint8_t {
  none = 0,
  write_exclusive = 1,
  exclusive_access = 3,
  write_exclusive_registrants_only = 5,
  exclusive_access_registrants_only = 6,
  write_exclusive_all_registrants = 7,
  exclusive_access_all_registrants = 8,
};

bool valid_pr_type(std::uint8_t type);

// How a command fares under a reservation it does not hold (SPC-4 table 68,
// SBC-3 table 13): unrestricted ones run under any reservation; reads run
// under the write-exclusive types; writes need the reservation (or, in the
// registrants-only and all-registrants types, a registration).
enum class PrAccess : std::uint8_t { unrestricted, read, write };
PrAccess pr_access_of(const std::array<std::uint8_t, 16>& cdb);

// What one I_T nexus is to the reservation in force.
struct PrStanding {
  PrType type = PrType::none;  // none: no reservation
  bool registered = false;
  bool holder = false;
};
bool pr_conflicts(PrAccess access, const PrStanding& standing);

struct PrRegistration {
  std::string initiator_port;  // initiator_port_name() of the I_T nexus
  std::uint64_t key = 0;
  bool all_tg_pt = false;
};

// A unit attention the LU is to establish for one I_T nexus.
struct PrUnitAttention {
  std::string initiator_port;
  std::uint8_t asc, ascq;
};

// What PERSISTENT RESERVE OUT came to.
struct PrOutcome {
  Status status = Status::good;
  SenseCode sense{};   // when status is check_condition
  int cdb_field = -1;  // >= 0: INVALID FIELD IN CDB naming this byte
  std::vector<PrUnitAttention> unit_attentions;
  // PREEMPT AND ABORT (SPC-4 5.13.11.2.6): the I_T nexuses whose tasks are to
  // be aborted, all but the PERSISTENT RESERVE OUT itself: every one that was
  // registered with the SERVICE ACTION RESERVATION KEY, the preempting nexus
  // included when the key is its own, or, with the key zero under an
  // all-registrants reservation, every registered one. Empty on failure.
  std::vector<std::string> abort_tasks_of;
  bool changed = false;  // the state differs (store it when APTPL is on)
};

namespace pr_sense {
inline constexpr SenseCode invalid_release{0x05, 0x26, 0x04};  // INVALID RELEASE OF PR
inline constexpr SenseCode reservations_preempted{0x06, 0x2a, 0x03};
inline constexpr SenseCode reservations_released{0x06, 0x2a, 0x04};
inline constexpr SenseCode registrations_preempted{0x06, 0x2a, 0x05};
}  // namespace pr_sense

class PersistentReservations {
 public:
  // PERSISTENT RESERVE OUT from the I_T nexus `port`: cdb is the 10-byte
  // CDB, params the parameter list as received (len bytes).
  PrOutcome out(const std::string& port, const std::uint8_t* cdb, const std::uint8_t* params,
                std::size_t len);

  // PERSISTENT RESERVE IN: the whole parameter data of service action sa
  // (READ KEYS 0, READ RESERVATION 1, REPORT CAPABILITIES 2, READ FULL
  // STATUS 3). nullopt: service action not supported.
  std::optional<std::vector<std::uint8_t>> in(std::uint8_t sa) const;

  PrStanding standing(const std::string& port) const;
  bool registered(const std::string& port) const { return find(port) != nullptr; }
  bool any() const { return !registrations_.empty() || type_ != PrType::none; }
  PrType type() const { return type_; }
  std::uint32_t generation() const { return generation_; }
  bool aptpl() const { return aptpl_; }
  const std::vector<PrRegistration>& registrations() const { return registrations_; }

  // The state as text for the APTPL file, and back. parse returns nullopt
  // and says why in error for anything it does not fully understand.
  std::string serialize() const;
  static std::optional<PersistentReservations> parse(std::string_view text, std::string& error);

 private:
  const PrRegistration* find(const std::string& port) const;
  PrRegistration* find(const std::string& port);
  bool all_registrants() const;
  bool is_holder(const std::string& port) const;
  void release_reservation() {
    type_ = PrType::none;
    holder_.clear();
  }
  void unregister(const std::string& port, PrOutcome& o);

  PrOutcome do_register(const std::string& port, const std::uint8_t* p, bool ignore_key, bool aptpl,
                        bool all_tg_pt);
  PrOutcome reserve(const std::string& port, std::uint64_t key, PrType type);
  PrOutcome release(const std::string& port, std::uint64_t key, PrType type);
  PrOutcome clear(const std::string& port, std::uint64_t key);
  PrOutcome preempt(const std::string& port, std::uint64_t key, std::uint64_t sark, PrType type,
                    bool abort);
  PrOutcome register_and_move(const std::string& port, const std::uint8_t* p, std::size_t len,
                              PrType type);

  std::vector<PrRegistration> registrations_;
  PrType type_ = PrType::none;
  std::string holder_;  // the holder's port; unused for the all-registrants types
  std::uint32_t generation_ = 0;
  bool aptpl_ = false;
};

// Reads a TransportID (SPC-4 7.6.4.6, iSCSI, format 01b) into the port name
// form initiator_port_name() gives; nullopt if it is not one.
std::optional<std::string> parse_iscsi_transport_id(const std::uint8_t* p, std::size_t len,
                                                    std::size_t& used);

}  // namespace ringtgt::scsi
