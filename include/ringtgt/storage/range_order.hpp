// Keeps writes whose byte ranges overlap in one order on every copy of a
// mirrored LUN: a write may start only when no earlier write it overlaps is
// still in flight on any copy. Otherwise copy A could apply W1 then W2 and
// copy B W2 then W1, and the copies would differ with nobody knowing.
// Shared by every reactor of the LUN (one mutex, held for a list scan).
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "ringtgt/reactor/io_engine.hpp"

namespace ringtgt::storage {

class RangeOrder {
 public:
  // One write's claim, owned by the write (no allocation here).
  struct Claim {
    std::uint64_t offset = 0;
    std::uint64_t len = 0;
    // Completed with 0 on home's thread when a held claim may start.
    reactor::IoOp* resume = nullptr;
    reactor::IoEngine* home = nullptr;
  };

  // Whether c may start now (it is then in flight). Otherwise c is queued
  // behind the claims it overlaps, and c.resume runs once they are all
  // released: on c.home's thread through its foreign completions when it has
  // a loop, else at once on the releasing thread (unit tests' engines).
  // Called on c.home's thread.
  bool admit(Claim& c);
  // Admits c only if it may start now; otherwise leaves it out (not queued).
  bool try_admit(Claim& c);
  // c (in flight) is done on every copy: starts the queued claims that no
  // longer overlap anything before them.
  void release(Claim& c);

  std::size_t in_flight() const;
  std::size_t waiting() const;

 private:
  static bool overlaps(const Claim& a, const Claim& b) {
    return a.offset < b.offset + b.len && b.offset < a.offset + a.len;
  }
  bool blocked(const Claim& c, std::size_t waiting_before) const;  // mu_ held

  mutable std::mutex mu_;
  std::vector<Claim*> active_;
  std::vector<Claim*> waiting_;  // oldest first
};

}  // namespace ringtgt::storage
