#include "dirty_bitmap.hpp"

#include <bit>
#include <stdexcept>

namespace ringtgt::storage {

DirtyBitmap::DirtyBitmap(std::uint64_t size_bytes, std::uint64_t region_size)
    : size_bytes_(size_bytes),
      region_size_(region_size),
      region_shift_(static_cast<unsigned>(std::countr_zero(region_size))),
      regions_((size_bytes + region_size - 1) / region_size),
      word_count_(static_cast<std::size_t>((regions_ + 63) / 64)),
      words_(std::make_unique<std::atomic<std::uint64_t>[]>(word_count_)) {
  if (region_size == 0 || !std::has_single_bit(region_size))
    throw std::invalid_argument("the resync region size must be a power of two");
  for (std::size_t i = 0; i < word_count_; ++i) words_[i].store(0, std::memory_order_relaxed);
}

void DirtyBitmap::mark_regions(const std::vector<std::uint64_t>& words, std::uint64_t region_size) {
  for (std::size_t w = 0; w < words.size(); ++w) {
    for (unsigned b = 0; words[w] != 0 && b < 64; ++b) {
      if ((words[w] >> b) & 1) mark((w * 64 + b) * region_size, region_size);
    }
  }
}

void DirtyBitmap::mark(std::uint64_t offset, std::uint64_t len) {
  if (len == 0 || offset >= size_bytes_) return;
  const std::uint64_t first = offset >> region_shift_;
  const std::uint64_t last = std::min(offset + len - 1, size_bytes_ - 1) >> region_shift_;
  for (std::uint64_t r = first; r <= last;) {
    // Whole words at a time: a large unmap marks thousands of regions.
    const std::uint64_t word = r / 64;
    const unsigned bit = static_cast<unsigned>(r % 64);
    const std::uint64_t n = std::min<std::uint64_t>(64 - bit, last - r + 1);
    const std::uint64_t mask = (n == 64 ? ~std::uint64_t{0} : ((std::uint64_t{1} << n) - 1)) << bit;
    // A region already dirty costs a load, not a read-modify-write.
    if ((words_[word].load(std::memory_order_relaxed) & mask) != mask) {
      const std::uint64_t before = words_[word].fetch_or(mask, std::memory_order_acq_rel);
      dirty_.fetch_add(static_cast<std::uint64_t>(std::popcount(mask & ~before)),
                       std::memory_order_acq_rel);
    }
    r += n;
  }
}

void DirtyBitmap::mark_all() {
  mark(0, size_bytes_);
}

bool DirtyBitmap::clear(std::uint64_t r) {
  const std::uint64_t bit = std::uint64_t{1} << (r % 64);
  const std::uint64_t before = words_[r / 64].fetch_and(~bit, std::memory_order_acq_rel);
  if ((before & bit) == 0) return false;
  dirty_.fetch_sub(1, std::memory_order_acq_rel);
  return true;
}

bool DirtyBitmap::dirty(std::uint64_t r) const {
  return (words_[r / 64].load(std::memory_order_acquire) >> (r % 64)) & 1;
}

std::uint64_t DirtyBitmap::next_dirty(std::uint64_t from) const {
  for (std::uint64_t r = from; r < regions_;) {
    const std::uint64_t w = words_[r / 64].load(std::memory_order_acquire) >> (r % 64);
    if (w != 0) return std::min(regions_, r + static_cast<std::uint64_t>(std::countr_zero(w)));
    r = (r / 64 + 1) * 64;
  }
  return regions_;
}

std::uint64_t DirtyBitmap::region_bytes(std::uint64_t r) const {
  const std::uint64_t start = r << region_shift_;
  return std::min(region_size_, size_bytes_ - start);
}

std::uint64_t DirtyBitmap::dirty_bytes() const {
  std::uint64_t n = dirty_regions();
  if (n == 0) return 0;
  std::uint64_t bytes = n * region_size_;
  if (dirty(regions_ - 1)) bytes -= region_size_ - region_bytes(regions_ - 1);
  return bytes;
}

std::vector<std::uint64_t> DirtyBitmap::words() const {
  std::vector<std::uint64_t> out(word_count_);
  for (std::size_t i = 0; i < word_count_; ++i) out[i] = words_[i].load(std::memory_order_acquire);
  return out;
}

void DirtyBitmap::load(const std::vector<std::uint64_t>& words) {
  if (words.size() != word_count_)
    throw std::invalid_argument("the dirty-region bitmap has " + std::to_string(words.size()) +
                                " words, not " + std::to_string(word_count_));
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < word_count_; ++i) {
    std::uint64_t w = words[i];
    // Bits past the last region mean nothing; keep them clear so counts stay right.
    if (i + 1 == word_count_ && regions_ % 64 != 0) w &= (std::uint64_t{1} << (regions_ % 64)) - 1;
    words_[i].store(w, std::memory_order_release);
    n += static_cast<std::uint64_t>(std::popcount(w));
  }
  dirty_.store(n, std::memory_order_release);
}

}  // namespace ringtgt::storage
