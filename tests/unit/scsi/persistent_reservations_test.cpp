// Persistent reservations and unit attentions: the state machine alone, then
// PERSISTENT RESERVE IN/OUT through a LogicalUnit on the memory backend with
// several I_T nexuses, then the APTPL file.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../home_engine.hpp"
#include "ringtgt/reactor/foreign_completions.hpp"
#include "ringtgt/reactor/io_engine.hpp"
#include "ringtgt/scsi/cdb.hpp"
#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/scsi/persistent_reservations.hpp"
#include "ringtgt/scsi/unit_attention.hpp"
#include "ringtgt/storage/memory_backend.hpp"
#include "scsi_test_support.hpp"

namespace ringtgt::scsi {
namespace {

using namespace ringtgt::scsi::testing;

constexpr std::uint8_t WE = 1, EA = 3, WERO = 5, EARO = 6, WEAR = 7, EAAR = 8;

// --- the state machine alone ---

struct Out {
  std::uint8_t cdb[10] = {0x5f};
  Bytes params = Bytes(24, 0);
};

Out prout(std::uint8_t sa, std::uint64_t key, std::uint64_t sark, std::uint8_t type = 0,
          std::uint8_t flags = 0) {
  Out o;
  o.cdb[1] = sa;
  o.cdb[2] = type;
  put_be32(&o.cdb[5], 24);
  put_be64(&o.params[0], key);
  put_be64(&o.params[8], sark);
  o.params[20] = flags;
  return o;
}

PrOutcome run(PersistentReservations& pr, const std::string& port, const Out& o) {
  return pr.out(port, o.cdb, o.params.data(), o.params.size());
}

const std::string A = "iqn.a,i,0x000000000001";
const std::string B = "iqn.b,i,0x000000000002";
const std::string C = "iqn.c,i,0x000000000003";

TEST(PrStateMachine, RegisterChangeAndUnregister) {
  PersistentReservations pr;
  EXPECT_EQ(run(pr, A, prout(0, 0, 0)).status, Status::good);  // nothing to unregister
  EXPECT_EQ(pr.generation(), 0u);
  EXPECT_EQ(run(pr, A, prout(0, 5, 0x11)).status, Status::reservation_conflict);  // not registered
  auto r = run(pr, A, prout(0, 0, 0x11));
  EXPECT_EQ(r.status, Status::good);
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(pr.generation(), 1u);
  EXPECT_EQ(run(pr, A, prout(0, 0x12, 0x22)).status, Status::reservation_conflict);  // wrong key
  EXPECT_EQ(run(pr, A, prout(0, 0x11, 0x22)).status, Status::good);
  EXPECT_EQ(pr.registrations().at(0).key, 0x22u);
  EXPECT_EQ(run(pr, A, prout(6, 0x999, 0x33)).status, Status::good);  // ignore existing key
  EXPECT_EQ(pr.registrations().at(0).key, 0x33u);
  EXPECT_EQ(run(pr, A, prout(0, 0x33, 0)).status, Status::good);
  EXPECT_TRUE(pr.registrations().empty());
  EXPECT_EQ(pr.generation(), 4u);
}

TEST(PrStateMachine, ReserveReleaseRules) {
  PersistentReservations pr;
  run(pr, A, prout(0, 0, 0xa));
  run(pr, B, prout(0, 0, 0xb));
  EXPECT_EQ(run(pr, C, prout(1, 0, 0, WE)).status, Status::reservation_conflict);    // unregistered
  EXPECT_EQ(run(pr, A, prout(1, 0xb, 0, WE)).status, Status::reservation_conflict);  // not its key
  const std::uint32_t gen = pr.generation();
  EXPECT_EQ(run(pr, A, prout(1, 0xa, 0, WE)).status, Status::good);
  EXPECT_EQ(pr.generation(), gen);                                   // RESERVE does not count
  EXPECT_EQ(run(pr, A, prout(1, 0xa, 0, WE)).status, Status::good);  // again: no change
  EXPECT_EQ(run(pr, A, prout(1, 0xa, 0, EA)).status, Status::reservation_conflict);
  EXPECT_EQ(run(pr, B, prout(1, 0xb, 0, WE)).status, Status::reservation_conflict);
  EXPECT_EQ(run(pr, B, prout(2, 0xb, 0, WE)).status, Status::good);  // not holder: no-op
  EXPECT_TRUE(pr.standing(A).holder);
  auto bad = run(pr, A, prout(2, 0xa, 0, EA));
  EXPECT_EQ(bad.status, Status::check_condition);
  EXPECT_EQ(bad.sense.asc, 0x26);
  EXPECT_EQ(bad.sense.ascq, 0x04);
  EXPECT_EQ(run(pr, A, prout(2, 0xa, 0, WE)).status, Status::good);
  EXPECT_EQ(pr.type(), PrType::none);
  // Bad scope or type: INVALID FIELD IN CDB, byte 2.
  auto scope = run(pr, A, prout(1, 0xa, 0, 0x10 | WE));
  EXPECT_EQ(scope.cdb_field, 2);
  EXPECT_EQ(run(pr, A, prout(1, 0xa, 0, 2)).cdb_field, 2);
  EXPECT_EQ(run(pr, A, prout(9, 0xa, 0)).cdb_field, 1);
}

TEST(PrStateMachine, RegistrantsOnlyReleaseAndUnregisterTellTheOthers) {
  PersistentReservations pr;
  run(pr, A, prout(0, 0, 0xa));
  run(pr, B, prout(0, 0, 0xb));
  run(pr, C, prout(0, 0, 0xc));
  ASSERT_EQ(run(pr, A, prout(1, 0xa, 0, WERO)).status, Status::good);
  EXPECT_TRUE(pr.standing(B).registered);
  EXPECT_FALSE(pr.standing(B).holder);
  auto r = run(pr, A, prout(2, 0xa, 0, WERO));
  ASSERT_EQ(r.unit_attentions.size(), 2u);
  EXPECT_EQ(r.unit_attentions[0].initiator_port, B);
  EXPECT_EQ(r.unit_attentions[0].asc, 0x2a);
  EXPECT_EQ(r.unit_attentions[0].ascq, 0x04);
  // The holder unregistering releases a registrants-only reservation too.
  ASSERT_EQ(run(pr, A, prout(1, 0xa, 0, EARO)).status, Status::good);
  auto u = run(pr, A, prout(0, 0xa, 0));
  EXPECT_EQ(pr.type(), PrType::none);
  EXPECT_EQ(u.unit_attentions.size(), 2u);
}

TEST(PrStateMachine, AllRegistrantsHolderIsEveryRegistrant) {
  PersistentReservations pr;
  run(pr, A, prout(0, 0, 0xa));
  run(pr, B, prout(0, 0, 0xb));
  ASSERT_EQ(run(pr, A, prout(1, 0xa, 0, EAAR)).status, Status::good);
  EXPECT_TRUE(pr.standing(B).holder);
  EXPECT_FALSE(pr.standing(C).holder);
  EXPECT_EQ(run(pr, B, prout(1, 0xb, 0, EAAR)).status, Status::good);
  // READ RESERVATION shows key 0 for the all-registrants types.
  auto rr = pr.in(1);
  ASSERT_TRUE(rr);
  ASSERT_EQ(rr->size(), 24u);
  EXPECT_EQ(get_be64(&(*rr)[8]), 0u);
  EXPECT_EQ((*rr)[21], EAAR);
  // The reservation lasts until the last registrant goes.
  run(pr, A, prout(0, 0xa, 0));
  EXPECT_EQ(pr.type(), PrType::exclusive_access_all_registrants);
  run(pr, B, prout(0, 0xb, 0));
  EXPECT_EQ(pr.type(), PrType::none);
}

TEST(PrStateMachine, ClearRemovesEverythingAndTellsTheOthers) {
  PersistentReservations pr;
  run(pr, A, prout(0, 0, 0xa));
  run(pr, B, prout(0, 0, 0xb));
  run(pr, A, prout(1, 0xa, 0, WE));
  EXPECT_EQ(run(pr, C, prout(3, 0, 0)).status, Status::reservation_conflict);
  auto r = run(pr, B, prout(3, 0xb, 0));
  EXPECT_EQ(r.status, Status::good);
  EXPECT_TRUE(pr.registrations().empty());
  EXPECT_EQ(pr.type(), PrType::none);
  ASSERT_EQ(r.unit_attentions.size(), 1u);
  EXPECT_EQ(r.unit_attentions[0].initiator_port, A);
  EXPECT_EQ(r.unit_attentions[0].ascq, 0x03);
}

TEST(PrStateMachine, Preempt) {
  PersistentReservations pr;
  run(pr, A, prout(0, 0, 0xa));
  run(pr, B, prout(0, 0, 0xb));
  run(pr, C, prout(0, 0, 0xc));
  // No reservation: removes the registrations with that key.
  auto r = run(pr, A, prout(4, 0xa, 0xc, WE));
  EXPECT_EQ(r.status, Status::good);
  EXPECT_FALSE(pr.registered(C));
  ASSERT_EQ(r.unit_attentions.size(), 1u);
  EXPECT_EQ(r.unit_attentions[0].ascq, 0x05);
  EXPECT_EQ(pr.type(), PrType::none);
  EXPECT_EQ(run(pr, A, prout(4, 0xa, 0xc, WE)).status, Status::reservation_conflict);  // no one
  EXPECT_EQ(run(pr, A, prout(4, 0xa, 0, WE)).sense.asc, 0x26);                         // SARK 0
  // B holds EA; A preempts B's key: B goes, A holds WE.
  ASSERT_EQ(run(pr, B, prout(1, 0xb, 0, EA)).status, Status::good);
  auto p = run(pr, A, prout(5, 0xa, 0xb, WE));
  EXPECT_EQ(p.status, Status::good);
  EXPECT_TRUE(pr.standing(A).holder);
  EXPECT_EQ(pr.type(), PrType::write_exclusive);
  EXPECT_FALSE(pr.registered(B));
  ASSERT_EQ(p.abort_tasks_of.size(), 1u);  // PREEMPT AND ABORT names whose tasks go
  EXPECT_EQ(p.abort_tasks_of[0], B);
  // All registrants with SARK 0: every other registration goes.
  run(pr, B, prout(0, 0, 0xb));
  run(pr, C, prout(0, 0, 0xc));
  run(pr, A, prout(2, 0xa, 0, WE));
  ASSERT_EQ(run(pr, B, prout(1, 0xb, 0, WEAR)).status, Status::good);
  auto all = run(pr, C, prout(4, 0xc, 0, EA));
  EXPECT_EQ(all.status, Status::good);
  EXPECT_EQ(pr.registrations().size(), 1u);
  EXPECT_TRUE(pr.standing(C).holder);
  EXPECT_EQ(pr.type(), PrType::exclusive_access);
  EXPECT_EQ(all.unit_attentions.size(), 2u);
}

TEST(PrStateMachine, PreemptAndAbortNamesEveryNexusRegisteredWithTheKey) {
  const std::string B2 = "iqn.b,i,0x000000000022";  // another port of b, same key
  PersistentReservations pr;
  run(pr, A, prout(0, 0, 0xa));
  run(pr, B, prout(0, 0, 0xb));
  run(pr, B2, prout(0, 0, 0xb));
  run(pr, C, prout(0, 0, 0xc));
  ASSERT_EQ(run(pr, B, prout(1, 0xb, 0, WE)).status, Status::good);
  // Plain PREEMPT aborts nothing.
  PersistentReservations plain = pr;
  auto p = run(plain, A, prout(4, 0xa, 0xb, WE));
  EXPECT_EQ(p.status, Status::good);
  EXPECT_TRUE(p.abort_tasks_of.empty());
  // PREEMPT AND ABORT: both of b's nexuses, not c (another key), not a.
  auto pa = run(pr, A, prout(5, 0xa, 0xb, WE));
  EXPECT_EQ(pa.status, Status::good);
  EXPECT_EQ(pa.abort_tasks_of, (std::vector<std::string>{B, B2}));
  EXPECT_TRUE(pr.standing(A).holder);
  EXPECT_FALSE(pr.registered(B2));
  // Failed ones abort nothing: a key no one has, a wrong own key, SARK 0
  // without an all-registrants reservation.
  EXPECT_EQ(run(pr, A, prout(5, 0xa, 0xb, WE)).status, Status::reservation_conflict);
  EXPECT_TRUE(run(pr, A, prout(5, 0xa, 0xb, WE)).abort_tasks_of.empty());
  auto wrong = run(pr, C, prout(5, 0xa, 0xa, WE));
  EXPECT_EQ(wrong.status, Status::reservation_conflict);
  EXPECT_TRUE(wrong.abort_tasks_of.empty());
  auto zero = run(pr, C, prout(5, 0xc, 0, WE));
  EXPECT_EQ(zero.status, Status::check_condition);
  EXPECT_TRUE(zero.abort_tasks_of.empty());
  EXPECT_TRUE(pr.standing(A).holder);
}

TEST(PrStateMachine, PreemptAndAbortOfItsOwnKeyAbortsItsOwnTasksToo) {
  // The holder preempts itself (SPC-4 5.13.11.2.4.3): it keeps its
  // registration and gets the new type, yet its nexus is one registered
  // with the key, so its other tasks go (5.13.11.2.6); so do those of
  // another nexus with the same key, whose registration goes.
  const std::string A2 = "iqn.a,i,0x000000000011";
  PersistentReservations pr;
  run(pr, A, prout(0, 0, 0xa));
  run(pr, A2, prout(0, 0, 0xa));
  run(pr, B, prout(0, 0, 0xb));
  ASSERT_EQ(run(pr, A, prout(1, 0xa, 0, WE)).status, Status::good);
  auto self = run(pr, A, prout(5, 0xa, 0xa, EA));
  EXPECT_EQ(self.status, Status::good);
  EXPECT_EQ(self.abort_tasks_of, (std::vector<std::string>{A, A2}));
  EXPECT_TRUE(pr.registered(A));
  EXPECT_FALSE(pr.registered(A2));
  EXPECT_TRUE(pr.registered(B));
  EXPECT_EQ(pr.type(), PrType::exclusive_access);
  // All registrants and SARK 0: every registered nexus, the preempting one too.
  run(pr, A, prout(2, 0xa, 0, EA));
  run(pr, C, prout(0, 0, 0xc));
  ASSERT_EQ(run(pr, B, prout(1, 0xb, 0, WEAR)).status, Status::good);
  auto all = run(pr, C, prout(5, 0xc, 0, WE));
  EXPECT_EQ(all.status, Status::good);
  EXPECT_EQ(all.abort_tasks_of, (std::vector<std::string>{A, B, C}));
  EXPECT_EQ(pr.registrations().size(), 1u);
  EXPECT_TRUE(pr.standing(C).holder);
}

Bytes transport_id(const std::string& port) {
  std::size_t n = (port.size() + 1 + 3) / 4 * 4;
  if (n < 20) n = 20;
  Bytes b(4 + n, 0);
  b[0] = 0x45;
  put_be16(&b[2], static_cast<std::uint16_t>(n));
  std::copy(port.begin(), port.end(), b.begin() + 4);
  return b;
}

TEST(PrStateMachine, RegisterAndMove) {
  PersistentReservations pr;
  run(pr, A, prout(0, 0, 0xa));
  run(pr, A, prout(1, 0xa, 0, WE));
  Out o = prout(7, 0xa, 0xbb, WE);
  o.params[17] = 0x02;  // UNREG
  put_be16(&o.params[18], 1);
  const Bytes tid = transport_id("iqn.b,i,0x2");
  put_be32(&o.params[20], static_cast<std::uint32_t>(tid.size()));
  o.params.insert(o.params.end(), tid.begin(), tid.end());
  put_be32(&o.cdb[5], static_cast<std::uint32_t>(o.params.size()));
  EXPECT_EQ(run(pr, C, o).status, Status::reservation_conflict);  // not registered
  auto r = run(pr, A, o);
  ASSERT_EQ(r.status, Status::good);
  EXPECT_TRUE(pr.standing(B).holder);  // the ISID is read as hex and normalised
  EXPECT_EQ(pr.registrations().size(), 1u);
  EXPECT_FALSE(pr.registered(A));
  // To itself: invalid.
  Out self = o;
  put_be64(&self.params[0], 0xbb);
  const Bytes tid_b = transport_id(B);
  self.params.resize(24);
  self.params.insert(self.params.end(), tid_b.begin(), tid_b.end());
  put_be32(&self.params[20], static_cast<std::uint32_t>(tid_b.size()));
  put_be32(&self.cdb[5], static_cast<std::uint32_t>(self.params.size()));
  EXPECT_EQ(run(pr, B, self).sense.asc, 0x26);
}

TEST(PrStateMachine, ParameterListAndSpecIPt) {
  PersistentReservations pr;
  Out o = prout(0, 0, 0xa);
  EXPECT_EQ(pr.out(A, o.cdb, o.params.data(), 20).sense.asc, 0x1a);
  Out big = o;
  big.params.resize(28);
  EXPECT_EQ(pr.out(A, big.cdb, big.params.data(), 28).sense.asc, 0x1a);
  auto spec = run(pr, A, prout(0, 0, 0xa, 0, 0x08));
  EXPECT_EQ(spec.status, Status::check_condition);
  EXPECT_EQ(spec.sense.asc, 0x26);
}

TEST(PrStateMachine, ReportCapabilitiesAndFullStatus) {
  PersistentReservations pr;
  auto caps = pr.in(2);
  ASSERT_TRUE(caps);
  ASSERT_EQ(caps->size(), 8u);
  EXPECT_EQ(get_be16(&(*caps)[0]), 8u);
  EXPECT_EQ((*caps)[2] & 0x08, 0);  // SIP_C 0
  EXPECT_EQ((*caps)[2] & 0x01, 1);  // PTPL_C
  EXPECT_EQ((*caps)[3] & 0x01, 0);  // PTPL_A off
  EXPECT_EQ((*caps)[4], 0xea);
  EXPECT_EQ((*caps)[5], 0x01);
  run(pr, A, prout(0, 0, 0xa, 0, 0x05));  // ALL_TG_PT, APTPL
  EXPECT_TRUE(pr.aptpl());
  EXPECT_EQ((*pr.in(2))[3] & 0x01, 1);
  run(pr, A, prout(1, 0xa, 0, WERO));
  run(pr, B, prout(0, 0, 0xb));
  auto fs = pr.in(3);
  ASSERT_TRUE(fs);
  const Bytes& d = *fs;
  EXPECT_EQ(get_be32(&d[0]), pr.generation());
  ASSERT_EQ(get_be32(&d[4]), d.size() - 8);
  EXPECT_EQ(get_be64(&d[8]), 0xau);
  EXPECT_EQ(d[8 + 12], 0x03);  // ALL_TG_PT, R_HOLDER
  EXPECT_EQ(d[8 + 13], WERO);
  const std::uint32_t tid_len = get_be32(&d[8 + 20]);
  EXPECT_EQ(tid_len % 4, 0u);
  EXPECT_EQ(d[8 + 24], 0x45);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(&d[8 + 28])), A);
  const std::size_t second = 8 + 24 + tid_len;
  EXPECT_EQ(get_be64(&d[second]), 0xbu);
  EXPECT_EQ(d[second + 12], 0x00);
  EXPECT_FALSE(pr.in(4));
}

