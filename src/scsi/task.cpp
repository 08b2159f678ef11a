#include "ringtgt/scsi/task.hpp"

#include <algorithm>
#include <cstring>

#include "commands.hpp"
#include "ringtgt/scsi/cdb.hpp"

namespace ringtgt::scsi {

void Task::fail(SenseCode code, bool has_info, std::uint64_t info) {
  status = Status::check_condition;
  data_in_length = 0;
  sense.fill(0);
  if (descriptor_sense) {
    // SPC-4 4.5.2: an 8-byte header, then an information descriptor (00h)
    // carrying all 64 bits when there is INFORMATION to give.
    sense[0] = 0x72;
    sense[1] = code.key & 0x0f;
    sense[2] = code.asc;
    sense[3] = code.ascq;
    sense_len = 8;
    if (has_info) {
      sense[8] = 0x00;
      sense[9] = 0x0a;
      sense[10] = 0x80;  // VALID
      put_be64(&sense[12], info);
      sense_len = 20;
    }
    sense[7] = static_cast<std::uint8_t>(sense_len - 8);
    return;
  }
  // Fixed format has four bytes of INFORMATION; a value that does not fit is
  // reported as not valid rather than truncated (SPC-4 4.5.3).
  const bool valid = has_info && info <= 0xffffffffu;
  sense[0] = valid ? 0xf0 : 0x70;
  sense[2] = code.key & 0x0f;
  if (valid) put_be32(&sense[3], static_cast<std::uint32_t>(info));
  sense[7] = 10;  // additional sense length: bytes 8..17
  sense[12] = code.asc;
  sense[13] = code.ascq;
  sense_len = 18;
}

void Task::fail_cdb_field(std::uint16_t byte, int bit) {
  fail(sense::invalid_field_in_cdb);
  std::uint8_t* sks = &sense[15];
  if (descriptor_sense) {
    // Sense key specific descriptor (02h) after the header.
    std::uint8_t* d = &sense[sense_len];
    d[0] = 0x02;
    d[1] = 0x06;
    sks = &d[4];
    sense_len = static_cast<std::uint8_t>(sense_len + 8);
    sense[7] = static_cast<std::uint8_t>(sense_len - 8);
  }
  sks[0] = 0x80 | 0x40;  // SKSV, C/D: the error is in the CDB
  if (bit >= 0 && bit <= 7) sks[0] |= 0x08 | static_cast<std::uint8_t>(bit);  // BPV
  put_be16(&sks[1], byte);
}

void Task::fail_with_progress(SenseCode code, std::uint16_t progress) {
  fail(code);
  std::uint8_t* sks = &sense[15];
  if (descriptor_sense) {
    std::uint8_t* d = &sense[sense_len];
    d[0] = 0x02;  // sense key specific descriptor
    d[1] = 0x06;
    sks = &d[4];
    sense_len = static_cast<std::uint8_t>(sense_len + 8);
    sense[7] = static_cast<std::uint8_t>(sense_len - 8);
  }
  sks[0] = 0x80;  // SKSV
  put_be16(&sks[1], progress);
}

void Task::count_completion() {
  const std::uint64_t ns = metrics::monotonic_ns() - started_ns;
  std::uint64_t bytes = 0;
  if (status == Status::good) {
    if (direction == DataDirection::from_device)
      bytes = data_in_length;
    else if (direction == DataDirection::to_device)
      bytes = buffer_len;
  }
  // Fixed format (70h/71h) has the sense key in byte 2, descriptor format (72h/73h) in byte 1.
  const bool descriptor = (sense[0] & 0x7f) >= 0x72;
  const std::uint8_t key = sense_len > 2 ? (descriptor ? sense[1] : sense[2]) : 0;
  counters->record(metrics::op_kind(cdb[0]), ns, bytes,
                   metrics::error_reason(static_cast<std::uint8_t>(status), key));
  counters = nullptr;
}

namespace detail {

void finish_data_in(Task& task, const std::uint8_t* data, std::size_t produced,
                    std::uint32_t alloc) {
  task.status = Status::good;
  task.transfer_length = alloc;
  const std::size_t room = task.buffer != nullptr ? task.buffer_len : 0;
  const std::size_t n = std::min({produced, std::size_t{alloc}, room});
  if (n > 0) std::memcpy(task.buffer, data, n);
  task.data_in_length = static_cast<std::uint32_t>(n);
  task.complete();
}

void request_sense(Task& task, SenseCode current, std::optional<std::uint16_t> progress) {
  const auto& c = task.cdb;
  const bool desc = c[1] & 0x01;
  std::uint8_t out[18] = {};
  std::size_t len;
  if (desc) {
    out[0] = 0x72;
    out[1] = current.key & 0x0f;
    out[2] = current.asc;
    out[3] = current.ascq;
    out[7] = 0;  // no descriptors
    len = 8;
    if (progress) {  // a sense key specific descriptor with the progress
      out[8] = 0x02;
      out[9] = 0x06;
      out[12] = 0x80;
      put_be16(&out[13], *progress);
      out[7] = 8;
      len = 16;
    }
  } else {
    out[0] = 0x70;
    out[2] = current.key & 0x0f;
    out[7] = 10;
    out[12] = current.asc;
    out[13] = current.ascq;
    if (progress) {
      out[15] = 0x80;  // SKSV: PROGRESS INDICATION follows
      put_be16(&out[16], *progress);
    }
    len = 18;
  }
  finish_data_in(task, out, len, c[4]);
}

}  // namespace detail
}  // namespace ringtgt::scsi
