// EXTENDED COPY (LID1) and RECEIVE COPY RESULTS against the memory backend.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "ringtgt/scsi/cdb.hpp"
#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/storage/memory_backend.hpp"
#include "scsi_test_support.hpp"

namespace ringtgt::scsi {
namespace {

using namespace ringtgt::scsi::testing;

constexpr std::uint64_t kNaa = 0x0123456789abcdefull;
constexpr std::uint64_t kDesignator = 0x6123456789abcdefull;  // as VPD 83h reports it

class Lu {
 public:
  explicit Lu(bool read_only = false, std::uint64_t blocks = 8192, std::uint32_t bs = 512,
              std::uint64_t naa = kNaa, std::uint64_t lun = 0) {
    auto backend = std::make_unique<storage::MemoryBackend>(std::uint64_t{bs} * blocks);
    mem = backend.get();
    LunParams params;
    params.read_only = read_only;
    params.block_size = bs;
    params.naa = naa;
    params.spc2_reservations = true;
    lu = std::make_shared<LogicalUnit>(lun, params, std::move(backend));
  }

  Task& run(const Bytes& cdb, std::uint32_t room = 4096, const Bytes* out = nullptr) {
    return run_task([this](Task& x) { lu->execute(x); }, task, owner, buffer, cdb, room, out);
  }
  // As run, from the I_T nexus `nexus`.
  Task& run_from(const Nexus& nexus, const Bytes& cdb, std::uint32_t room = 4096,
                 const Bytes* out = nullptr) {
    return run_task(
        [this, &nexus](Task& x) {
          x.nexus = &nexus;
          lu->execute(x);
        },
        task, owner, buffer, cdb, room, out);
  }

  Task& xcopy(const Bytes& list) { return run(xcopy_cdb(list.size()), 0, &list); }
  Task& xcopy_from(const Nexus& n, const Bytes& list) {
    return run_from(n, xcopy_cdb(list.size()), 0, &list);
  }

  static Bytes xcopy_cdb(std::size_t len) {
    Bytes c(16, 0);
    c[0] = 0x83;
    put_be32(&c[10], static_cast<std::uint32_t>(len));
    return c;
  }