TEST(PrStateMachine, AccessTable) {
  const auto read = PrAccess::read, write = PrAccess::write;
  auto s = [](std::uint8_t t, bool reg, bool holder) {
    return PrStanding{static_cast<PrType>(t), reg, holder};
  };
  // Non-registrants.
  EXPECT_FALSE(pr_conflicts(read, s(WE, false, false)));
  EXPECT_TRUE(pr_conflicts(write, s(WE, false, false)));
  EXPECT_TRUE(pr_conflicts(read, s(EA, false, false)));
  EXPECT_FALSE(pr_conflicts(read, s(WERO, false, false)));
  EXPECT_TRUE(pr_conflicts(write, s(WEAR, false, false)));
  EXPECT_TRUE(pr_conflicts(read, s(EARO, false, false)));
  EXPECT_TRUE(pr_conflicts(read, s(EAAR, false, false)));
  // Registrants that do not hold it.
  EXPECT_TRUE(pr_conflicts(write, s(WE, true, false)));
  EXPECT_TRUE(pr_conflicts(read, s(EA, true, false)));
  EXPECT_FALSE(pr_conflicts(write, s(WERO, true, false)));
  EXPECT_FALSE(pr_conflicts(read, s(EARO, true, false)));
  // The holder, and commands no reservation stops.
  EXPECT_FALSE(pr_conflicts(write, s(EA, true, true)));
  EXPECT_FALSE(pr_conflicts(PrAccess::unrestricted, s(EA, false, false)));
  std::array<std::uint8_t, 16> cdb{};
  cdb[0] = 0x28;
  EXPECT_EQ(pr_access_of(cdb), read);
  cdb[0] = 0x2a;
  EXPECT_EQ(pr_access_of(cdb), write);
  cdb[0] = 0x12;
  EXPECT_EQ(pr_access_of(cdb), PrAccess::unrestricted);
  cdb[0] = 0x9e;
  cdb[1] = 0x10;
  EXPECT_EQ(pr_access_of(cdb), PrAccess::unrestricted);
}

