// Log-linear latency histogram: fixed storage, no allocation per sample.
//
// Values below 2^kSubBits land in exact buckets; above that, every power of two
// is split into 2^kSubBits equal sub-buckets, so a bucket's width is at most
// 1/32 (about 3 %) of its value. Percentiles report the bucket midpoint,
// clamped to the observed minimum and maximum.
#pragma once

#include <array>
#include <cstdint>
#include <limits>

namespace ringtgt::bench {

class Histogram {
 public:
  static constexpr int kSubBits = 5;
  static constexpr int kSub = 1 << kSubBits;
  static constexpr int kBuckets = (64 - kSubBits + 1) * kSub;

  void record(std::uint64_t v) {
    counts_[index(v)]++;
    n_++;
    sum_ += v;
    if (v < min_) min_ = v;
    if (v > max_) max_ = v;
  }

  void merge(const Histogram& o) {
    for (int i = 0; i < kBuckets; i++) counts_[i] += o.counts_[i];
    n_ += o.n_;
    sum_ += o.sum_;
    if (o.min_ < min_) min_ = o.min_;
    if (o.max_ > max_) max_ = o.max_;
  }

  std::uint64_t count() const { return n_; }
  std::uint64_t min() const { return n_ ? min_ : 0; }
  std::uint64_t max() const { return max_; }
  double mean() const { return n_ ? static_cast<double>(sum_) / static_cast<double>(n_) : 0.0; }

  // p in [0, 1]; the smallest value v such that at least p of the samples are <= v
  // (to bucket precision).
  double percentile(double p) const {
    if (n_ == 0) return 0.0;
    std::uint64_t rank = static_cast<std::uint64_t>(p * static_cast<double>(n_) + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > n_) rank = n_;
    std::uint64_t seen = 0;
    for (int i = 0; i < kBuckets; i++) {
      seen += counts_[i];
      if (seen >= rank) {
        double lo = static_cast<double>(lower(i));
        double hi = i + 1 < kBuckets ? static_cast<double>(lower(i + 1) - 1) : lo;
        double mid = (lo + hi) / 2.0;
        if (mid < static_cast<double>(min_)) mid = static_cast<double>(min_);
        if (mid > static_cast<double>(max_)) mid = static_cast<double>(max_);
        return mid;
      }
    }
    return static_cast<double>(max_);
  }

  static int index(std::uint64_t v) {
    if (v < static_cast<std::uint64_t>(kSub)) return static_cast<int>(v);
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - kSubBits;
    int sub = static_cast<int>((v >> shift) & (kSub - 1));
    return ((shift + 1) << kSubBits) + sub;
  }

  static std::uint64_t lower(int idx) {
    int group = idx >> kSubBits;
    std::uint64_t sub = static_cast<std::uint64_t>(idx & (kSub - 1));
    if (group == 0) return sub;
    return (static_cast<std::uint64_t>(kSub) + sub) << (group - 1);
  }

 private:
  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t n_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t min_ = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t max_ = 0;
};

}  // namespace ringtgt::bench