  storage::MemoryBackend* mem;
  std::shared_ptr<LogicalUnit> lu;
  CountingOwner owner;
  Task task;
  Bytes buffer;
};

Bytes rcr_cdb(std::uint8_t sa, std::uint8_t list_id, std::uint32_t alloc = 1024) {
  Bytes c(16, 0);
  c[0] = 0x84;
  c[1] = sa;
  c[2] = list_id;
  put_be32(&c[10], alloc);
  return c;
}

// An identification CSCD descriptor (E4h) naming the LU by an NAA designator.
Bytes cscd(std::uint64_t naa = kDesignator, std::uint32_t block_size = 512,
           std::uint8_t type = 0xe4, std::uint8_t byte1 = 0x00) {
  Bytes d(32, 0);
  d[0] = type;
  d[1] = byte1;
  d[4] = 0x01;  // binary
  d[5] = 0x03;  // association LU, type NAA
  d[7] = 8;
  put_be64(&d[8], naa);
  d[29] = static_cast<std::uint8_t>(block_size >> 16);
  d[30] = static_cast<std::uint8_t>(block_size >> 8);
  d[31] = static_cast<std::uint8_t>(block_size);
  return d;
}

// A block-to-block segment descriptor (02h).
Bytes b2b(std::uint16_t src_index, std::uint16_t dst_index, std::uint16_t blocks,
          std::uint64_t src_lba, std::uint64_t dst_lba, std::uint8_t type = 0x02) {
  Bytes d(28, 0);
  d[0] = type;
  put_be16(&d[2], 0x18);
  put_be16(&d[4], src_index);
  put_be16(&d[6], dst_index);
  put_be16(&d[10], blocks);
  put_be64(&d[12], src_lba);
  put_be64(&d[20], dst_lba);
  return d;
}

// A parameter list: header, CSCD descriptors, segment descriptors.
Bytes param_list(const std::vector<Bytes>& cscds, const std::vector<Bytes>& segments,
                 std::uint8_t list_id = 1, std::uint8_t usage = 0x00,
                 std::uint32_t inline_len = 0) {
  Bytes p(16, 0);
  std::size_t cscd_len = 0, seg_len = 0;
  for (const auto& d : cscds) cscd_len += d.size();
  for (const auto& d : segments) seg_len += d.size();
  p[0] = list_id;
  p[1] = static_cast<std::uint8_t>(usage << 3);
  put_be16(&p[2], static_cast<std::uint16_t>(cscd_len));
  put_be32(&p[8], static_cast<std::uint32_t>(seg_len));
  put_be32(&p[12], inline_len);
  for (const auto& d : cscds) p.insert(p.end(), d.begin(), d.end());
  for (const auto& d : segments) p.insert(p.end(), d.begin(), d.end());
  p.resize(p.size() + inline_len, 0);
  return p;
}

// COPY ABORTED for segment `segment`, carrying the sense a copy target
// (source: byte 8 points at it; destination: byte 9) would have returned.
void expect_copy_aborted(const Task& t, std::uint16_t segment, bool destination, std::uint8_t key,
                         std::uint8_t asc, std::uint8_t ascq) {
  expect_sense(t, 0x0a, 0x00, 0x00);
  EXPECT_EQ(get_be16(&t.sense[10]), segment);
  const std::uint8_t at = t.sense[destination ? 9 : 8];
  EXPECT_EQ(t.sense[destination ? 8 : 9], 0);
  ASSERT_EQ(at, 18);
  ASSERT_GE(t.sense_len, at + 9);
  EXPECT_EQ(t.sense[7], t.sense_len - 8);
  EXPECT_EQ(t.sense[at], 0x02);  // CHECK CONDITION
  EXPECT_EQ(t.sense[at + 1], 0x72);
  EXPECT_EQ(t.sense[at + 2], key);
  EXPECT_EQ(t.sense[at + 3], asc);
  EXPECT_EQ(t.sense[at + 4], ascq);
}

void fill(storage::MemoryBackend* mem, std::uint64_t lba, std::uint64_t blocks, std::uint8_t seed,
          std::uint32_t bs = 512) {
  for (std::uint64_t i = 0; i < blocks * bs; ++i) {
    mem->data()[lba * bs + i] = static_cast<std::uint8_t>(seed + i * 13 + i / bs);
  }
}

TEST(ExtendedCopy, CopiesBlocksWithinTheLogicalUnit) {
  Lu l;
  fill(l.mem, 10, 3000, 7);  // more than one 1 MiB chunk
  const Bytes before(l.mem->data() + 10 * 512, l.mem->data() + 3010 * 512);
  Task& t = l.xcopy(param_list({cscd()}, {b2b(0, 0, 3000, 10, 5000)}));
  ASSERT_EQ(t.status, Status::good);
  EXPECT_EQ(std::memcmp(l.mem->data() + 5000 * 512, before.data(), before.size()), 0);
  // The source is untouched, and nothing past the destination was written.
  EXPECT_EQ(std::memcmp(l.mem->data() + 10 * 512, before.data(), before.size()), 0);
  EXPECT_EQ(l.mem->data()[8000 * 512], 0);
}

TEST(ExtendedCopy, SeveralSegmentsAndCscdsNamingTheSameUnit) {
  Lu l;
  fill(l.mem, 0, 4, 1);
  fill(l.mem, 100, 2, 99);
  const Bytes a(l.mem->data(), l.mem->data() + 4 * 512);
  const Bytes b(l.mem->data() + 100 * 512, l.mem->data() + 102 * 512);
  Task& t = l.xcopy(param_list({cscd(), cscd()},
                               {b2b(0, 1, 4, 0, 200), b2b(1, 0, 0, 0, 0), b2b(1, 1, 2, 100, 300)}));
  ASSERT_EQ(t.status, Status::good);
  EXPECT_EQ(std::memcmp(l.mem->data() + 200 * 512, a.data(), a.size()), 0);
  EXPECT_EQ(std::memcmp(l.mem->data() + 300 * 512, b.data(), b.size()), 0);
}

TEST(ExtendedCopy, OverlappingRangesCopyAsIfThroughABuffer) {
  for (std::uint64_t dst : {1000ull, 100ull}) {  // destination above, then below, the source
    Lu l;
    fill(l.mem, 500, 3000, 3);
    const Bytes before(l.mem->data() + 500 * 512, l.mem->data() + 3500 * 512);
    Task& t = l.xcopy(param_list({cscd()}, {b2b(0, 0, 3000, 500, dst)}));
    ASSERT_EQ(t.status, Status::good);
    EXPECT_EQ(std::memcmp(l.mem->data() + dst * 512, before.data(), before.size()), 0)
        << "destination " << dst;
  }
}

TEST(ExtendedCopy, FourKibibyteBlocks) {
  Lu l(false, 1024, 4096);
  fill(l.mem, 3, 300, 5, 4096);
  const Bytes before(l.mem->data() + 3 * 4096, l.mem->data() + 303 * 4096);
  Task& t = l.xcopy(param_list({cscd(kDesignator, 4096)}, {b2b(0, 0, 300, 3, 700)}));
  ASSERT_EQ(t.status, Status::good);
  EXPECT_EQ(std::memcmp(l.mem->data() + 700 * 4096, before.data(), before.size()), 0);
  // A CSCD descriptor naming this unit with another block length is refused.
  Task& u = l.xcopy(param_list({cscd(kDesignator, 512)}, {b2b(0, 0, 1, 0, 1)}));
  expect_sense(u, 0x05, 0x26, 0x00);
  EXPECT_EQ(get_be16(&u.sense[16]), 16 + 29);
}

TEST(ExtendedCopy, EmptyParameterListIsNoOp) {
  Lu l;
  Task& t = l.run(Lu::xcopy_cdb(0), 0, nullptr);
  EXPECT_EQ(t.status, Status::good);
}

TEST(ExtendedCopy, ServiceActionOtherThanLid1IsRefused) {
  Lu l;
  Bytes c = Lu::xcopy_cdb(0);
  c[1] = 0x01;  // EXTENDED COPY(LID4)
  Task& t = l.run(c, 0, nullptr);
  expect_sense(t, 0x05, 0x24, 0x00);
  EXPECT_EQ(get_be16(&t.sense[16]), 1);
}

TEST(ExtendedCopy, TruncatedParameterListsAreLengthErrors) {
  Lu l;
  const Bytes full = param_list({cscd()}, {b2b(0, 0, 1, 0, 1)});
  for (std::size_t cut : {std::size_t{1}, std::size_t{15}, std::size_t{16 + 31}, full.size() - 1}) {
    const Bytes part(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut));
    expect_sense(l.xcopy(part), 0x05, 0x1a, 0x00);
  }
  // The CDB may promise more than the initiator sent: what arrived counts.
  Bytes c = Lu::xcopy_cdb(full.size() + 100);
  const Bytes part(full.begin(), full.end() - 4);
  expect_sense(l.run(c, 0, &part), 0x05, 0x1a, 0x00);
  // Hostile lengths in the header do not overflow the arithmetic.
  Bytes hostile = full;
  put_be32(&hostile[8], 0xffffffffu);
  put_be32(&hostile[12], 0xffffffffu);
  expect_sense(l.xcopy(hostile), 0x05, 0x1a, 0x00);
  // A CSCD list that ends inside a descriptor.
  Bytes ragged = param_list({cscd()}, {b2b(0, 0, 1, 0, 1)});
  put_be16(&ragged[2], 40);
  expect_sense(l.xcopy(ragged), 0x05, 0x1a, 0x00);
}

TEST(ExtendedCopy, DescriptorListLongerThanTheLimitIsALengthError) {
  Lu l;
  std::vector<Bytes> segs(200, b2b(0, 0, 1, 0, 1));  // 5600 bytes > 4096
  expect_sense(l.xcopy(param_list({cscd()}, segs)), 0x05, 0x1a, 0x00);
}

TEST(ExtendedCopy, TooManyDescriptors) {
  Lu l;
  std::vector<Bytes> cscds(9, cscd());
  Task& t = l.xcopy(param_list(cscds, {b2b(0, 0, 1, 0, 1)}));
  expect_sense(t, 0x05, 0x26, 0x06);
  EXPECT_EQ(get_be16(&t.sense[16]), 16 + 8 * 32);
  // Eight are fine.
  cscds.pop_back();
  EXPECT_EQ(l.xcopy(param_list(cscds, {b2b(0, 7, 1, 0, 1)})).status, Status::good);

  std::vector<Bytes> segs(65, b2b(0, 0, 1, 0, 1));
  expect_sense(l.xcopy(param_list({cscd()}, segs)), 0x05, 0x26, 0x08);
  segs.pop_back();
  EXPECT_EQ(l.xcopy(param_list({cscd()}, segs)).status, Status::good);
}

TEST(ExtendedCopy, UnsupportedDescriptorTypes) {
  Lu l;
  // Fibre Channel N_Port_Name CSCD descriptor.
  expect_sense(l.xcopy(param_list({cscd(kDesignator, 512, 0xe0)}, {b2b(0, 0, 1, 0, 1)})), 0x05,
               0x26, 0x07);
  // Stream-to-stream and block-to-stream segment descriptors.
  for (std::uint8_t type : {0x03, 0x00, 0x0a}) {
    Task& t = l.xcopy(param_list({cscd()}, {b2b(0, 0, 1, 0, 1, type)}));
    expect_sense(t, 0x05, 0x26, 0x09);
    EXPECT_EQ(get_be16(&t.sense[16]), 16 + 32);
  }
}

TEST(ExtendedCopy, InvalidFieldsInTheParameterList) {
  Lu l;
  // LIST ID USAGE 01b is reserved.
  expect_sense(l.xcopy(param_list({cscd()}, {b2b(0, 0, 1, 0, 1)}, 1, 0x01)), 0x05, 0x26, 0x00);
  // No inline data is taken.
  expect_sense(l.xcopy(param_list({cscd()}, {b2b(0, 0, 1, 0, 1)}, 1, 0, 4)), 0x05, 0x26, 0x00);
  // A CSCD for another device type.
  expect_sense(l.xcopy(param_list({cscd(kDesignator, 512, 0xe4, 0x01)}, {b2b(0, 0, 1, 0, 1)})),
               0x05, 0x26, 0x00);
  // A designator longer than its field.
  Bytes d = cscd();
  d[7] = 21;
  expect_sense(l.xcopy(param_list({d}, {b2b(0, 0, 1, 0, 1)})), 0x05, 0x26, 0x00);
  // A block-to-block descriptor with the wrong DESCRIPTOR LENGTH.
  Bytes s = b2b(0, 0, 1, 0, 1);
  put_be16(&s[2], 0x14);
  s.resize(24);
  expect_sense(l.xcopy(param_list({cscd()}, {s})), 0x05, 0x26, 0x00);
  // More than MAXIMUM SEGMENT LENGTH (16 MiB) in one segment.
  Task& t = l.xcopy(param_list({cscd()}, {b2b(0, 0, 32769, 0, 1)}));
  expect_sense(t, 0x05, 0x26, 0x00);
  EXPECT_EQ(get_be16(&t.sense[16]), 16 + 32 + 10);
}

TEST(ExtendedCopy, LuIdTypeAndNulBitsAreIgnored) {
  Lu l;
  fill(l.mem, 0, 1, 9);
  EXPECT_EQ(l.xcopy(param_list({cscd(kDesignator, 512, 0xe4, 0xc0)}, {b2b(0, 0, 1, 0, 1)})).status,
            Status::good);
  EXPECT_EQ(l.xcopy(param_list({cscd(kDesignator, 512, 0xe4, 0x20)}, {b2b(0, 0, 1, 0, 2)})).status,
            Status::good);
  EXPECT_EQ(std::memcmp(l.mem->data() + 2 * 512, l.mem->data(), 512), 0);
}

TEST(ExtendedCopy, UnreachableCopyTargets) {
  Lu l;
  fill(l.mem, 0, 1, 4);
  // A segment naming a CSCD descriptor that is not in the list.
  Task& t = l.xcopy(param_list({cscd()}, {b2b(0, 0, 1, 0, 1), b2b(0, 1, 1, 0, 2)}));
  expect_sense(t, 0x0a, 0x0d, 0x02);
  EXPECT_EQ(get_be16(&t.sense[10]), 1);
  // A CSCD descriptor naming a logical unit that is not this one.
  Task& u = l.xcopy(param_list({cscd(), cscd(0x6000000000000001ull)}, {b2b(0, 1, 1, 0, 3)}));
  expect_sense(u, 0x0a, 0x0d, 0x02);
  EXPECT_EQ(get_be16(&u.sense[10]), 0);
  // Nothing was copied by the refused commands.
  EXPECT_EQ(l.mem->data()[512], 0);
  EXPECT_EQ(l.mem->data()[3 * 512], 0);
  // An unused unreachable CSCD descriptor is no error.
  EXPECT_EQ(l.xcopy(param_list({cscd(0x6000000000000001ull), cscd()}, {b2b(1, 1, 1, 0, 1)})).status,
            Status::good);
}

TEST(ExtendedCopy, OutOfRangeSegmentsAreAbortedBeforeAnythingIsCopied) {
  Lu l(false, 8192);
  fill(l.mem, 0, 2, 8);
  // Destination past the end (the second segment), source past the end.
  Task& t = l.xcopy(param_list({cscd()}, {b2b(0, 0, 1, 0, 10), b2b(0, 0, 2048, 0, 8191)}));
  expect_copy_aborted(t, 1, true, 0x05, 0x21, 0x00);
  EXPECT_EQ(l.mem->data()[10 * 512], 0);  // the first segment did not run either
  Task& u = l.xcopy(param_list({cscd()}, {b2b(0, 0, 2, 8191, 0)}));
  expect_copy_aborted(u, 0, false, 0x05, 0x21, 0x00);
  Task& v = l.xcopy(param_list({cscd()}, {b2b(0, 0, 1, ~0ull, 0)}));
  expect_copy_aborted(v, 0, false, 0x05, 0x21, 0x00);
  // Up to the last block is fine.
  EXPECT_EQ(l.xcopy(param_list({cscd()}, {b2b(0, 0, 2, 0, 8190)})).status, Status::good);
}

TEST(ExtendedCopy, ReadOnlyUnitRefusesToBeWritten) {
  Lu l(true);
  Task& t = l.xcopy(param_list({cscd()}, {b2b(0, 0, 1, 0, 1)}));
  expect_copy_aborted(t, 0, true, 0x07, 0x27, 0x00);
  // Zero blocks write nothing.
  EXPECT_EQ(l.xcopy(param_list({cscd()}, {b2b(0, 0, 0, 0, 1)})).status, Status::good);
}

TEST(ExtendedCopy, MediumErrorsAbortTheCopy) {
  Lu l;
  l.mem->inject_error(100 * 512, 512, 5);
  Task& t = l.xcopy(param_list({cscd()}, {b2b(0, 0, 1, 0, 1), b2b(0, 0, 4, 98, 200)}));
  expect_copy_aborted(t, 1, false, 0x03, 0x11, 0x00);
  Task& u = l.xcopy(param_list({cscd()}, {b2b(0, 0, 4, 0, 99)}));
  expect_copy_aborted(u, 0, true, 0x03, 0x0c, 0x00);
}

TEST(ExtendedCopy, DestinationClaimedByCompareAndWriteIsBusy) {
  Lu l;
  fill(l.mem, 0, 8, 2);
  ASSERT_TRUE(l.lu->caw_lock(20, 4));
  EXPECT_EQ(l.xcopy(param_list({cscd()}, {b2b(0, 0, 8, 0, 16)})).status, Status::busy);
  EXPECT_EQ(l.mem->data()[16 * 512], 0);
  // The source may be claimed; only writes need the lock.
  EXPECT_EQ(l.xcopy(param_list({cscd()}, {b2b(0, 0, 4, 20, 40)})).status, Status::good);
  l.lu->caw_unlock(20);
  EXPECT_EQ(l.xcopy(param_list({cscd()}, {b2b(0, 0, 8, 0, 16)})).status, Status::good);
  EXPECT_EQ(std::memcmp(l.mem->data() + 16 * 512, l.mem->data(), 8 * 512), 0);
  // The copy gave its claim back: a COMPARE AND WRITE may claim it now.
  EXPECT_TRUE(l.lu->caw_lock(16, 8));
  l.lu->caw_unlock(16);
}

TEST(ReceiveCopyResults, OperatingParameters) {
  Lu l;
  Task& t = l.run(rcr_cdb(0x03, 0));
  ASSERT_EQ(t.status, Status::good);
  ASSERT_EQ(t.data_in_length, 46u);
  const std::uint8_t* d = l.buffer.data();
  EXPECT_EQ(get_be32(&d[0]), 42u);
  EXPECT_EQ(d[4] & 0x01, 1);               // SNLID
  EXPECT_EQ(get_be16(&d[8]), 8);           // MAXIMUM CSCD DESCRIPTOR COUNT
  EXPECT_EQ(get_be16(&d[10]), 64);         // MAXIMUM SEGMENT DESCRIPTOR COUNT
  EXPECT_EQ(get_be32(&d[12]), 4096u);      // MAXIMUM DESCRIPTOR LIST LENGTH
  EXPECT_EQ(get_be32(&d[16]), 16u << 20);  // MAXIMUM SEGMENT LENGTH
  EXPECT_EQ(get_be32(&d[20]), 0u);         // MAXIMUM INLINE DATA LENGTH
  EXPECT_EQ(d[37], 9);                     // DATA SEGMENT GRANULARITY: 512 bytes
  EXPECT_EQ(d[43], 2);
  EXPECT_EQ(d[44], 0x02);
  EXPECT_EQ(d[45], 0xe4);
  // The allocation length bounds it.
  Task& u = l.run(rcr_cdb(0x03, 0, 10));
  EXPECT_EQ(u.status, Status::good);
  EXPECT_EQ(u.data_in_length, 10u);
}

TEST(ReceiveCopyResults, UnsupportedServiceActions) {
  Lu l;
  for (std::uint8_t sa : {0x01, 0x02, 0x05, 0x1f}) {
    Task& t = l.run(rcr_cdb(sa, 0));
    expect_sense(t, 0x05, 0x24, 0x00);
    EXPECT_EQ(get_be16(&t.sense[16]), 1);
  }
}

TEST(ReceiveCopyResults, CopyStatusIsHeldPerNexusAndListId) {
  Lu l;
  Nexus a{"iqn.a", "t", 1, {}}, b{"iqn.b", "t", 2, {}};
  // Nothing held yet.
  Task& none = l.run_from(a, rcr_cdb(0x00, 7));
  expect_sense(none, 0x05, 0x24, 0x00);
  EXPECT_EQ(get_be16(&none.sense[16]), 2);

  fill(l.mem, 0, 3, 1);
  ASSERT_EQ(l.xcopy_from(a, param_list({cscd()}, {b2b(0, 0, 3, 0, 10)}, 7)).status, Status::good);
  Task& t = l.run_from(a, rcr_cdb(0x00, 7));
  ASSERT_EQ(t.status, Status::good);
  ASSERT_EQ(t.data_in_length, 12u);
  const std::uint8_t* d = l.buffer.data();
  EXPECT_EQ(get_be32(&d[0]), 8u);
  EXPECT_EQ(d[4], 0x00);          // completed without errors
  EXPECT_EQ(get_be16(&d[5]), 1);  // segments processed
  EXPECT_EQ(d[7], 0x00);          // bytes
  EXPECT_EQ(get_be32(&d[8]), 1536u);

  // Another nexus, another list identifier: nothing.
  expect_sense(l.run_from(b, rcr_cdb(0x00, 7)), 0x05, 0x24, 0x00);
  expect_sense(l.run_from(a, rcr_cdb(0x00, 8)), 0x05, 0x24, 0x00);

  // A failed copy with the same list identifier replaces it.
  Task& f = l.xcopy_from(a, param_list({cscd()}, {b2b(0, 0, 1, 0, 20), b2b(0, 0, 1, 9000, 0)}, 7));
  expect_copy_aborted(f, 1, false, 0x05, 0x21, 0x00);
  Task& g = l.run_from(a, rcr_cdb(0x00, 7));
  ASSERT_EQ(g.status, Status::good);
  EXPECT_EQ(l.buffer[4], 0x01);  // completed with errors
  EXPECT_EQ(get_be16(&l.buffer[5]), 0);

  // LIST ID USAGE 11b holds nothing.
  ASSERT_EQ(l.xcopy_from(a, param_list({cscd()}, {b2b(0, 0, 1, 0, 1)}, 9, 0x03)).status,
            Status::good);
  expect_sense(l.run_from(a, rcr_cdb(0x00, 9)), 0x05, 0x24, 0x00);
  // 10b does.
  ASSERT_EQ(l.xcopy_from(a, param_list({cscd()}, {b2b(0, 0, 1, 0, 1)}, 10, 0x02)).status,
            Status::good);
  EXPECT_EQ(l.run_from(a, rcr_cdb(0x00, 10)).status, Status::good);
}

TEST(ReceiveCopyResults, FailedSegmentDetails) {
  Lu l;
  Nexus a{"iqn.a", "t", 1, {}};
  const Bytes fsd = rcr_cdb(0x04, 3);
  // Nothing held for this LIST IDENTIFIER.
  Task& none = l.run_from(a, fsd);
  expect_sense(none, 0x05, 0x24, 0x00);
  EXPECT_EQ(get_be16(&none.sense[16]), 2);

  // A copy that succeeded has no details.
  ASSERT_EQ(l.xcopy_from(a, param_list({cscd()}, {b2b(0, 0, 1, 0, 1)}, 3)).status, Status::good);
  Task& ok = l.run_from(a, fsd);
  ASSERT_EQ(ok.status, Status::good);
  ASSERT_EQ(ok.data_in_length, 4u);
  EXPECT_EQ(get_be32(&l.buffer[0]), 0u);

  // One that failed keeps its status and sense data until they are read.
  Task& f = l.xcopy_from(a, param_list({cscd()}, {b2b(0, 0, 2, 8191, 0)}, 3));
  ASSERT_EQ(f.status, Status::check_condition);
  const Bytes sense(f.sense.begin(), f.sense.begin() + f.sense_len);
  Task& part = l.run_from(a, rcr_cdb(0x04, 3, 40));  // too short for all of it
  ASSERT_EQ(part.status, Status::good);
  EXPECT_EQ(part.data_in_length, 40u);
  EXPECT_EQ(get_be32(&l.buffer[0]), 56u + sense.size());
  Task& all = l.run_from(a, fsd);
  ASSERT_EQ(all.status, Status::good);
  ASSERT_EQ(all.data_in_length, 60u + sense.size());
  EXPECT_EQ(l.buffer[56], 0x02);  // CHECK CONDITION
  EXPECT_EQ(get_be16(&l.buffer[58]), sense.size());
  EXPECT_EQ(Bytes(l.buffer.begin() + 60, l.buffer.begin() + 60 + sense.size()), sense);
  // Read in full: discarded; COPY STATUS stays.
  Task& gone = l.run_from(a, fsd);
  ASSERT_EQ(gone.status, Status::good);
  EXPECT_EQ(get_be32(&l.buffer[0]), 0u);
  ASSERT_EQ(l.run_from(a, rcr_cdb(0x00, 3)).status, Status::good);
  EXPECT_EQ(l.buffer[4], 0x01);

  // LIST ID USAGE 10b holds the status but not the details.
  ASSERT_EQ(l.xcopy_from(a, param_list({cscd()}, {b2b(0, 0, 2, 8191, 0)}, 4, 0x02)).status,
            Status::check_condition);
  ASSERT_EQ(l.run_from(a, rcr_cdb(0x04, 4)).status, Status::good);
  EXPECT_EQ(get_be32(&l.buffer[0]), 0u);
}

TEST(ReceiveCopyResults, HeldStatusesAreBounded) {
  Lu l;
  Nexus a{"iqn.a", "t", 1, {}};
  for (int id = 0; id < 100; ++id) {
    ASSERT_EQ(
        l.xcopy_from(a, param_list({cscd()}, {b2b(0, 0, 1, 0, 1)}, static_cast<std::uint8_t>(id)))
            .status,
        Status::good);
  }
  EXPECT_LE(a.copy_statuses.size(), 16u);
  EXPECT_EQ(l.run_from(a, rcr_cdb(0x00, 99)).status, Status::good);
  expect_sense(l.run_from(a, rcr_cdb(0x00, 0)), 0x05, 0x24, 0x00);
}

TEST(ExtendedCopy, ReportedAsSupported) {
  Lu l;
  // REPORT SUPPORTED OPERATION CODES, one command: 83h/00h and 84h/03h.
  for (auto [op, sa] : {std::pair<int, int>{0x83, 0x00}, {0x84, 0x00}, {0x84, 0x03}}) {
    Bytes c(12, 0);
    c[0] = 0xa3;
    c[1] = 0x0c;
    c[2] = 0x02;
    c[3] = static_cast<std::uint8_t>(op);
    put_be16(&c[4], static_cast<std::uint16_t>(sa));
    put_be32(&c[6], 64);
    Task& t = l.run(c, 64);
    ASSERT_EQ(t.status, Status::good);
    EXPECT_EQ(l.buffer[1] & 0x07, 0x03) << op << "/" << sa;
    EXPECT_EQ(get_be16(&l.buffer[2]), 16);
    EXPECT_EQ(l.buffer[4], op);
  }
  // Standard INQUIRY: 3PC.
  Bytes inq(6, 0);
  inq[0] = 0x12;
  inq[4] = 96;
  Task& t = l.run(inq, 96);
  ASSERT_EQ(t.status, Status::good);
  EXPECT_EQ(l.buffer[5] & 0x08, 0x08);
}

// Completes nothing until the test says so: a backend whose I/O completes
// later, as io_uring's does, over a memory backend's bytes.
class DeferredBackend final : public storage::Backend {
 public:
  explicit DeferredBackend(std::uint64_t size) : mem_(size) {}
  std::uint64_t size_bytes() const override { return mem_.size_bytes(); }
  storage::WriteAckPolicy ack_policy() const override { return mem_.ack_policy(); }
  void read(void* buf, std::size_t len, std::uint64_t offset, storage::IoOp* op) override {
    queue_.push_back([=, this] { mem_.read(buf, len, offset, op); });
  }
  void write(const void* buf, std::size_t len, std::uint64_t offset, bool fua,
             storage::IoOp* op) override {
    queue_.push_back([=, this] { mem_.write(buf, len, offset, fua, op); });
  }
  void flush(storage::IoOp* op) override {
    queue_.push_back([=, this] { mem_.flush(op); });
  }
  std::string describe() const override { return "deferred"; }