TEST(PrStateMachine, SerializeRoundTripAndCorruption) {
  PersistentReservations pr;
  run(pr, A, prout(0, 0, 0xa, 0, 0x01));
  run(pr, B, prout(0, 0, 0xffffffffffffffffull, 0, 0x05));
  run(pr, A, prout(1, 0xa, 0, EARO));
  std::string error;
  auto back = PersistentReservations::parse(pr.serialize(), error);
  ASSERT_TRUE(back) << error;
  EXPECT_EQ(back->serialize(), pr.serialize());
  EXPECT_EQ(back->generation(), pr.generation());
  EXPECT_TRUE(back->standing(A).holder);
  EXPECT_TRUE(back->registrations()[1].all_tg_pt);
  EXPECT_TRUE(back->aptpl());
  const std::string good = pr.serialize();
  for (const std::string& bad :
       {std::string("garbage\n"), good.substr(0, good.size() - 1), good.substr(0, 20),
        std::string("ringtgt-pr 1\ngeneration x\naptpl 1\nreservation 0 -\n"),
        std::string("ringtgt-pr 1\ngeneration 1\naptpl 1\nreservation 3 nobody\n"),
        std::string("ringtgt-pr 2\n")}) {
    EXPECT_FALSE(PersistentReservations::parse(bad, error)) << bad;
    EXPECT_FALSE(error.empty());
  }
}

