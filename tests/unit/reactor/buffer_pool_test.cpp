// Per-thread I/O buffer pool: alignment, size classes, reuse, retain limit.
#include "ringtgt/reactor/buffer_pool.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <thread>

namespace ringtgt::reactor {
namespace {

bool aligned(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % BufferPool::kAlignment == 0;
}

TEST(BufferPool, BuffersAre4096Aligned) {
  BufferPool pool;
  for (std::size_t size : {std::size_t{1}, std::size_t{512}, std::size_t{4096}, std::size_t{5000},
                           std::size_t{65536}, std::size_t{1} << 20}) {
    std::uint8_t* p = pool.acquire(size);
    ASSERT_NE(p, nullptr) << size;
    EXPECT_TRUE(aligned(p)) << size;
    std::memset(p, 0xa5, size);  // the whole requested size is usable
    pool.release(p, size);
  }
}

TEST(BufferPool, ReleasedBufferIsReusedBySameClass) {
  BufferPool pool;
  std::uint8_t* a = pool.acquire(8192);
  ASSERT_NE(a, nullptr);
  pool.release(a, 8192);
  EXPECT_EQ(pool.bytes_retained(), 8192u);
  // 5000 and 8192 share the 8 KiB class.
  std::uint8_t* b = pool.acquire(5000);
  EXPECT_EQ(b, a);
  EXPECT_EQ(pool.bytes_retained(), 0u);
  // A different class does not take it.
  pool.release(b, 5000);
  std::uint8_t* c = pool.acquire(4096);
  EXPECT_NE(c, a);
  std::uint8_t* d = pool.acquire(16384);
  EXPECT_NE(d, a);
  std::uint8_t* e = pool.acquire(8192);
  EXPECT_EQ(e, a);
  pool.release(c, 4096);
  pool.release(d, 16384);
  pool.release(e, 8192);
}

TEST(BufferPool, LastReleasedIsFirstReused) {
  BufferPool pool;
  std::uint8_t* a = pool.acquire(4096);
  std::uint8_t* b = pool.acquire(4096);
  ASSERT_NE(a, b);
  pool.release(a, 4096);
  pool.release(b, 4096);
  EXPECT_EQ(pool.bytes_retained(), 8192u);
  std::uint8_t* x = pool.acquire(100);
  std::uint8_t* y = pool.acquire(4096);
  EXPECT_EQ(x, b);
  EXPECT_EQ(y, a);
  pool.release(x, 100);
  pool.release(y, 4096);
}

TEST(BufferPool, LargestSizeWorksAndLargerIsRefused) {
  BufferPool pool;
  std::uint8_t* big = pool.acquire(BufferPool::kMaxSize);
  ASSERT_NE(big, nullptr);
  EXPECT_TRUE(aligned(big));
  big[BufferPool::kMaxSize - 1] = 1;
  pool.release(big, BufferPool::kMaxSize);
  EXPECT_EQ(pool.acquire(BufferPool::kMaxSize + 1), nullptr);
  EXPECT_EQ(pool.acquire(BufferPool::kMaxSize), big);
  pool.release(big, BufferPool::kMaxSize);
}

TEST(BufferPool, ReleaseOfNullIsIgnored) {
  BufferPool pool;
  pool.release(nullptr, 4096);
  EXPECT_EQ(pool.bytes_retained(), 0u);
}

TEST(BufferPool, RetainLimitIsRespected) {
  BufferPool pool;
  pool.set_retain_limit(3 * 4096);
  std::uint8_t* b[5];
  for (auto& p : b) {
    p = pool.acquire(4096);
    ASSERT_NE(p, nullptr);
  }
  for (auto* p : b) pool.release(p, 4096);
  EXPECT_EQ(pool.bytes_retained(), 3u * 4096);
  // An 8 KiB buffer would exceed the limit too.
  std::uint8_t* big = pool.acquire(8192);
  pool.release(big, 8192);
  EXPECT_LE(pool.bytes_retained(), 3u * 4096);
  // The retained ones are handed out again.
  for (auto& p : b) p = nullptr;
  for (int i = 0; i < 3; ++i) b[i] = pool.acquire(4096);
  EXPECT_EQ(pool.bytes_retained(), 0u);
  pool.set_retain_limit(1u << 20);
  for (int i = 0; i < 3; ++i) pool.release(b[i], 4096);
}

TEST(BufferPool, ZeroRetainLimitKeepsNothing) {
  BufferPool pool;
  pool.set_retain_limit(0);
  std::uint8_t* p = pool.acquire(4096);
  pool.release(p, 4096);
  EXPECT_EQ(pool.bytes_retained(), 0u);
}

TEST(BufferPool, LocalIsOnePoolPerThread) {
  BufferPool* mine = &BufferPool::local();
  EXPECT_EQ(mine, &BufferPool::local());
  BufferPool* other = nullptr;
  std::thread([&] { other = &BufferPool::local(); }).join();
  EXPECT_NE(other, mine);
}

}  // namespace
}  // namespace ringtgt::reactor