  // Completes the oldest operation; false when none is waiting.
  bool step() {
    if (queue_.empty()) return false;
    auto next = std::move(queue_.front());
    queue_.erase(queue_.begin());
    next();
    return true;
  }
  std::size_t waiting() const { return queue_.size(); }
  std::uint8_t* data() { return mem_.data(); }

 private:
  storage::MemoryBackend mem_;
  std::vector<std::function<void()>> queue_;
};

TEST(ExtendedCopy, CompletesAsynchronouslyChunkByChunk) {
  auto owned = std::make_unique<DeferredBackend>(8192 * 512);
  DeferredBackend* backend = owned.get();
  LunParams params;
  params.naa = kNaa;
  LogicalUnit lu(0, params, std::move(owned));
  for (int i = 0; i < 3000 * 512; ++i) backend->data()[i] = static_cast<std::uint8_t>(i * 7 + 1);
  Nexus nexus{"iqn.a", "t", 1, {}};

  CountingOwner owner;
  Task copy;
  Bytes list = param_list({cscd()}, {b2b(0, 0, 3000, 0, 4000)}, 5);
  copy.owner = &owner;
  copy.nexus = &nexus;
  copy.cdb[0] = 0x83;
  put_be32(&copy.cdb[10], static_cast<std::uint32_t>(list.size()));
  copy.direction = DataDirection::to_device;
  copy.buffer = list.data();
  copy.buffer_len = static_cast<std::uint32_t>(list.size());
  lu.execute(copy);
  EXPECT_EQ(owner.completions, 0);
  ASSERT_EQ(backend->waiting(), 1u);  // one read at a time

  // Meanwhile, on the same nexus: the status says in progress, and the same
  // LIST IDENTIFIER cannot start a second copy.
  CountingOwner other_owner;
  Task probe;
  Bytes buffer;
  const Bytes rcr = rcr_cdb(0x00, 5);
  run_task(
      [&](Task& t) {
        t.nexus = &nexus;
        lu.execute(t);
      },
      probe, other_owner, buffer, rcr, 64, nullptr);
  ASSERT_EQ(probe.status, Status::good);
  EXPECT_EQ(buffer[4], 0x10);  // in progress
  Bytes again = list;
  run_task(
      [&](Task& t) {
        t.nexus = &nexus;
        lu.execute(t);
      },
      probe, other_owner, buffer, Lu::xcopy_cdb(again.size()), 0, &again);
  expect_sense(probe, 0x05, 0x00, 0x16);  // OPERATION IN PROGRESS
  // A plain write into the segment's destination is BUSY while it copies.
  Bytes block(512, 0xaa);
  run_task([&](Task& t) { lu.execute(t); }, probe, other_owner, buffer, cdb10(0x2a, 0, 4100, 1), 0,
           &block);
  EXPECT_EQ(probe.status, Status::busy);

  int steps = 0;
  while (backend->step()) ++steps;
  EXPECT_EQ(steps, 4);  // 3000 blocks: two 1 MiB chunks, each a read and a write
  ASSERT_EQ(owner.completions, 1);
  EXPECT_EQ(copy.status, Status::good);
  EXPECT_EQ(std::memcmp(backend->data() + 4000 * 512, backend->data(), 3000 * 512), 0);

  run_task(
      [&](Task& t) {
        t.nexus = &nexus;
        lu.execute(t);
      },
      probe, other_owner, buffer, rcr, 64, nullptr);
  ASSERT_EQ(probe.status, Status::good);
  EXPECT_EQ(buffer[4], 0x00);
  EXPECT_EQ(get_be32(&buffer[8]), 3000u * 512);
  // The range lock went with the copy.
  EXPECT_FALSE(lu.atomic_write_overlaps(4000, 3000));
}

// Parameter lists mutated from valid ones: every one completes exactly once
// with a well-formed outcome, and reads nothing outside what arrived (the
// buffer is exactly the bytes sent, for ASan and valgrind to watch).
TEST(ExtendedCopy, MutatedParameterLists) {
  Lu l(false, 256);
  Nexus nexus{"iqn.a", "t", 1, {}};
  std::mt19937_64 rng(2026);
  const std::vector<Bytes> seeds = {
      param_list({cscd()}, {b2b(0, 0, 8, 0, 100)}),
      param_list({cscd(), cscd(0x6000000000000001ull)}, {b2b(0, 0, 1, 5, 6), b2b(1, 0, 2, 0, 9)}),
      param_list({cscd(), cscd()}, std::vector<Bytes>(5, b2b(1, 0, 3, 250, 1)), 3, 0x03),
  };
  int good = 0, refused = 0;
  for (int i = 0; i < 20000; ++i) {
    Bytes list = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      // Mostly the header and the descriptors' type and length bytes.
      static const std::size_t hot[] = {0,  1,  2,  3,  8,  9,  10, 11, 12,
                                        15, 16, 17, 23, 45, 48, 50, 51};
      const std::size_t at = rng() % 2 ? hot[rng() % std::size(hot)] : rng() % list.size();
      if (at < list.size()) list[at] = static_cast<std::uint8_t>(rng());
    }
    if (rng() % 4 == 0) list.resize(rng() % (list.size() + 1));
    Bytes cdb = Lu::xcopy_cdb(list.size());
    if (rng() % 8 == 0) put_be32(&cdb[10], static_cast<std::uint32_t>(rng()));
    Task& t = l.run_from(nexus, cdb, 0, &list);
    ASSERT_TRUE(t.status == Status::good || t.status == Status::check_condition ||
                t.status == Status::busy)
        << "iteration " << i;
    EXPECT_EQ(t.data_in_length, 0u);
    if (t.status == Status::check_condition) {
      ASSERT_GE(t.sense_len, 18);
      ASSERT_LE(t.sense_len, t.sense.size());
      EXPECT_EQ(t.sense[7], t.sense_len - 8);
      const std::uint8_t key = t.sense[2] & 0x0f;
      EXPECT_TRUE(key == 0x05 || key == 0x0a) << "iteration " << i << " key " << int{key};
      ++refused;
    } else {
      EXPECT_EQ(t.sense_len, 0);
      ++good;
    }
  }
  // The mutations reach both outcomes.
  EXPECT_GT(good, 100);
  EXPECT_GT(refused, 1000);
  // Nothing left held as in progress, and the held statuses stay bounded.
  for (const auto& h : nexus.copy_statuses) EXPECT_FALSE(h.in_progress);
  EXPECT_LE(nexus.copy_statuses.size(), 16u);
}