// --- unit attention queue ---

TEST(UnitAttentionQueue, PrecedenceDedupAndLimit) {
  UnitAttentions ua;
  EXPECT_TRUE(ua.first_contact(A, false));
  EXPECT_FALSE(ua.first_contact(A, true));
  EXPECT_FALSE(ua.pending(A));
  ua.post(A, 0x2a, 0x03);
  ua.post(A, 0x2a, 0x05);
  ua.post(A, 0x2a, 0x03);  // already pending
  ua.post_all(0x29, 0x03);
  SenseCode c{};
  ASSERT_TRUE(ua.pop(A, c));
  EXPECT_EQ(c.key, 0x06);
  EXPECT_EQ(c.asc, 0x29);  // resets first
  ASSERT_TRUE(ua.pop(A, c));
  EXPECT_EQ(c.ascq, 0x03);
  ASSERT_TRUE(ua.pop(A, c));
  EXPECT_EQ(c.ascq, 0x05);
  EXPECT_FALSE(ua.pop(A, c));
  for (std::uint8_t i = 0; i < 20; ++i) ua.post(A, 0x3f, i);
  ua.post(A, 0x29, 0x00);  // crowds out the newest other one
  int n = 0;
  ASSERT_TRUE(ua.pop(A, c));
  EXPECT_EQ(c.asc, 0x29);
  ++n;
  while (ua.pop(A, c)) ++n;
  EXPECT_EQ(n, static_cast<int>(UnitAttentions::max_pending));
  ua.forget(A);
  EXPECT_TRUE(ua.first_contact(A, true));
  ASSERT_TRUE(ua.pop(A, c));
  EXPECT_EQ(c.asc, 0x29);
  EXPECT_EQ(c.ascq, 0x00);
}

TEST(UnitAttentionQueue, PortNameFromNexus) {
  Nexus n{"iqn.x", "t", 0x023d00000001ull << 16 | 7, {}};
  EXPECT_EQ(initiator_port_name(n), "iqn.x,i,0x023d00000001");
}

TEST(UnitAttentionQueue, PortNameBackToItsParts) {
  Nexus n{"iqn.2025-01.com.example:node-b", "t", 0x80123456789aull << 16 | 3, {}};
  auto p = parse_initiator_port_name(initiator_port_name(n));
  ASSERT_TRUE(p);
  EXPECT_EQ(p->initiator_name, "iqn.2025-01.com.example:node-b");
  EXPECT_EQ(p->isid, 0x80123456789aull);
  for (const char* bad : {"", "iqn.x", ",i,0x000000000001", "iqn.x,i,0x1", "iqn.x,i,0x00000000000g",
                          "iqn.x,i,0x0000000000001", "iqn.x,t,0x000000000001"}) {
    EXPECT_FALSE(parse_initiator_port_name(bad)) << bad;
  }
}

