// The iSCSI side of a SCSI task: its tags, sequence numbers and data transfer.
// Private to the protocol engine (src/iscsi).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "ringtgt/scsi/task.hpp"

namespace ringtgt::iscsi {

struct IscsiTask final : scsi::Task {
  enum class State { idle, receiving, executing, responding };
  struct R2tSlot {
    std::uint32_t ttt = 0, offset = 0, len = 0, received = 0;
    std::uint32_t next_data_sn = 0;  // DataSN restarts at 0 in each R2T's sequence
    bool busy = false;
  };

  // A new command takes the task from the pool: everything of the last one goes.
  void begin() {
    state = State::receiving;
    aborted = false;
    data_failed = false;
    received = 0;
    unsolicited_done = false;
    r2t_next_offset = 0;
    r2t_outstanding = 0;
    r2t_sn = 0;
    data_sn = 0;
    unsolicited_data_sn = 0;
    pdus_pending = 0;
    for (auto& s : r2ts) s = {};
    reset_outcome();
  }

  State state = State::idle;
  IscsiTask* prev = nullptr;
  IscsiTask* next = nullptr;
  std::uint32_t itt = 0;
  std::uint32_t cmd_sn = 0;
  std::uint32_t edtl = 0;
  bool reading = false, writing = false;
  bool aborted = false;
  // Some of its Data-Out was lost or out of order (a DataSN error or a data
  // digest error, RFC 7143 §7.8 and §7.12): once all its data is in, it ends
  // with CHECK CONDITION instead of running.
  bool data_failed = false;
  std::uint8_t* buf = nullptr;
  std::size_t buf_size = 0;
  std::uint32_t received = 0;  // Data-Out bytes in
  bool unsolicited_done = false;
  std::uint32_t r2t_next_offset = 0;
  std::uint32_t r2t_outstanding = 0;
  std::uint32_t r2t_sn = 0;
  std::uint32_t data_sn = 0;
  std::uint32_t unsolicited_data_sn = 0;
  std::uint32_t pdus_pending = 0;
  bool on_retired_luns = false;  // started on a LUN map replaced since
  std::vector<R2tSlot> r2ts;
};

}  // namespace ringtgt::iscsi
