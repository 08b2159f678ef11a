// Unit attention conditions of one logical unit, per I_T nexus (SPC-4 5.14).
// A plain value with no lock: LogicalUnit holds it under its state mutex and
// keeps it off the read/write path with a generation counter.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ringtgt/scsi/task.hpp"

namespace ringtgt::scsi {

// The initiator port name of the nexus: "<initiator name>,i,0x<ISID>" (RFC
// 7143 / SPC-4 TransportID format 01b). What reservations and unit
// attentions key on: another session with the same ISID is the same port.
std::string initiator_port_name(const Nexus& nexus);

// An initiator port as its parts: what a transport finds its sessions by.
struct InitiatorPort {
  std::string initiator_name;
  std::uint64_t isid = 0;
  bool operator==(const InitiatorPort&) const = default;
};
// The parts of a name initiator_port_name() made (or one normalised from a
// TransportID); nullopt for anything else.
std::optional<InitiatorPort> parse_initiator_port_name(std::string_view port);

class UnitAttentions {
 public:
  // Most conditions one nexus keeps; later ones are dropped (the reset and
  // power-on ones rank first and are never crowded out by the others).
  static constexpr std::size_t max_pending = 8;

  // The nexus sent its first command to the LU. Returns true the first time:
  // with power_on, a POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (29h/00h)
  // is queued for it then.
  bool first_contact(const std::string& port, bool power_on);
  // Queues asc/ascq for every nexus the LU knows, except `except` (empty: none).
  void post_all(std::uint8_t asc, std::uint8_t ascq, const std::string& except = {});
  // Queues asc/ascq for one nexus, known yet or not.
  void post(const std::string& port, std::uint8_t asc, std::uint8_t ascq);
  // Takes the condition to report next for port, if any.
  bool pop(const std::string& port, SenseCode& out);
  bool pending(const std::string& port) const;
  // The nexus is gone; a new one with the same name starts afresh.
  void forget(const std::string& port);

 private:
  struct Pending {
    bool seen = false;             // first_contact happened
    std::vector<SenseCode> queue;  // report order: highest precedence first
  };
  void add(Pending& p, std::uint8_t asc, std::uint8_t ascq);
  std::map<std::string, Pending, std::less<>> nexuses_;
};

}  // namespace ringtgt::scsi