// --- through a LogicalUnit ---

class Lu {
 public:
  explicit Lu(std::string state_path = {}, bool power_on = true) {
    auto backend = std::make_unique<storage::MemoryBackend>(512 * 64);
    LunParams params;
    params.spc2_reservations = true;
    params.power_on_unit_attention = power_on;
    params.pr_state_path = std::move(state_path);
    params.device_name = "test,lun,0";
    lu = std::make_unique<LogicalUnit>(0, params, std::move(backend));
  }

  Task& as(const Nexus& n, const Bytes& cdb, const Bytes* out = nullptr) {
    return run_task(
        [&](Task& t) {
          t.nexus = &n;
          lu->execute(t);
        },
        task, owner, buffer, cdb, 512, out);
  }
  // The first command of a new nexus: POWER ON OCCURRED, once.
  void login(const Nexus& n) {
    Task& t = as(n, tur);
    ASSERT_EQ(t.status, Status::check_condition);
    EXPECT_EQ(t.sense[2] & 0x0f, 0x06);
    EXPECT_EQ(t.sense[12], 0x29);
    EXPECT_EQ(t.sense[13], 0x00);
    EXPECT_EQ(as(n, tur).status, Status::good);
  }
  Status out(const Nexus& n, std::uint8_t sa, std::uint64_t key, std::uint64_t sark,
             std::uint8_t type = 0, std::uint8_t flags = 0) {
    Out o = prout(sa, key, sark, type, flags);
    Bytes cdb(o.cdb, o.cdb + 10);
    return as(n, cdb, &o.params).status;
  }
  Bytes in(const Nexus& n, std::uint8_t sa, std::uint16_t alloc = 512) {
    Bytes cdb{0x5e, sa, 0, 0, 0, 0, 0, 0, 0, 0};
    put_be16(&cdb[7], alloc);
    Task& t = as(n, cdb);
    EXPECT_EQ(t.status, Status::good);
    return Bytes(buffer.begin(), buffer.begin() + t.data_in_length);
  }

  const Bytes tur{0, 0, 0, 0, 0, 0};
  std::unique_ptr<LogicalUnit> lu;
  CountingOwner owner;
  Task task;
  Bytes buffer;
};

void expect_ua(const Task& t, std::uint8_t asc, std::uint8_t ascq) {
  ASSERT_EQ(t.status, Status::check_condition);
  EXPECT_EQ(t.sense[2] & 0x0f, 0x06);
  EXPECT_EQ(t.sense[12], asc);
  EXPECT_EQ(t.sense[13], ascq);
}

const Bytes read10 = cdb10(0x28, 0, 0, 1);
const Bytes inquiry{0x12, 0, 0, 0, 0xff, 0};

TEST(LuUnitAttention, PowerOnForEachNewNexusAndRequestSenseClearsIt) {
  Lu l;
  Nexus a{"iqn.a", "t", 1ull << 16 | 1, {}}, b{"iqn.b", "t", 2ull << 16 | 2, {}};
  // INQUIRY passes and leaves it pending.
  EXPECT_EQ(l.as(a, inquiry).status, Status::good);
  expect_ua(l.as(a, read10), 0x29, 0x00);
  EXPECT_EQ(l.as(a, read10).status, Status::good);
  // REQUEST SENSE returns it as data (GOOD) and clears it.
  Task& rs = l.as(b, Bytes{0x03, 0, 0, 0, 18, 0});
  ASSERT_EQ(rs.status, Status::good);
  EXPECT_EQ(l.buffer[2] & 0x0f, 0x06);
  EXPECT_EQ(l.buffer[12], 0x29);
  EXPECT_EQ(l.as(b, read10).status, Status::good);
  // A lost nexus's port comes back as a new nexus: told again.
  l.lu->nexus_lost(b);
  Nexus b_again{"iqn.b", "t", 2ull << 16 | 9, {}};
  l.login(b_again);
  // Off: nothing for a new nexus.
  Lu quiet({}, false);
  EXPECT_EQ(quiet.as(a, read10).status, Status::good);
}

TEST(LuUnitAttention, PostedToAllButOneAndResetQueuesBehind) {
  Lu l;
  Nexus a{"iqn.a", "t", 1ull << 16 | 1, {}}, b{"iqn.b", "t", 2ull << 16 | 2, {}};
  l.login(a);
  l.login(b);
  l.lu->post_unit_attention(0x2a, 0x09, &a);  // CAPACITY DATA HAS CHANGED, caused by a
  EXPECT_EQ(l.as(a, read10).status, Status::good);
  l.lu->post_unit_attention(0x2a, 0x01);
  l.lu->reset();
  // b: the reset first, then the older ones in order.
  expect_ua(l.as(b, read10), 0x29, 0x03);
  expect_ua(l.as(b, read10), 0x2a, 0x09);
  expect_ua(l.as(b, read10), 0x2a, 0x01);
  EXPECT_EQ(l.as(b, read10).status, Status::good);
  expect_ua(l.as(a, read10), 0x29, 0x03);
  expect_ua(l.as(a, read10), 0x2a, 0x01);
  EXPECT_EQ(l.as(a, read10).status, Status::good);
}

