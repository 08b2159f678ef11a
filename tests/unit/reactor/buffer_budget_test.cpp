// The process-wide buffer memory budget (limits.max_buffer_memory).
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "ringtgt/reactor/buffer_pool.hpp"

namespace ringtgt::reactor {
namespace {

// Restores "no budget" for the other tests in this binary.
struct BudgetGuard {
  BudgetGuard(std::size_t bytes, unsigned pools) { BufferPool::set_memory_budget(bytes, pools); }
  ~BudgetGuard() { BufferPool::set_memory_budget(std::numeric_limits<std::size_t>::max(), 1); }
};

TEST(BufferBudget, AcquireFailsPastTheBudgetAndWorksOnceMemoryIsBack) {
  const std::size_t base = BufferPool::memory_held();
  BudgetGuard guard(base + (1u << 20), 1);  // room for 1 MiB more
  BufferPool pool;
  std::vector<std::uint8_t*> held;
  for (int i = 0; i < 4; ++i) {
    std::uint8_t* p = pool.acquire(256 * 1024);
    ASSERT_NE(p, nullptr) << i;
    held.push_back(p);
  }
  EXPECT_EQ(BufferPool::memory_held(), base + (1u << 20));
  EXPECT_EQ(pool.acquire(4096), nullptr);  // over the budget
  EXPECT_EQ(BufferPool::memory_held(), base + (1u << 20));
  pool.release(held.back(), 256 * 1024);
  held.pop_back();
  // Kept for reuse (at most budget / 2 per pool): the same class comes back.
  std::uint8_t* again = pool.acquire(256 * 1024);
  ASSERT_NE(again, nullptr);
  held.push_back(again);
  for (auto* p : held) pool.release(p, 256 * 1024);
  EXPECT_LE(BufferPool::memory_held(), base + (1u << 20) / 2);
}

TEST(BufferBudget, KeptBuffersOfOtherSizesAreGivenBackToMakeRoom) {
  const std::size_t base = BufferPool::memory_held();
  BudgetGuard guard(base + (2u << 20), 1);
  BufferPool pool;
  // 1 MiB kept in 64 KiB buffers (exactly the per-pool reuse cap)...
  std::vector<std::uint8_t*> small;
  for (int i = 0; i < 16; ++i) small.push_back(pool.acquire(65536));
  for (auto* p : small) {
    ASSERT_NE(p, nullptr);
    pool.release(p, 65536);
  }
  EXPECT_EQ(pool.bytes_retained(), 1u << 20);
  // ...do not stop a 2 MiB buffer: they are freed first.
  std::uint8_t* big = pool.acquire(2u << 20);
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(pool.bytes_retained(), 0u);
  EXPECT_EQ(BufferPool::memory_held(), base + (2u << 20));
  pool.release(big, 2u << 20);  // above the reuse cap: back to the heap
  EXPECT_EQ(BufferPool::memory_held(), base);
}

}  // namespace
}  // namespace ringtgt::reactor