TEST(ExtendedCopy, ThirdPartyCopyVpdPage) {
  Lu l(false, 1024, 4096);
  Bytes c(6, 0);
  c[0] = 0x12;
  c[1] = 0x01;
  c[2] = 0x8f;
  c[4] = 255;
  Task& t = l.run(c, 255);
  ASSERT_EQ(t.status, Status::good);
  const std::uint8_t* d = l.buffer.data();
  EXPECT_EQ(d[1], 0x8f);
  const std::uint32_t len = get_be16(&d[2]);
  ASSERT_EQ(t.data_in_length, len + 4);
  // Walk the descriptors: each a multiple of four bytes, together the page.
  std::vector<std::uint16_t> types;
  std::uint32_t pos = 4;
  while (pos < len + 4) {
    const std::uint16_t n = get_be16(&d[pos + 2]);
    EXPECT_EQ(n % 4, 0) << "descriptor " << get_be16(&d[pos]);
    types.push_back(get_be16(&d[pos]));
    const std::uint8_t* x = &d[pos];
    switch (types.back()) {
      case 0x0001:  // Supported Commands: 83h/00h, 84h/00h, 03h and 04h
        EXPECT_EQ(x[4], 8);
        EXPECT_EQ(Bytes(x + 5, x + 13), (Bytes{0x83, 1, 0x00, 0x84, 3, 0x00, 0x03, 0x04}));
        break;
      case 0x0004:  // Parameter Data
        EXPECT_EQ(get_be16(&x[8]), 8);
        EXPECT_EQ(get_be16(&x[10]), 64);
        EXPECT_EQ(get_be32(&x[12]), 4096u);
        EXPECT_EQ(get_be32(&x[16]), 0u);
        break;
      case 0x0008:  // Supported Descriptors
        EXPECT_EQ(Bytes(x + 4, x + 7), (Bytes{2, 0x02, 0xe4}));
        break;
      case 0x8001:  // General Copy Operations
        EXPECT_EQ(get_be32(&x[12]), 16u << 20);
        EXPECT_EQ(x[16], 12);  // 4096-byte blocks
        break;
    }
    pos += 4 + n;
  }
  EXPECT_EQ(pos, len + 4);
  EXPECT_EQ(types, (std::vector<std::uint16_t>{0x0001, 0x0004, 0x0008, 0x8001}));
}