TEST(LuPersistentReservations, AccessAcrossNexusesAndUnitAttentions) {
  Lu l;
  Nexus a{"iqn.a", "t", 1ull << 16 | 1, {}}, b{"iqn.b", "t", 2ull << 16 | 2, {}},
      c{"iqn.c", "t", 3ull << 16 | 3, {}};
  for (const Nexus* n : {&a, &b, &c}) l.login(*n);
  EXPECT_EQ(l.out(a, 0, 0, 0xa), Status::good);
  EXPECT_EQ(l.out(b, 0, 0, 0xb), Status::good);
  EXPECT_EQ(l.out(a, 1, 0xa, 0, EARO), Status::good);
  const Bytes write10 = cdb10(0x2a, 0, 0, 1);
  const Bytes block(512, 0x5a);
  EXPECT_EQ(l.as(a, write10, &block).status, Status::good);
  EXPECT_EQ(l.as(b, write10, &block).status, Status::good);  // registrant
  EXPECT_EQ(l.as(c, read10).status, Status::reservation_conflict);
  EXPECT_EQ(l.as(c, write10, &block).status, Status::reservation_conflict);
  EXPECT_EQ(l.as(c, inquiry).status, Status::good);
  EXPECT_EQ(l.as(c, l.tur).status, Status::good);
  // READ KEYS, READ RESERVATION from anyone.
  Bytes keys = l.in(c, 0);
  ASSERT_EQ(keys.size(), 24u);
  EXPECT_EQ(get_be32(&keys[0]), 2u);
  EXPECT_EQ(get_be64(&keys[8]), 0xau);
  EXPECT_EQ(get_be64(&keys[16]), 0xbu);
  Bytes truncated = l.in(c, 0, 12);
  EXPECT_EQ(truncated.size(), 12u);
  EXPECT_EQ(get_be32(&truncated[4]), 16u);
  Bytes res = l.in(c, 1);
  ASSERT_EQ(res.size(), 24u);
  EXPECT_EQ(get_be64(&res[8]), 0xau);
  EXPECT_EQ(res[21], EARO);
  // SPC-2 RESERVE: conflict for c, GOOD without effect for a registrant.
  EXPECT_EQ(l.as(c, Bytes{0x16, 0, 0, 0, 0, 0}).status, Status::reservation_conflict);
  EXPECT_EQ(l.as(b, Bytes{0x16, 0, 0, 0, 0, 0}).status, Status::good);
  EXPECT_EQ(l.as(c, l.tur).status, Status::good);  // b's RESERVE reserved nothing
  // b preempts a: a hears REGISTRATIONS PREEMPTED, then conflicts.
  EXPECT_EQ(l.out(b, 4, 0xb, 0xa, WE), Status::good);
  expect_ua(l.as(a, read10), 0x2a, 0x05);
  EXPECT_EQ(l.as(a, read10).status, Status::good);  // WE: reads pass
  EXPECT_EQ(l.as(a, write10, &block).status, Status::reservation_conflict);
  // CLEAR by b: c was never registered and hears nothing; a neither (gone).
  EXPECT_EQ(l.out(b, 3, 0xb, 0), Status::good);
  EXPECT_EQ(l.as(a, write10, &block).status, Status::good);
  EXPECT_EQ(l.as(c, write10, &block).status, Status::good);
  // PR OUT with the wrong key, and unknown service actions.
  EXPECT_EQ(l.out(c, 1, 0x1, 0, WE), Status::reservation_conflict);
  Task& sa = l.as(c, Bytes{0x5e, 0x09, 0, 0, 0, 0, 0, 0, 0x10, 0});
  ASSERT_EQ(sa.status, Status::check_condition);
  EXPECT_EQ(sa.sense[12], 0x24);
  // A PR OUT whose Data-Out is shorter than its parameter list length.
  Bytes short_cdb{0x5f, 0, 0, 0, 0, 0, 0, 0, 24, 0};
  Bytes short_data(10, 0);
  Task& sh = l.as(c, short_cdb, &short_data);
  ASSERT_EQ(sh.status, Status::check_condition);
  EXPECT_EQ(sh.sense[12], 0x1a);
}

TEST(LuPersistentReservations, Spc2ReservationBlocksPersistentOnes) {
  Lu l;
  Nexus a{"iqn.a", "t", 1ull << 16 | 1, {}}, b{"iqn.b", "t", 2ull << 16 | 2, {}};
  l.login(a);
  l.login(b);
  EXPECT_EQ(l.as(a, Bytes{0x16, 0, 0, 0, 0, 0}).status, Status::good);
  EXPECT_EQ(l.out(b, 0, 0, 0xb), Status::reservation_conflict);
  EXPECT_EQ(l.as(a, Bytes{0x17, 0, 0, 0, 0, 0}).status, Status::good);
  EXPECT_EQ(l.out(b, 0, 0, 0xb), Status::good);
  // Registrations alone: a (not registered) may not RESERVE(6).
  EXPECT_EQ(l.as(a, Bytes{0x16, 0, 0, 0, 0, 0}).status, Status::reservation_conflict);
}

TEST(LuPersistentReservations, ReportedBySupportedOperationCodes) {
  Lu l({}, false);
  Nexus a{"iqn.a", "t", 1ull << 16 | 1, {}};
  auto one = [&](std::uint8_t opcode, std::uint16_t sa) {
    Bytes cdb{0xa3, 0x0c, 0x02, opcode, 0, 0, 0, 0, 0x10, 0, 0, 0};
    put_be16(&cdb[4], sa);
    Task& t = l.as(a, cdb);
    EXPECT_EQ(t.status, Status::good);
    return l.buffer[1] & 0x07;
  };
  for (std::uint16_t sa = 0; sa <= 3; ++sa) EXPECT_EQ(one(0x5e, sa), 0x03) << sa;
  EXPECT_EQ(one(0x5e, 4), 0x01);
  for (std::uint16_t sa = 0; sa <= 7; ++sa) EXPECT_EQ(one(0x5f, sa), 0x03) << sa;
  EXPECT_EQ(one(0x5f, 8), 0x01);
}

// --- PREEMPT AND ABORT through a LogicalUnit's task set, with a stand-in transport ---

// The transport's side of the task set: what the LU asked it to abort, and
// whether each was still in the backend (then the abort waits for it to leave).
struct FakeTransport final : TaskOwner {
  std::vector<Task*> aborted;
  bool in_backend = true;
  int completions = 0;
  void task_complete(Task&) override { ++completions; }
  bool task_aborted(Task& t) override {
    aborted.push_back(&t);
    return in_backend;
  }
};

// A task of nexus n that arrived for l and is in its task set.
void arrive(Lu& l, Task& t, const Nexus& n, FakeTransport& transport) {
  t.nexus = &n;
  t.owner = &transport;
  l.lu->enter_task_set(t);
}

// Starts a PERSISTENT RESERVE OUT on l's task without requiring it to
// complete before execute returns. flags is the PR OUT flags byte; with
// in_set, the task is in l's task set first, as the transport puts it there.
Task& start_out(Lu& l, const Nexus& n, std::uint8_t sa, std::uint64_t key, std::uint64_t sark,
                std::uint8_t type, std::uint8_t flags = 0, bool in_set = false) {
  Out o = prout(sa, key, sark, type, flags);
  l.task = Task{};
  l.owner.completions = 0;
  std::copy(o.cdb, o.cdb + 10, l.task.cdb.begin());
  l.task.owner = &l.owner;
  l.task.nexus = &n;
  l.buffer = o.params;
  l.task.direction = DataDirection::to_device;
  l.task.buffer = l.buffer.data();
  l.task.buffer_len = static_cast<std::uint32_t>(l.buffer.size());
  if (in_set) l.lu->enter_task_set(l.task);
  l.lu->execute(l.task);
  return l.task;
}

