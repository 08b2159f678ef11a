// What a mirrored LUN survives, as the daemon logs it at start.
#include "redundancy.hpp"

#include <gtest/gtest.h>

namespace ringtgt::lun {
namespace {

config::Lun mirrored(std::uint32_t quorum, const std::string& primary_domain,
                     std::initializer_list<std::pair<const char*, const char*>> copies) {
  config::Lun l;
  l.path = "/tmp/p.img";
  l.ack_quorum = quorum;
  l.failure_domain = primary_domain;
  for (const auto& [name, domain] : copies) {
    config::LunCopy c;
    c.name = name;
    c.path = "/tmp/x";
    c.failure_domain = domain;
    l.copies.push_back(c);
  }
  return l;
}

TEST(Redundancy, CopiesApartSurviveWhatTheQuorumLeaves) {
  const Redundancy r =
      redundancy_of(mirrored(2, "disk:nvme0", {{"disk2", "disk:nvme1"}, {"disk3", "disk:nvme2"}}));
  EXPECT_FALSE(r.warn);
  EXPECT_EQ(r.text, "survives the loss of 1 copy");
  EXPECT_EQ(redundancy_of(mirrored(1, "a", {{"b", "b"}, {"c", "c"}})).text,
            "survives the loss of 2 copies");
}

TEST(Redundancy, EveryCopyInOneDomainSurvivesNothing) {
  const Redundancy r = redundancy_of(mirrored(1, "disk:nvme0", {{"lun2", "disk:nvme0"}}));
  EXPECT_TRUE(r.warn);
  EXPECT_EQ(r.text, "survives nothing: every copy is on disk:nvme0");
}

TEST(Redundancy, ASharedDomainIsNamed) {
  const Redundancy r =
      redundancy_of(mirrored(2, "disk:nvme0", {{"disk2", "disk:nvme0"}, {"disk3", "disk:nvme1"}}));
  EXPECT_TRUE(r.warn);
  EXPECT_EQ(r.text,
            "copies primary, disk2 share failure domain disk:nvme0; survives the loss of 1 copy, "
            "but not of disk:nvme0 (2 copies there, ack_quorum 2)");
}

TEST(Redundancy, AQuorumOfAllSurvivesNothingWithoutRefusingWrites) {
  const Redundancy r = redundancy_of(mirrored(0, "a", {{"b", "b"}}));
  EXPECT_FALSE(r.warn);
  EXPECT_EQ(r.text,
            "survives nothing without refusing writes: ack_quorum 2 needs every one of its 2 "
            "copies");
}

TEST(Redundancy, CopiesWithoutADomainCountAsApart) {
  const Redundancy r = redundancy_of(mirrored(1, "", {{"b", ""}}));
  EXPECT_FALSE(r.warn);
  EXPECT_EQ(r.text, "survives the loss of 1 copy (copies without failure_domain counted as apart)");
}

}  // namespace
}  // namespace ringtgt::lun