// --- copies between logical units ---

constexpr std::uint64_t kNaaB = 0x0fedcba987654321ull;
constexpr std::uint64_t kDesignatorB = 0x6fedcba987654321ull;
constexpr std::uint64_t kNaaC = 0x0000000000c0ffeeull;
constexpr std::uint64_t kDesignatorC = 0x6000000000c0ffeeull;

// What the transport would install: the LUs of the daemon, and which
// initiators may use which of them. Counts the look-ups.
struct FakeResolver {
  std::vector<std::shared_ptr<LogicalUnit>> units;
  std::vector<std::pair<std::string, std::uint64_t>> allowed;  // initiator, designator
  int calls = 0;

  std::shared_ptr<LogicalUnit> find(std::uint64_t designator, const Nexus& nexus) {
    ++calls;
    for (const auto& [who, d] : allowed) {
      if (who != nexus.initiator_name || d != designator) continue;
      for (const auto& lu : units) {
        if (naa_designator(lu->params()) == designator) return lu;
      }
    }
    return nullptr;
  }
  void install_on(LogicalUnit& lu) {
    lu.set_copy_targets([this](std::uint64_t d, const Nexus& n) { return find(d, n); });
  }
};

// Two (or three) logical units of 512-byte blocks, each the copy manager of
// copies it is sent, "iqn.a" allowed to use every one.
struct Units {
  Lu a{false, 8192, 512, kNaa, 0};
  Lu b;
  FakeResolver resolver;
  Nexus na{"iqn.a", "t", 1, {}};
  Nexus nb{"iqn.b", "t", 2, {}};