TEST(LuPreemptAndAbort, CompletesOnlyOnceThePreemptedTasksLeftTheBackend) {
  Lu l({}, false);
  FakeTransport f;
  Nexus a{"iqn.a", "t", 1ull << 16 | 1, {}}, b{"iqn.b", "t", 2ull << 16 | 2, {}},
      c{"iqn.c", "t", 3ull << 16 | 3, {}};
  // b2: another session of b's initiator (another ISID), not preempted.
  Nexus b2{"iqn.b", "t", 4ull << 16 | 4, {}};
  EXPECT_EQ(l.out(a, 0, 0, 0xa), Status::good);
  EXPECT_EQ(l.out(b, 0, 0, 0xb), Status::good);
  EXPECT_EQ(l.out(c, 0, 0, 0xc), Status::good);
  EXPECT_EQ(l.out(b, 1, 0xb, 0, WE), Status::good);
  Task b_write, b_read, c_write, b2_write;
  arrive(l, b_write, b, f);
  arrive(l, b_read, b, f);
  arrive(l, c_write, c, f);
  arrive(l, b2_write, b2, f);
  // Plain PREEMPT of c's registration: no task is aborted.
  EXPECT_EQ(l.out(a, 4, 0xa, 0xc, WE), Status::good);
  EXPECT_TRUE(f.aborted.empty());
  // A failed PREEMPT AND ABORT (a key no one has) aborts nothing either.
  EXPECT_EQ(l.out(a, 5, 0xa, 0xc, WE), Status::reservation_conflict);
  EXPECT_TRUE(f.aborted.empty());

  Task& t = start_out(l, a, 5, 0xa, 0xb, WE);
  // Only the preempted nexus's tasks, each asked once.
  ASSERT_EQ(f.aborted.size(), 2u);
  EXPECT_NE(std::find(f.aborted.begin(), f.aborted.end(), &b_write), f.aborted.end());
  EXPECT_NE(std::find(f.aborted.begin(), f.aborted.end(), &b_read), f.aborted.end());
  EXPECT_TRUE(t.awaiting_aborts);
  // The reservation changed at once: b's next command is told and refused...
  const Bytes write10 = cdb10(0x2a, 0, 0, 1);
  const Bytes block(512, 0x5a);
  Task other;
  CountingOwner other_owner;
  Bytes other_buffer;
  auto as_b = [&](const Bytes& cdb, const Bytes* data) -> Task& {
    return run_task(
        [&](Task& x) {
          x.nexus = &b;
          l.lu->execute(x);
        },
        other, other_owner, other_buffer, cdb, 512, data);
  };
  expect_ua(as_b(write10, &block), 0x2a, 0x05);
  EXPECT_EQ(as_b(write10, &block).status, Status::reservation_conflict);
  // ...but GOOD for the PREEMPT AND ABORT only once both left the backend.
  EXPECT_EQ(l.owner.completions, 0);
  l.lu->leave_task_set(b_read);
  EXPECT_EQ(l.owner.completions, 0);
  l.lu->leave_task_set(c_write);  // not one it waits for
  EXPECT_EQ(l.owner.completions, 0);
  l.lu->leave_task_set(b_write);
  EXPECT_EQ(l.owner.completions, 1);
  EXPECT_EQ(t.status, Status::good);
  EXPECT_TRUE(l.lu->persistent_reservations().standing("iqn.a,i,0x000000000001").holder);
  EXPECT_EQ(f.completions, 0);  // the LU gives aborted tasks no status
  l.lu->leave_task_set(b2_write);
}

TEST(LuPreemptAndAbort, TasksNotInTheBackendAreNotWaitedFor) {
  Lu l({}, false);
  FakeTransport f;
  f.in_backend = false;  // e.g. WRITEs still waiting for their Data-Out
  Nexus a{"iqn.a", "t", 1ull << 16 | 1, {}}, b{"iqn.b", "t", 2ull << 16 | 2, {}};
  EXPECT_EQ(l.out(a, 0, 0, 0xa), Status::good);
  EXPECT_EQ(l.out(b, 0, 0, 0xb), Status::good);
  Task b_write;
  arrive(l, b_write, b, f);
  Task& t = start_out(l, a, 5, 0xa, 0xb, WE);
  ASSERT_EQ(f.aborted.size(), 1u);
  EXPECT_EQ(f.aborted[0], &b_write);
  EXPECT_EQ(l.owner.completions, 1);
  EXPECT_EQ(t.status, Status::good);
  l.lu->leave_task_set(b_write);
  EXPECT_EQ(l.owner.completions, 1);
}

TEST(LuPreemptAndAbort, SelfPreemptAbortsItsOwnNexusButNotItself) {
  Lu l({}, false);
  FakeTransport f;
  Nexus a{"iqn.a", "t", 1ull << 16 | 1, {}};
  EXPECT_EQ(l.out(a, 0, 0, 0xa), Status::good);
  EXPECT_EQ(l.out(a, 1, 0xa, 0, WE), Status::good);
  Task a_write;
  arrive(l, a_write, a, f);
  Task& t = start_out(l, a, 5, 0xa, 0xa, EA, 0, true);
  ASSERT_EQ(f.aborted.size(), 1u);
  EXPECT_EQ(f.aborted[0], &a_write);  // the PERSISTENT RESERVE OUT is spared
  EXPECT_EQ(l.owner.completions, 0);
  l.lu->leave_task_set(a_write);
  EXPECT_EQ(l.owner.completions, 1);
  EXPECT_EQ(t.status, Status::good);
  EXPECT_EQ(l.lu->persistent_reservations().type(), PrType::exclusive_access);
  l.lu->leave_task_set(t);
}

TEST(LuPreemptAndAbort, WithNoTaskInTheSetItCompletesAtOnce) {
  Lu l({}, false);
  Nexus a{"iqn.a", "t", 1ull << 16 | 1, {}}, b{"iqn.b", "t", 2ull << 16 | 2, {}};
  EXPECT_EQ(l.out(a, 0, 0, 0xa), Status::good);
  EXPECT_EQ(l.out(b, 0, 0, 0xb), Status::good);
  EXPECT_EQ(l.out(a, 5, 0xa, 0xb, WE), Status::good);  // run_task checks the one completion
  EXPECT_FALSE(l.lu->persistent_reservations().registered("iqn.b,i,0x000000000002"));
}

