// The dirty-region bitmap of a mirrored LUN's copies.
#include "dirty_bitmap.hpp"

#include <gtest/gtest.h>

namespace ringtgt::storage {
namespace {

constexpr std::uint64_t kRegion = 4096;

TEST(DirtyBitmap, MarkingCoversEveryRegionARangeTouches) {
  DirtyBitmap b(1000 * kRegion, kRegion);
  EXPECT_EQ(b.regions(), 1000u);
  b.mark(kRegion - 1, 2);  // regions 0 and 1
  EXPECT_TRUE(b.dirty(0));
  EXPECT_TRUE(b.dirty(1));
  EXPECT_FALSE(b.dirty(2));
  b.mark(60 * kRegion, 10 * kRegion);  // 60..69, across a word border
  EXPECT_EQ(b.dirty_regions(), 12u);
  b.mark(65 * kRegion, 1);  // already dirty: not counted twice
  EXPECT_EQ(b.dirty_regions(), 12u);
  EXPECT_EQ(b.next_dirty(2), 60u);
  EXPECT_EQ(b.next_dirty(70), b.regions());
  EXPECT_TRUE(b.clear(60));
  EXPECT_FALSE(b.clear(60));
  EXPECT_EQ(b.next_dirty(2), 61u);
  EXPECT_EQ(b.dirty_bytes(), 11 * kRegion);
  b.mark(0, 0);
  EXPECT_EQ(b.dirty_regions(), 11u);
}

TEST(DirtyBitmap, TheLastRegionCountsOnlyTheBytesInsideTheLun) {
  DirtyBitmap b(10 * kRegion + 512, kRegion);
  EXPECT_EQ(b.regions(), 11u);
  b.mark(10 * kRegion, 512);
  EXPECT_EQ(b.dirty_bytes(), 512u);
  b.mark_all();
  EXPECT_EQ(b.dirty_regions(), 11u);
  EXPECT_EQ(b.dirty_bytes(), 10 * kRegion + 512);
  b.mark(11 * kRegion, kRegion);  // past the end: nothing
  EXPECT_EQ(b.dirty_regions(), 11u);
}

TEST(DirtyBitmap, WordsRoundTrip) {
  DirtyBitmap a(130 * kRegion, kRegion);
  a.mark(3 * kRegion, 1);
  a.mark(64 * kRegion, 1);
  a.mark(129 * kRegion, 1);
  DirtyBitmap b(130 * kRegion, kRegion);
  b.load(a.words());
  EXPECT_EQ(b.dirty_regions(), 3u);
  EXPECT_TRUE(b.dirty(129));
  EXPECT_EQ(b.next_dirty(4), 64u);
  // Bits past the last region are dropped, so the count stays right.
  std::vector<std::uint64_t> w(3, ~std::uint64_t{0});
  b.load(w);
  EXPECT_EQ(b.dirty_regions(), 130u);
  EXPECT_THROW(b.load(std::vector<std::uint64_t>(2)), std::invalid_argument);
}

}  // namespace
}  // namespace ringtgt::storage