  explicit Units(bool b_read_only = false, std::uint32_t b_block_size = 512)
      : b(b_read_only, 8192 * 512 / b_block_size, b_block_size, kNaaB, 1) {
    resolver.units = {a.lu, b.lu};
    resolver.allowed = {{"iqn.a", kDesignator},
                        {"iqn.a", kDesignatorB},
                        {"iqn.b", kDesignator},
                        {"iqn.b", kDesignatorB}};
    resolver.install_on(*a.lu);
    resolver.install_on(*b.lu);
  }
};

// COPY ABORTED for segment `segment`, with the status (no sense data) a copy
// target returned: RESERVATION CONFLICT.
void expect_copy_target_status(const Task& t, std::uint16_t segment, bool destination,
                               Status status) {
  expect_sense(t, 0x0a, 0x00, 0x00);
  EXPECT_EQ(get_be16(&t.sense[10]), segment);
  EXPECT_EQ(t.sense[destination ? 8 : 9], 0);
  ASSERT_EQ(t.sense[destination ? 9 : 8], 18);
  ASSERT_EQ(t.sense_len, 19);
  EXPECT_EQ(t.sense[7], 11);
  EXPECT_EQ(t.sense[18], static_cast<std::uint8_t>(status));
}

// PERSISTENT RESERVE OUT: the CDB and its 24-byte parameter list.
std::pair<Bytes, Bytes> prout(std::uint8_t sa, std::uint8_t type, std::uint64_t key,
                              std::uint64_t sark) {
  Bytes c(10, 0);
  c[0] = 0x5f;
  c[1] = sa;
  c[2] = type;
  c[8] = 24;
  Bytes p(24, 0);
  put_be64(&p[0], key);
  put_be64(&p[8], sark);
  return {c, p};
}

Task& prout_from(Lu& l, const Nexus& n, std::uint8_t sa, std::uint8_t type, std::uint64_t key,
                 std::uint64_t sark) {
  auto [c, p] = prout(sa, type, key, sark);
  return l.run_from(n, c, 0, &p);
}

TEST(ExtendedCopyBetweenUnits, CopiesFromOneUnitToAnotherAndBack) {
  Units u;
  fill(u.a.mem, 10, 3000, 7);  // more than one 1 MiB chunk
  const Bytes from_a(u.a.mem->data() + 10 * 512, u.a.mem->data() + 3010 * 512);
  // Sent to A: A is the source, B the destination.
  Task& t =
      u.a.xcopy_from(u.na, param_list({cscd(), cscd(kDesignatorB)}, {b2b(0, 1, 3000, 10, 500)}));
  ASSERT_EQ(t.status, Status::good);
  EXPECT_EQ(std::memcmp(u.b.mem->data() + 500 * 512, from_a.data(), from_a.size()), 0);
  EXPECT_EQ(u.b.mem->data()[499 * 512 + 511], 0);  // nothing around it
  EXPECT_EQ(u.b.mem->data()[3500 * 512], 0);
  EXPECT_EQ(std::memcmp(u.a.mem->data() + 10 * 512, from_a.data(), from_a.size()), 0);

  // Sent to A again, the other way: B is the source, A the destination.
  fill(u.b.mem, 7000, 40, 3);
  const Bytes from_b(u.b.mem->data() + 7000 * 512, u.b.mem->data() + 7040 * 512);
  Task& r = u.a.xcopy_from(
      u.na, param_list({cscd(kDesignatorB), cscd()}, {b2b(0, 1, 40, 7000, 6000)}, 9));
  ASSERT_EQ(r.status, Status::good);
  EXPECT_EQ(std::memcmp(u.a.mem->data() + 6000 * 512, from_b.data(), from_b.size()), 0);
  // The copy manager (A) holds its status.
  Task& s = u.a.run_from(u.na, rcr_cdb(0x00, 9));
  ASSERT_EQ(s.status, Status::good);
  EXPECT_EQ(u.a.buffer[4], 0x00);
  EXPECT_EQ(get_be32(&u.a.buffer[8]), 40u * 512);

  // Sent to B, naming A: copies within A, and from A into B, in one command.
  Task& w = u.b.xcopy_from(u.na, param_list({cscd(kDesignatorB), cscd()},
                                            {b2b(1, 1, 8, 10, 8000), b2b(1, 0, 8, 10, 100)}));
  ASSERT_EQ(w.status, Status::good);
  EXPECT_EQ(std::memcmp(u.a.mem->data() + 8000 * 512, from_a.data(), 8 * 512), 0);
  EXPECT_EQ(std::memcmp(u.b.mem->data() + 100 * 512, from_a.data(), 8 * 512), 0);
  // One look-up per command for B's designator on A, for A's on B.
  EXPECT_EQ(u.resolver.calls, 3);
}

TEST(ExtendedCopyBetweenUnits, OnlyWhatTheResolverFindsForTheNexusIsReachable) {
  Units u;
  fill(u.a.mem, 0, 4, 1);
  const Bytes list = param_list({cscd(), cscd(kDesignatorB)}, {b2b(0, 1, 4, 0, 10)});
  // An initiator the resolver does not let use B.
  Nexus stranger{"iqn.stranger", "t", 3, {}};
  Task& t = u.a.xcopy_from(stranger, list);
  expect_sense(t, 0x0a, 0x0d, 0x02);
  EXPECT_EQ(get_be16(&t.sense[10]), 0);
  // No nexus: no initiator to ask for, and the resolver is not asked.
  const int before = u.resolver.calls;
  expect_sense(u.a.xcopy(list), 0x0a, 0x0d, 0x02);
  EXPECT_EQ(u.resolver.calls, before);
  // A designator no LU has.
  expect_sense(
      u.a.xcopy_from(u.na, param_list({cscd(), cscd(kDesignatorC)}, {b2b(0, 1, 4, 0, 10)})), 0x0a,
      0x0d, 0x02);
  // A resolver that answers with an LU of another designator is not believed.
  u.a.lu->set_copy_targets([&](std::uint64_t, const Nexus&) { return u.b.lu; });
  expect_sense(
      u.a.xcopy_from(u.na, param_list({cscd(), cscd(kDesignatorC)}, {b2b(0, 1, 4, 0, 10)})), 0x0a,
      0x0d, 0x02);
  EXPECT_EQ(u.b.mem->data()[10 * 512], 0);  // nothing was copied
  // Without a resolver an LU reaches itself only, as before.
  u.a.lu->set_copy_targets(nullptr);
  expect_sense(u.a.xcopy_from(u.na, list), 0x0a, 0x0d, 0x02);
  EXPECT_EQ(u.a.xcopy_from(u.na, param_list({cscd()}, {b2b(0, 0, 4, 0, 10)})).status, Status::good);
}