// The task set as task management uses it: a filter picks the tasks, keep is
// spared, done comes once those in the backend left.
TEST(LuTaskSet, AbortTaskSetAsksTheOwnersOfTheTasksTheFilterPicks) {
  Lu l({}, false);
  FakeTransport f;
  Nexus a{"iqn.a", "t", 1ull << 16 | 1, {}}, b{"iqn.b", "t", 2ull << 16 | 2, {}};
  Task a1, a2, b1;
  arrive(l, a1, a, f);
  arrive(l, a2, a, f);
  arrive(l, b1, b, f);
  int done = 0;
  l.lu->abort_task_set([&](const Task& t) { return t.nexus == &a; }, &a2, [&] { ++done; });
  ASSERT_EQ(f.aborted.size(), 1u);
  EXPECT_EQ(f.aborted[0], &a1);
  EXPECT_EQ(done, 0);
  l.lu->leave_task_set(a1);
  EXPECT_EQ(done, 1);
  // Every nexus's: both left, one at a time; done once, after the last.
  f.aborted.clear();
  l.lu->abort_task_set([](const Task&) { return true; }, nullptr, [&] { ++done; });
  EXPECT_EQ(f.aborted.size(), 2u);
  l.lu->leave_task_set(b1);
  EXPECT_EQ(done, 1);
  l.lu->leave_task_set(a2);
  EXPECT_EQ(done, 2);
  // An empty set: done at once.
  l.lu->abort_task_set([](const Task&) { return true; }, nullptr, [&] { ++done; });
  EXPECT_EQ(done, 3);
}

std::string temp_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "ringtgt-pr-XXXXXX").string();
  char* d = mkdtemp(tmpl.data());
  EXPECT_NE(d, nullptr);
  return tmpl;
}

TEST(LuPersistentReservations, AptplSurvivesARebuildAndOffRemovesTheFile) {
  const std::string dir = temp_dir();
  const std::string path = dir + "/state/pr-0000000000000001.state";
  Nexus a{"iqn.a", "t", 1ull << 16 | 1, {}}, b{"iqn.b", "t", 2ull << 16 | 2, {}};
  {
    Lu l(path);
    l.login(a);
    EXPECT_EQ(l.out(a, 0, 0, 0xa), Status::good);  // APTPL off: no file
    EXPECT_FALSE(std::filesystem::exists(path));
    EXPECT_EQ(l.out(a, 0, 0xa, 0xaa, 0, 0x01), Status::good);  // APTPL on
    EXPECT_EQ(l.out(a, 1, 0xaa, 0, WE), Status::good);
    EXPECT_TRUE(std::filesystem::exists(path));
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  }
  {
    Lu l(path);  // as after a restart
    l.login(b);
    const Bytes block(512, 1);
    EXPECT_EQ(l.as(b, cdb10(0x2a, 0, 0, 1), &block).status, Status::reservation_conflict);
    const auto pr = l.lu->persistent_reservations();
    ASSERT_EQ(pr.registrations().size(), 1u);
    EXPECT_EQ(pr.registrations()[0].key, 0xaau);
    EXPECT_TRUE(pr.standing("iqn.a,i,0x000000000001").holder);
    EXPECT_TRUE(pr.aptpl());
    // REGISTER with APTPL off: the file goes. (A new session from a's port.)
    Nexus a2{"iqn.a", "t", 1ull << 16 | 5, {}};
    l.login(a2);
    EXPECT_EQ(l.out(a2, 0, 0xaa, 0xab), Status::good);
    EXPECT_FALSE(std::filesystem::exists(path));
  }
  {
    // A corrupt file: logged, and the LU starts without reservations.
    std::ofstream(path) << "ringtgt-pr 1\ngeneration zz\n";
    Lu l(path);
    EXPECT_TRUE(l.lu->persistent_reservations().registrations().empty());
  }
  std::filesystem::remove_all(dir);
}

TEST(LuPreemptAndAbort, NothingIsAbortedWhenTheAptplStateCannotBeStored) {
  const std::string dir = temp_dir();
  const std::string path = dir + "/state/pr.state";
  Lu l(path, false);
  FakeTransport f;
  Nexus a{"iqn.a", "t", 1ull << 16 | 1, {}}, b{"iqn.b", "t", 2ull << 16 | 2, {}};
  EXPECT_EQ(l.out(a, 0, 0, 0xa, 0, 0x01), Status::good);  // APTPL on
  EXPECT_EQ(l.out(b, 0, 0, 0xb, 0, 0x01), Status::good);
  Task b_write;
  arrive(l, b_write, b, f);
  // The state folder turns into a file: the next change cannot be stored.
  std::filesystem::remove_all(dir + "/state");
  std::ofstream(dir + "/state") << "in the way\n";
  Task& t = start_out(l, a, 5, 0xa, 0xb, WE);
  EXPECT_EQ(l.owner.completions, 1);
  EXPECT_TRUE(f.aborted.empty());
  expect_sense(t, 0x04, 0x44, 0x00);  // INTERNAL TARGET FAILURE
  EXPECT_TRUE(l.lu->persistent_reservations().registered("iqn.b,i,0x000000000002"));
  l.lu->leave_task_set(b_write);
  std::filesystem::remove_all(dir);
}

using ringtgt::testing::HomeEngine;

TEST(LuPersistentReservations, AptplIsStoredOffTheReactorAndAnsweredOnIt) {
  const std::string dir = temp_dir();
  const std::string path = dir + "/state/pr.state";
  Lu l(path, false);
  Nexus a{"iqn.a", "t", 1ull << 16 | 1, {}};
  HomeEngine home;
  start_out(l, a, 0, 0, 0xa, 0, 0x01);  // REGISTER with APTPL
  // The reactor's thread returned before the file was written and synced.
  EXPECT_EQ(l.owner.completions, 0);
  EXPECT_EQ(home.foreign.outstanding(), 1u);
  home.wait_and_drain();
  EXPECT_EQ(l.owner.completions, 1);
  EXPECT_EQ(l.task.status, Status::good);
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_TRUE(l.lu->persistent_reservations().aptpl());
  EXPECT_EQ(home.foreign.outstanding(), 0u);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ringtgt::scsi