TEST(ExtendedCopyBetweenUnits, WriteProtectedDestination) {
  {
    Units u(true);  // B read_only
    Task& t = u.a.xcopy_from(u.na, param_list({cscd(), cscd(kDesignatorB)}, {b2b(0, 1, 1, 0, 1)}));
    expect_copy_aborted(t, 0, true, 0x07, 0x27, 0x00);
    // Reading it is fine.
    fill(u.b.mem, 0, 1, 5);
    EXPECT_EQ(
        u.a.xcopy_from(u.na, param_list({cscd(), cscd(kDesignatorB)}, {b2b(1, 0, 1, 0, 1)})).status,
        Status::good);
    EXPECT_EQ(std::memcmp(u.a.mem->data() + 512, u.b.mem->data(), 512), 0);
  }
  Units u;
  // SWP on B (MODE SELECT of the control page): SOFTWARE WRITE PROTECTED.
  Task& ms = u.b.run(Bytes{0x1a, 0x08, 0x0a, 0, 255, 0}, 255);
  ASSERT_EQ(ms.status, Status::good);
  Bytes select(4, 0);
  select.insert(select.end(), u.b.buffer.begin() + 4, u.b.buffer.begin() + ms.data_in_length);
  select[4 + 4] |= 0x08;
  ASSERT_EQ(
      u.b.run(Bytes{0x15, 0x10, 0, 0, static_cast<std::uint8_t>(select.size()), 0}, 0, &select)
          .status,
      Status::good);
  ASSERT_TRUE(u.b.lu->software_write_protect());
  fill(u.a.mem, 0, 1, 5);
  Task& t = u.a.xcopy_from(
      u.na, param_list({cscd(), cscd(kDesignatorB)}, {b2b(0, 0, 1, 0, 1), b2b(0, 1, 1, 0, 1)}));
  expect_copy_aborted(t, 1, true, 0x07, 0x27, 0x02);
  EXPECT_EQ(u.b.mem->data()[512], 0);
  EXPECT_EQ(u.a.mem->data()[512], 0);  // checked before anything moved
}

TEST(ExtendedCopyBetweenUnits, ReservationsOfTheOtherUnitApplyToTheNexus) {
  Units u;
  fill(u.a.mem, 0, 8, 2);
  fill(u.b.mem, 100, 8, 9);
  const Bytes a_to_b = param_list({cscd(), cscd(kDesignatorB)}, {b2b(0, 1, 8, 0, 10)});
  const Bytes b_to_a = param_list({cscd(), cscd(kDesignatorB)}, {b2b(1, 0, 8, 100, 20)});
  // iqn.b registers with B and reserves it WRITE EXCLUSIVE.
  ASSERT_EQ(prout_from(u.b, u.nb, 0x00, 0, 0, 0xbb).status, Status::good);
  ASSERT_EQ(prout_from(u.b, u.nb, 0x01, 0x01, 0xbb, 0).status, Status::good);
  // iqn.a's WRITE to B would conflict: so does its copy into B.
  Task& t = u.a.xcopy_from(u.na, a_to_b);
  expect_copy_target_status(t, 0, true, Status::reservation_conflict);
  EXPECT_EQ(u.b.mem->data()[10 * 512], 0);
  // Reads are allowed under WRITE EXCLUSIVE: B as the source is fine.
  ASSERT_EQ(u.a.xcopy_from(u.na, b_to_a).status, Status::good);
  EXPECT_EQ(std::memcmp(u.a.mem->data() + 20 * 512, u.b.mem->data() + 100 * 512, 8 * 512), 0);
  // The holder copies into B through A.
  ASSERT_EQ(u.a.xcopy_from(u.nb, a_to_b).status, Status::good);
  EXPECT_EQ(std::memcmp(u.b.mem->data() + 10 * 512, u.a.mem->data(), 8 * 512), 0);

  // EXCLUSIVE ACCESS: iqn.a may not read B either.
  ASSERT_EQ(prout_from(u.b, u.nb, 0x02, 0x01, 0xbb, 0).status, Status::good);  // RELEASE
  ASSERT_EQ(prout_from(u.b, u.nb, 0x01, 0x03, 0xbb, 0).status, Status::good);
  expect_copy_target_status(u.a.xcopy_from(u.na, b_to_a), 0, false, Status::reservation_conflict);
  ASSERT_EQ(prout_from(u.b, u.nb, 0x02, 0x03, 0xbb, 0).status, Status::good);
  EXPECT_EQ(u.a.xcopy_from(u.na, b_to_a).status, Status::good);

  // An SPC-2 RESERVE(6) of B by iqn.b (unregistered first: SPC-2 reservations
  // do not mix with registrations): every command of another nexus conflicts.
  ASSERT_EQ(prout_from(u.b, u.nb, 0x00, 0, 0xbb, 0).status, Status::good);
  ASSERT_EQ(u.b.run_from(u.nb, Bytes{0x16, 0, 0, 0, 0, 0}).status, Status::good);
  expect_copy_target_status(u.a.xcopy_from(u.na, b_to_a), 0, false, Status::reservation_conflict);
  expect_copy_target_status(u.a.xcopy_from(u.na, a_to_b), 0, true, Status::reservation_conflict);
  EXPECT_EQ(u.a.xcopy_from(u.nb, a_to_b).status, Status::good);
  ASSERT_EQ(u.b.run_from(u.nb, Bytes{0x17, 0, 0, 0, 0, 0}).status, Status::good);
  EXPECT_EQ(u.a.xcopy_from(u.na, a_to_b).status, Status::good);
}

TEST(ExtendedCopyBetweenUnits, UnitAttentionsOfTheOtherUnitStayPending) {
  Units u;
  // iqn.a has used B; then B grows: iqn.a has CAPACITY DATA HAS CHANGED to hear.
  ASSERT_EQ(u.b.run_from(u.na, Bytes{0x00, 0, 0, 0, 0, 0}).status, Status::good);
  u.b.lu->post_unit_attention(0x2a, 0x09);
  // The copy through A neither reports nor clears it...
  fill(u.a.mem, 0, 2, 4);
  ASSERT_EQ(
      u.a.xcopy_from(u.na, param_list({cscd(), cscd(kDesignatorB)}, {b2b(0, 1, 2, 0, 2)})).status,
      Status::good);
  EXPECT_EQ(std::memcmp(u.b.mem->data() + 2 * 512, u.a.mem->data(), 2 * 512), 0);
  // ...iqn.a's next command to B does.
  expect_sense(u.b.run_from(u.na, Bytes{0x00, 0, 0, 0, 0, 0}), 0x06, 0x2a, 0x09);
  EXPECT_EQ(u.b.run_from(u.na, Bytes{0x00, 0, 0, 0, 0, 0}).status, Status::good);
}

TEST(ExtendedCopyBetweenUnits, DestinationRangeLockOfTheOtherUnit) {
  Units u;
  fill(u.a.mem, 0, 8, 2);
  const Bytes list = param_list({cscd(), cscd(kDesignatorB)}, {b2b(0, 1, 8, 0, 16)});
  ASSERT_TRUE(u.b.lu->caw_lock(20, 4));
  EXPECT_EQ(u.a.xcopy_from(u.na, list).status, Status::busy);
  EXPECT_EQ(u.b.mem->data()[16 * 512], 0);
  // A's own range with the same LBAs is not B's.
  ASSERT_TRUE(u.a.lu->caw_lock(16, 8));
  u.b.lu->caw_unlock(20);
  EXPECT_EQ(u.a.xcopy_from(u.na, list).status, Status::good);
  u.a.lu->caw_unlock(16);
  EXPECT_FALSE(u.b.lu->atomic_write_overlaps(0, 8192));
}

TEST(ExtendedCopyBetweenUnits, DifferentBlockLengths) {
  Units u(false, 4096);  // A: 8192 blocks of 512; B: 1024 blocks of 4096
  fill(u.a.mem, 0, 200, 6);
  const Bytes b_cscd = cscd(kDesignatorB, 4096);
  // 16 source blocks (DC 0) are 2 destination blocks.
  ASSERT_EQ(u.a.xcopy_from(u.na, param_list({cscd(), b_cscd}, {b2b(0, 1, 16, 8, 2)})).status,
            Status::good);
  EXPECT_EQ(std::memcmp(u.b.mem->data() + 2 * 4096, u.a.mem->data() + 8 * 512, 16 * 512), 0);
  EXPECT_EQ(u.b.mem->data()[4 * 4096], 0);
  // DC 1: 3 destination blocks are 24 source blocks.
  Bytes dc = b2b(0, 1, 3, 100, 10);
  dc[1] = 0x02;
  ASSERT_EQ(u.a.xcopy_from(u.na, param_list({cscd(), b_cscd}, {dc})).status, Status::good);
  EXPECT_EQ(std::memcmp(u.b.mem->data() + 10 * 4096, u.a.mem->data() + 100 * 512, 24 * 512), 0);
  EXPECT_EQ(u.b.mem->data()[13 * 4096], 0);
  // And back: 2 blocks of B are 16 of A.
  ASSERT_EQ(u.a.xcopy_from(u.na, param_list({b_cscd, cscd()}, {b2b(0, 1, 2, 10, 4000)})).status,
            Status::good);
  EXPECT_EQ(std::memcmp(u.a.mem->data() + 4000 * 512, u.b.mem->data() + 10 * 4096, 2 * 4096), 0);

  // 3 source blocks do not fill whole destination blocks: UNEXPECTED INEXACT
  // SEGMENT, before the first (exact) segment moved anything.
  Task& t = u.a.xcopy_from(
      u.na, param_list({cscd(), b_cscd}, {b2b(0, 1, 8, 0, 500), b2b(0, 1, 3, 0, 600)}));
  expect_sense(t, 0x0a, 0x26, 0x0a);
  EXPECT_EQ(get_be16(&t.sense[10]), 1);
  EXPECT_EQ(u.b.mem->data()[500 * 4096], 0);
  // DC 1 from B to A: 1 destination block of 512 is an eighth of a source block.
  Bytes part = b2b(0, 1, 1, 0, 7000);
  part[1] = 0x02;
  expect_sense(u.a.xcopy_from(u.na, param_list({b_cscd, cscd()}, {part})), 0x0a, 0x26, 0x0a);
  // The range is checked in each copy target's own blocks.
  EXPECT_EQ(u.a.xcopy_from(u.na, param_list({cscd(), b_cscd}, {b2b(0, 1, 8, 0, 1023)})).status,
            Status::good);
  expect_copy_aborted(u.a.xcopy_from(u.na, param_list({cscd(), b_cscd}, {b2b(0, 1, 16, 0, 1023)})),
                      0, true, 0x05, 0x21, 0x00);
  // A CSCD descriptor naming B with A's block length is a bad field.
  Task& w = u.a.xcopy_from(u.na, param_list({cscd(), cscd(kDesignatorB)}, {b2b(0, 1, 8, 0, 0)}));
  expect_sense(w, 0x05, 0x26, 0x00);
  EXPECT_EQ(get_be16(&w.sense[16]), 16 + 32 + 29);
  // MAXIMUM SEGMENT LENGTH counts the bytes: 4096 blocks of 4096 are 16 MiB, 4097 too many.
  Bytes big = b2b(0, 1, 4097, 0, 0);
  big[1] = 0x02;
  Task& m = u.a.xcopy_from(u.na, param_list({cscd(), b_cscd}, {big}));
  expect_sense(m, 0x05, 0x26, 0x00);
  EXPECT_EQ(get_be16(&m.sense[16]), 16 + 64 + 10);
}

// A copy in flight holds the other LU: removed from everywhere else (a live
// LUN removal), it lives until the copy is done, then goes. And a segment is
// checked again when its turn comes.
TEST(ExtendedCopyBetweenUnits, OtherUnitOutlivesItsRemovalAndIsCheckedPerSegment) {
  Lu a;
  fill(a.mem, 0, 3000, 8);
  auto owned = std::make_unique<DeferredBackend>(8192 * 512);
  DeferredBackend* backend = owned.get();
  LunParams params;
  params.naa = kNaaB;
  auto b = std::make_shared<LogicalUnit>(1, params, std::move(owned));
  FakeResolver resolver;
  resolver.units = {a.lu, b};
  resolver.allowed = {{"iqn.a", kDesignatorB}};
  resolver.install_on(*a.lu);
  Nexus nexus{"iqn.a", "t", 1, {}};

  CountingOwner owner;
  Task copy;
  Bytes list =
      param_list({cscd(), cscd(kDesignatorB)}, {b2b(0, 1, 3000, 0, 100), b2b(0, 1, 1, 0, 5000)}, 6);
  copy.owner = &owner;
  copy.nexus = &nexus;
  copy.cdb[0] = 0x83;
  put_be32(&copy.cdb[10], static_cast<std::uint32_t>(list.size()));
  copy.direction = DataDirection::to_device;
  copy.buffer = list.data();
  copy.buffer_len = static_cast<std::uint32_t>(list.size());
  a.lu->execute(copy);
  ASSERT_EQ(owner.completions, 0);
  ASSERT_EQ(backend->waiting(), 1u);  // A's read completed inline; B's write waits

  std::weak_ptr<LogicalUnit> watch = b;
  resolver.units.clear();
  b.reset();
  EXPECT_FALSE(watch.expired());
  // SWP set on B meanwhile: the segment in progress finishes, the next does not start.
  {
    auto lu = watch.lock();
    CountingOwner o;
    Task t;
    Bytes buffer;
    Task& ms = run_task([&](Task& x) { lu->execute(x); }, t, o, buffer,
                        Bytes{0x1a, 0x08, 0x0a, 0, 255, 0}, 255, nullptr);
    ASSERT_EQ(ms.status, Status::good);
    Bytes select(4, 0);
    select.insert(select.end(), buffer.begin() + 4, buffer.begin() + ms.data_in_length);
    select[8] |= 0x08;
    Task& sel =
        run_task([&](Task& x) { lu->execute(x); }, t, o, buffer,
                 Bytes{0x15, 0x10, 0, 0, static_cast<std::uint8_t>(select.size()), 0}, 0, &select);
    ASSERT_EQ(sel.status, Status::good);
  }
  // The completion that ends the copy drops the last hold on B, and B's
  // backend with it: step no more after that.
  while (!watch.expired()) ASSERT_TRUE(backend->step()) << "the copy ended but still holds B";
  ASSERT_EQ(owner.completions, 1);
  expect_copy_aborted(copy, 1, true, 0x07, 0x27, 0x02);
  Task& s = a.run_from(nexus, rcr_cdb(0x00, 6));
  ASSERT_EQ(s.status, Status::good);
  EXPECT_EQ(a.buffer[4], 0x01);          // completed with errors
  EXPECT_EQ(get_be16(&a.buffer[5]), 1);  // after one segment
  EXPECT_EQ(get_be32(&a.buffer[8]), 3000u * 512);
}

}  // namespace
}  // namespace ringtgt::scsi
